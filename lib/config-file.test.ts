import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  addNestedIssues,
  configErrorMap,
  formatConfigPath,
  knownKeysAt,
  loadConfigFile,
  parseConfigText,
  suggestKey,
} from './config-file.js';
import { ConfigError } from './errors.js';

// A small collector-like schema: the loader knows nothing about the agent.
const sinkOptions = z
  .object({ url: z.string().url().optional(), retries: z.number().int().default(3) })
  .strict();
const schema = z
  .object({
    listen: z.string().default('127.0.0.1:8080'),
    dataDir: z.string().default('/var/lib/faultline'),
    sinks: z
      .array(
        z
          .object({
            name: z.string(),
            kind: z.enum(['webhook', 'alertmanager']),
            options: z.record(z.string(), z.unknown()).optional(),
          })
          .strict(),
      )
      .default([]),
    labels: z.record(z.string(), z.string()).default({}),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    // A nested value validated by a schema chosen at run time, as the agent does per kind.
    cfg.sinks.forEach((sink, i) => {
      const parsed = sinkOptions.safeParse(sink.options ?? {}, {
        error: configErrorMap,
        reportInput: true,
      });
      if (!parsed.success)
        addNestedIssues(ctx, parsed.error.issues, ['sinks', i, 'options'], sinkOptions);
    });
    const seen = new Map<string, number>();
    cfg.sinks.forEach((sink, i) => {
      const first = seen.get(sink.name);
      if (first === undefined) seen.set(sink.name, i);
      else {
        ctx.addIssue({
          code: 'custom',
          path: ['sinks', i, 'name'],
          message: `duplicate sink name ${JSON.stringify(sink.name)}`,
          input: undefined,
          params: { related: { path: ['sinks', first, 'name'], label: 'first used' } },
        });
      }
    });
  });

