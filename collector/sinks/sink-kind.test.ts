import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Diagnosis } from '../../wire/diagnosis.js';
import { AlertEngine } from '../alerts.js';
import type { AlertsConfig } from '../alerts-config.js';
import { collectorJsonSchema, parseCollectorConfig } from '../config.js';
import { sinkRegistry, sinkTypes } from './registry.js';
import type { AlertNotice, SinkConfigBase, SinkDefinition } from './types.js';

/*
 * "A new alert sink is one file and one registry line": a sink registered here in memory,
 * and nowhere else, is accepted and checked in the collector's config, shows in its JSON
 * Schema, and gets the alerts — no other code names it.
 */

const here = fileURLToPath(new URL('.', import.meta.url));

interface MemoSinkConfig extends SinkConfigBase {
  readonly type: 'memo';
  readonly shelf: string;
}

const delivered: { readonly target: string; readonly alerts: AlertNotice[] }[] = [];

const memoSink: SinkDefinition<MemoSinkConfig> = {
  type: 'memo',
  description: 'a sink that exists only in this test',
  schema: z
    .object({ type: z.literal('memo'), name: z.string().optional(), shelf: z.string().min(1) })
    .strict(),
  resolve(entry, name, report) {
    if (entry.shelf === 'forbidden') {
      report(['shelf'], 'not that shelf', entry.shelf);
      return undefined;
    }
    return { type: 'memo', name, shelf: String(entry.shelf) };
  },
  targets(config) {
    return [
      {
        name: config.name,
        type: 'memo',
        mode: 'notify',
        encode: (alerts) => JSON.stringify(alerts),
        send: (body) => {
          delivered.push({
            target: `${config.name}@${config.shelf}`,
            alerts: JSON.parse(body) as AlertNotice[],
          });
          return Promise.resolve({ status: 'success' });
        },
      },
    ];
  },
};

const registry = sinkRegistry as unknown as Record<string, SinkDefinition<SinkConfigBase>>;
const tokens = 'tokens:\n  - { name: fleet, token: 0123456789abcdef0123 }\n';