function messageOf(text: string, file = 'collector.yaml'): string {
  try {
    parseConfigText(text, file, schema);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('FL_ERR_CONFIG');
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('parseConfigText', () => {
  it('returns the schema output with defaults, deep-frozen', () => {
    const cfg = parseConfigText('sinks:\n  - { name: a, kind: webhook }\n', 'c.yaml', schema);
    expect(cfg).toEqual({
      listen: '127.0.0.1:8080',
      dataDir: '/var/lib/faultline',
      sinks: [{ name: 'a', kind: 'webhook' }],
      labels: {},
    });
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.sinks)).toBe(true);
    expect(Object.isFrozen(cfg.sinks[0])).toBe(true);
    expect(() => {
      (cfg.sinks as { name: string }[]).push({ name: 'b' });
    }).toThrow(TypeError);
  });

  it('reads an empty file as all defaults', () => {
    expect(parseConfigText('', 'c.yaml', schema).listen).toBe('127.0.0.1:8080');
    expect(parseConfigText('# only a comment\n', 'c.yaml', schema).sinks).toEqual([]);
  });

  it.each([
    {
      what: 'a wrong type points at the value, with the actual value',
      text: 'listen: 8080\n',
      message: 'collector.yaml:1:9: listen: expected a string (actual: 8080)',
    },
    {
      what: 'a missing key points at the parent that lacks it',
      text: 'sinks:\n  - kind: webhook\n',
      message: 'collector.yaml:2:5: sinks[0].name: missing required key "name"',
    },
    {
      what: 'an unknown key points at the key and suggests the known one',
      text: 'dataDri: /tmp\n',
      message: 'collector.yaml:1:1: dataDri: unknown key "dataDri" (did you mean "dataDir"?)',
    },
    {
      what: 'an unknown key far from every known key gets no suggestion',
      text: 'sinks:\n  - { name: a, kind: webhook, colour: red }\n',
      message: 'collector.yaml:2:31: sinks[0].colour: unknown key "colour"',
    },
    {
      what: 'an enum names the accepted values',
      text: 'sinks:\n  - name: a\n    kind: email\n',
      message:
        'collector.yaml:3:11: sinks[0].kind: expected one of: webhook, alertmanager (actual: "email")',
    },
    {
      what: 'keys that are not identifiers are quoted in the path',
      text: 'labels:\n  my-key: 3\n',
      message: 'collector.yaml:2:11: labels["my-key"]: expected a string (actual: 3)',
    },
    {
      what: 'a long actual value is cut short',
      text: `listen: [${'1, '.repeat(40)}1]\n`,
      message: `collector.yaml:1:9: listen: expected a string (actual: [${'1,'.repeat(29)}…)`,
    },
    {
      what: 'issues of a nested parse land under their prefix, unknown keys with a suggestion',
      text: 'sinks:\n  - name: a\n    kind: webhook\n    options: { url: nope, retires: 2 }\n',
      message: [
        'collector.yaml:4:21: sinks[0].options.url: expected a valid url (actual: "nope")',
        'collector.yaml:4:27: sinks[0].options.retires: unknown key "retires" (did you mean "retries"?)',
      ].join('\n'),
    },
    {
      what: 'a related place is shown with its own position',
      text: 'sinks:\n  - { name: a, kind: webhook }\n  - { name: a, kind: alertmanager }\n',
      message:
        'collector.yaml:3:13: sinks[1].name: duplicate sink name "a" (first used at collector.yaml:2:13)',
    },
    {
      what: 'a document that is not a mapping is refused at 1:1',
      text: '- a\n- b\n',
      message: 'collector.yaml:1:1: expected a mapping (actual: ["a","b"])',
    },
  ])('$what', ({ text, message }) => {
    expect(messageOf(text)).toBe(message);
  });

  it('reports every issue, one line each, sorted by position', () => {
    const text = [
      'sinks:',
      '  - name: a',
      '    kind: pager',
      'listen: 1',
      'dataDir: 2',
      'sinks2: []',
    ].join('\n');
    expect(messageOf(text).split('\n')).toEqual([
      'collector.yaml:3:11: sinks[0].kind: expected one of: webhook, alertmanager (actual: "pager")',
      'collector.yaml:4:9: listen: expected a string (actual: 1)',
      'collector.yaml:5:10: dataDir: expected a string (actual: 2)',
      'collector.yaml:6:1: sinks2: unknown key "sinks2" (did you mean "sinks"?)',
    ]);
  });

  it('refuses YAML syntax errors with their position, before any schema check', () => {
    expect(messageOf('listen: 1\nsinks: [a\n')).toBe(
      'collector.yaml:3:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
    );
    // The parser notices an unclosed quote where the text ends.
    expect(messageOf('listen: "open\n')).toBe('collector.yaml:2:1: Missing closing "quote');
  });

  it('refuses duplicate keys, naming both places', () => {
    expect(messageOf('listen: a\ndataDir: b\nlisten: c\n')).toBe(
      'collector.yaml:3:1: duplicate key "listen" (first at collector.yaml:1:1)',
    );
    expect(messageOf('sinks:\n  - { name: a, name: b, kind: webhook }\n')).toBe(
      'collector.yaml:2:16: duplicate key "name" (first at collector.yaml:2:7)',
    );
  });

  it('refuses several documents in one file and unknown tags', () => {
    expect(messageOf('listen: a\n---\nlisten: b\n')).toBe(
      'collector.yaml:2:1: the file holds several YAML documents; a config is one',
    );
    expect(messageOf('listen: !secret x\n')).toMatch(
      /^collector\.yaml:1:9: Unresolved tag: !secret/,
    );
  });

  it('refuses an alias bomb instead of expanding it', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++) {
      const prev = String.fromCharCode(97 + i);
      const next = String.fromCharCode(98 + i);
      lines.push(`${next}: &${next} [${Array(10).fill(`*${prev}`).join(', ')}]`);
    }
    expect(messageOf(lines.join('\n'))).toMatch(/^collector\.yaml:1:1: .*alias/i);
  });

  it.each([
    [
      'a 100,000-deep flow sequence',
      `sinks: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
      '1:71',
    ],
    [
      'a 100,000-deep flow mapping',
      `sinks: ${'{a: '.repeat(100_000)}1${'}'.repeat(100_000)}\n`,
      '1:260',
    ],
    [
      'a 2,000-deep block mapping',
      `sinks:\n${Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i + 2)}a:`).join('\n')} 1\n`,
      '65:66',
    ],
  ])('refuses %s cleanly, where it gets too deep (no stack overflow)', (_what, text, at) => {
    expect(messageOf(text)).toBe(
      `collector.yaml:${at}: nested more than 64 levels deep; a Faultline config needs far fewer`,
    );
  });

  it('reads 64 levels', () => {
    const text = `sinks: ${'['.repeat(63)}${']'.repeat(63)}\n`;
    expect(messageOf(text)).not.toMatch(/nested/);
  });
});

describe('loadConfigFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names the file path in every line', () => {
    const file = join(dir, 'collector.yaml');
    writeFileSync(file, 'listen: 1\n');
    expect(() => loadConfigFile(file, schema)).toThrow(`${file}:1:9: listen: expected a string`);
  });

  it.each([
    { what: 'a missing file', path: () => join(dir, 'nope.yaml'), code: 'ENOENT' },
    { what: 'a directory', path: () => dir, code: 'EISDIR' },
  ])('refuses $what with the errno code', ({ path, code }) => {
    const p = path();
    let caught: unknown;
    try {
      loadConfigFile(p, schema);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).code).toBe('FL_ERR_CONFIG');
    expect((caught as Error).message).toMatch(
      new RegExp(
        `^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read the config file: ${code} \\(`,
      ),
    );
  });
});

describe('helpers', () => {
  it.each([
    { key: 'intervl', known: ['interval', 'timeout'], want: 'interval' },
    { key: 'sned', known: ['send', 'expect'], want: 'send' },
    { key: 'max_in_flight', known: ['maxInFlight', 'interval'], want: 'maxInFlight' },
    { key: 'MAXINFLIGHT', known: ['maxInFlight'], want: 'maxInFlight' },
    { key: 'colour', known: ['name', 'kind'], want: undefined },
    { key: 'x', known: ['interval'], want: undefined },
  ])('suggestKey($key) → $want', ({ key, known, want }) => {
    expect(suggestKey(key, known)).toBe(want);
  });

  it('formats paths with indexes and quoted odd keys', () => {
    expect(formatConfigPath(['targets', 2, 'options', 'validStatusCodes', 0])).toBe(
      'targets[2].options.validStatusCodes[0]',
    );
    expect(formatConfigPath(['labels', 'a b'])).toBe('labels["a b"]');
    expect(formatConfigPath([])).toBe('');
  });

  it('finds the keys an object accepts through wrappers', () => {
    expect(knownKeysAt(schema, [])).toEqual(['listen', 'dataDir', 'sinks', 'labels']);
    expect(knownKeysAt(schema, ['sinks', 0])).toEqual(['name', 'kind', 'options']);
    expect(knownKeysAt(schema, ['labels'])).toEqual([]);
  });

  it('describes unions of simple forms by their members', () => {
    const s = z.object({ family: z.union([z.literal(0), z.literal(4), z.literal(6)]) });
    expect(() => parseConfigText('family: 5\n', 'c.yaml', s)).toThrow(
      'c.yaml:1:9: family: expected one of: 0, 4, 6 (actual: 5)',
    );
    const t = z.object({ listen: z.union([z.string(), z.literal(false)]) });
    expect(() => parseConfigText('listen: 1\n', 'c.yaml', t)).toThrow(
      'c.yaml:1:9: listen: expected a string or false (actual: 1)',
    );
  });
});