function refusal(text: string): string {
  try {
    parseCollectorConfig(text, 'collector.yaml');
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('a sink registered in one place', () => {
  const dirs: string[] = [];
  beforeAll(() => {
    registry.memo = memoSink;
  });
  afterAll(() => {
    delete registry.memo;
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("is a type the collector's config accepts, resolved by its definition", () => {
    expect(sinkTypes()).toContain('memo');
    const cfg = parseCollectorConfig(
      `${tokens}alerts:\n  sinks:\n    - { type: memo, shelf: top }\n    - { type: memo, name: m2, shelf: low }\n`,
      'collector.yaml',
    );
    expect(cfg.alerts.sinks).toEqual([
      { type: 'memo', name: 'memo', shelf: 'top' },
      { type: 'memo', name: 'm2', shelf: 'low' },
    ]);
  });

  it('is checked by its own schema and resolve, and named among the types', () => {
    expect(
      refusal(`${tokens}alerts:\n  sinks:\n    - { type: memo, shelf: top, shelve: x }\n`),
    ).toMatch(/alerts\.sinks\[0\]\.shelve: unknown key "shelve" \(did you mean "shelf"\?\)/);
    expect(refusal(`${tokens}alerts:\n  sinks:\n    - { type: memo, shelf: forbidden }\n`)).toMatch(
      /alerts\.sinks\[0\]\.shelf: not that shelf/,
    );
    expect(refusal(`${tokens}alerts:\n  sinks:\n    - { type: pagerduty }\n`)).toMatch(
      /unknown sink type: expected one of: alertmanager, webhook, memo/,
    );
  });

  it("is in the config's JSON Schema", () => {
    const text = JSON.stringify(collectorJsonSchema());
    expect(text).toContain('"const":"memo"');
    expect(text).toContain('"shelf"');
  });

  it('gets the alerts from the engine, built from its config', async () => {
    const cfg = parseCollectorConfig(
      `${tokens}alerts:\n  sinks:\n    - { type: memo, shelf: top }\n`,
      'collector.yaml',
    );
    const config: AlertsConfig = { ...cfg.alerts, holdForMs: 0, settleMaxMs: 0 };
    const dataDir = mkdtempSync(join(tmpdir(), 'faultline-sink-kind-'));
    dirs.push(dataDir);
    const engine = new AlertEngine({ config, dataDir, tickMs: 0 });
    const faulty: Diagnosis = {
      healthy: false,
      hypotheses: [
        {
          kind: 'service_down',
          confidence: 0.9,
          summary: 'postgres on db-1 refuses connections',
          components: ['db-1'],
          groups: [{ members: ['db-1'] }],
          evidence: { counts: { tcp_refused: 3 }, examples: [] },
          since: 1_000,
        },
      ],
      ruledOut: [],
      computedAtMs: 0,
    };
    try {
      engine.update(faulty, 5_000, { roles: { 'db-1': 'database' }, totalPaths: 10 });
      await engine.idle();
      expect(engine.deliveryStats()).toMatchObject([{ sink: 'memo', type: 'memo', sent: 1 }]);
    } finally {
      await engine.close(100);
    }
    expect(delivered.map((d) => d.target)).toEqual(['memo@top']);
    expect(delivered[0]?.alerts.map((a) => [a.status, a.labels.alertname])).toEqual([
      ['firing', 'FaultlineServiceDown'],
    ]);
  });
});

/** `export const <binding>: SinkDefinition<…> = {` in a file of this folder. */
function sinkExports(file: string): string[] {
  const text = readFileSync(`${here}${file}`, 'utf8');
  return [...text.matchAll(/^export const (\w+): SinkDefinition\b/gm)].map((m) => m[1]!);
}

describe('the sink registry is one line per sink, each sink one file', () => {
  const registrySource = readFileSync(`${here}registry.ts`, 'utf8');
  const block = /export const sinkRegistry = \{\n([\s\S]*?)\n\} as const;/.exec(
    registrySource,
  )?.[1];

  it('lists `<type>: <type>Sink,` once per type, imported from ./<type>.js', () => {
    expect(block).toBeDefined();
    const lines = block!.split('\n').map((l) => l.trim());
    expect(lines).toEqual(sinkTypes().map((t) => `${t}: ${t}Sink,`));
    for (const type of sinkTypes()) {
      expect(registrySource).toContain(`import { ${type}Sink } from './${type}.js';`);
      expect(sinkExports(`${type}.ts`)).toEqual([`${type}Sink`]);
      expect(sinkRegistry[type].type).toBe(type);
    }
  });

  it('registers every file of collector/sinks/ that exports a SinkDefinition', () => {
    const files = readdirSync(here).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    const defining = files.filter((f) => sinkExports(f).length > 0);
    expect(defining.length).toBeGreaterThan(1);
    expect(defining.map((f) => f.replace(/\.ts$/, '')).sort()).toEqual([...sinkTypes()].sort());
  });
});

describe("README's how to add an alert sink", () => {
  const readme = readFileSync(`${here}../../README.md`, 'utf8');
  const section = /### How to add an alert sink\n([\s\S]*?)(?=\n#{2,3} |$)/.exec(readme)?.[1] ?? '';

  it('names one file and one registry line, and the files it names exist', () => {
    expect(section, 'README.md has no "How to add an alert sink" section').not.toBe('');
    expect(section).toContain('`collector/sinks/<type>.ts`');
    expect(section).toMatch(/one line to `sinkRegistry` in `collector\/sinks\/registry\.ts`/);
    expect(section).toContain('`<type>: <type>Sink,`');
    expect(section).toMatch(/nothing else/i);
    for (const [, path] of section.matchAll(/`((?:collector|lib|wire)\/[\w/.-]+\.ts)`/g)) {
      expect(existsSync(`${here}../../${path}`), `README names ${path}`).toBe(true);
    }
    // The examples it points to are the registered sinks.
    for (const type of sinkTypes()) expect(section).toContain(`\`collector/sinks/${type}.ts\``);
  });
});
