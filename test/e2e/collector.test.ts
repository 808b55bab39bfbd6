import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storedSummaries } from '../../collector/store/rows.js';
import type { AgentLiveness, PathState } from '../../collector/types.js';
import type { ProbeResult } from '../../wire/result.js';
import { ensureBuilt } from '../helpers/cli.js';
import {
  AgentProcess,
  CollectorProcess,
  relayToLoopback,
  sumMetric,
} from '../helpers/collector-process.js';
import { canUseNetns, TestNet, type TestHost } from '../../lab/netns.js';
import { OtlpReceiver } from '../helpers/otlp-receiver.js';
import { defaultConfirmResults } from '../../agent/reporter.js';
import { defaultConfirm } from '../../lib/config-fields.js';
import { pollUntil } from '../../lab/poll-until.js';
import { freePort } from '../../lab/server-process.js';
import { viewersYaml } from '../helpers/viewer.js';

/**
 * The collector and its agents as separate processes on a namespace network: the
 * collector in the root namespace on the bridge's gateway address, one agent in each of
 * two hosts (probing from there), and a third host serving HTTP on :8080 and TCP on :8081.
 * The tests run in order on one fleet: healthy, a service port dropped, agent A cut off
 * from the collector, the collector crashed and restarted; the last test stops everyone
 * and audits the store against the agents' own counters.
 */

const intervalMs = 1000;
const token = randomBytes(16).toString('hex');
const agentNames = ['app-a', 'app-b'] as const;
type AgentName = (typeof agentNames)[number];
const planTargets: Record<AgentName, string[]> = {
  'app-a': [
    'app-b/icmp',
    'app-b/mtu',
    'web/api/tcp',
    'web/icmp',
    'web/mtu',
    'web/web/http',
    'web/web/tcp',
  ],
  'app-b': [
    'app-a/icmp',
    'app-a/mtu',
    'web/api/tcp',
    'web/icmp',
    'web/mtu',
    'web/web/http',
    'web/web/tcp',
  ],
};

/**
 * Not failing, last probe ok. `degraded` counts: it is an ok path with a latency or loss
 * verdict, and a loaded test machine can give sub-millisecond paths a latency spike.
 */
const healthy = (p: PathState | undefined): boolean =>
  (p?.state === 'ok' || p?.state === 'degraded') && p.lastClass === 'ok';

describe.runIf(canUseNetns)('faultline collector with agents, as processes', () => {
  let net: TestNet;
  let hostA: TestHost;
  let hostB: TestHost;
  let web: TestHost;
  let dir: string;
  let collector: CollectorProcess | undefined;
  const agents = new Map<AgentName, AgentProcess>();
  let receiver: OtlpReceiver | undefined;
  let relay: { readonly port: number; close(): Promise<void> } | undefined;
  let port: number;
  let metricsPort: number;
  /** Agent A cut off from the collector (test 3), and the collector down (test 4). */
  let cut: { startMs: number; endMs: number } | undefined;
  let outage: { killMs: number; pauseMs: number; restartMs: number } | undefined;

  const agent = (name: AgentName): AgentProcess => {
    const a = agents.get(name);
    if (a === undefined) throw new Error(`agent ${name} not running`);
    return a;
  };
  const api = (): CollectorProcess => {
    if (collector === undefined) throw new Error('collector not running');
    return collector;
  };
  const paths = async (query = ''): Promise<PathState[]> =>
    (await api().get<{ paths: PathState[] }>(`/api/v1/paths${query}`)).paths;
  const liveness = async (): Promise<AgentLiveness[]> =>
    (await api().get<{ agents: AgentLiveness[] }>('/api/v1/agents')).agents;
  const livenessOf = async (name: AgentName): Promise<AgentLiveness | undefined> =>
    (await liveness()).find((a) => a.agent === name);
  const pathOf = async (name: AgentName, target: string): Promise<PathState | undefined> =>
    (await paths(`?agent=${name}`)).find((p) => p.target === target);
  /** faultline_probe_results_total from the agent's own /metrics, summed over `match`. */
  const resultsCounter = async (name: AgentName, match: Record<string, string>): Promise<number> =>
    sumMetric(
      await agent(name).fetchText(`http://127.0.0.1:${metricsPort}/metrics`),
      'faultline_probe_results_total',
      match,
    );

  function startAgent(name: AgentName, host: TestHost, labels: string): void {
    agents.set(
      name,
      AgentProcess.start(
        net,
        host,
        [
          '--collector',
          `http://${net.gateway}:${port}`,
          '--token',
          token,
          '--name',
          name,
          '--labels',
          labels,
          '--state-dir',
          join(dir, `state-${name}`),
          '--metrics',
          `127.0.0.1:${metricsPort}`,
        ],
        {
          // Only the flush at shutdown exports: the final counters the store is audited against.
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://${net.gateway}:${relay!.port}`,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
          OTEL_METRIC_EXPORT_INTERVAL: '600000',
        },
      ),
    );
  }

  beforeAll(async () => {
    ensureBuilt();
    net = await TestNet.create();
    hostA = await net.addHost('a');
    hostB = await net.addHost('b');
    web = await net.addHost('web');
    net.spawn(web, process.execPath, [
      '-e',
      `const h = require('http'), n = require('net');
       h.createServer((q, s) => s.end('ok')).listen(8080, '0.0.0.0');
       // Probes end with a RST: an unhandled ECONNRESET would end the server.
       n.createServer((c) => c.on('error', () => {}).end()).listen(8081, '0.0.0.0');`,
    ]);
    await pollUntil('web service up', async () => (await fetch(`http://${web.ip}:8080/`)).ok);
    dir = mkdtempSync(join(tmpdir(), 'faultline-collector-e2e-'));
    port = await freePort();
    metricsPort = await freePort();
    const config = join(dir, 'collector.yaml');
    writeFileSync(
      config,
      `listen: ${net.gateway}:${port}
dataDir: ${join(dir, 'data')}
tokens:
  - { name: fleet, token: ${token} }
${viewersYaml.join('\n')}
agents:
  reportInterval: 1s
  silentAfter: 3s
probes:
  interval: 1s
  timeout: 800ms
diagnosis:
  debounce: 3
inventory:
  components:
    - name: app-a
      address: ${hostA.ip}
      role: api
      labels: { zone: a, switch: sw-1 }
    - name: app-b
      address: ${hostB.ip}
      role: api
      labels: { zone: b, switch: sw-2 }
    - name: web
      address: ${web.ip}
      role: web
      labels: { zone: c, switch: sw-3 }
      services:
        - { name: web, kind: http, port: 8080, path: /healthz }
        - { name: api, kind: tcp, port: 8081 }
`,
    );
    collector = await CollectorProcess.start(config, `http://${net.gateway}:${port}`);
    receiver = await OtlpReceiver.start();
    relay = await relayToLoopback(net.gateway, Number(new URL(receiver.url).port));
    startAgent('app-a', hostA, 'zone=a,switch=sw-1');
    startAgent('app-b', hostB, 'zone=b,switch=sw-2');
  }, 60_000);

  afterAll(async () => {
    for (const a of agents.values()) {
      a.signal('SIGCONT');
      await a.kill();
    }
    await collector?.kill();
    await relay?.close();
    await receiver?.close();
    await net?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('hands out plans and takes results: both agents live, every path to the other components ok', async () => {
    const live = await pollUntil(
      'both agents live',
      async () => {
        const list = await liveness();
        return agentNames.every((n) => list.some((a) => a.agent === n && a.state === 'live'))
          ? list
          : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(live.find((a) => a.agent === 'app-a')?.labels).toEqual({ zone: 'a', switch: 'sw-1' });
    expect(live.find((a) => a.agent === 'app-b')?.labels).toEqual({ zone: 'b', switch: 'sw-2' });

    for (const name of agentNames) {
      const mine = await pollUntil(
        `${name}: every planned path ok`,
        async () => {
          const list = await paths(`?agent=${name}`);
          const ok = list.filter((p) => p.state === 'ok' && p.lastClass === 'ok');
          return ok.length === planTargets[name].length ? list : undefined;
        },
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      // Every planned target, nothing of its own host.
      expect(mine.map((p) => p.target).sort()).toEqual(planTargets[name]);
      const http = mine.find((p) => p.target === 'web/web/http');
      expect(http).toMatchObject({ agent: name, component: 'web', service: 'web', kind: 'http' });
      expect(mine.find((p) => p.target === 'web/icmp')).toMatchObject({
        component: 'web',
        kind: 'icmp',
      });
      expect(mine.find((p) => p.target === 'web/api/tcp')?.kind).toBe('tcp');
      // The full-size echo beside the ping is the host's too, with no service.
      const fullSize = mine.find((p) => p.target === 'web/mtu');
      expect(fullSize).toMatchObject({ component: 'web', kind: 'mtu', lastClass: 'ok' });
      expect(fullSize?.service).toBeUndefined();
    }
    // The filters of /paths work on the live matrix.
    const icmp = await paths('?kind=icmp');
    expect(icmp.map((p) => `${p.agent} ${p.target}`).sort()).toEqual([
      'app-a app-b/icmp',
      'app-a web/icmp',
      'app-b app-a/icmp',
      'app-b web/icmp',
    ]);
    expect(await paths('?state=failing')).toEqual([]);
  }, 30_000);

  it('shows a service port dropped as failing paths (tcp_timeout, after the debounce) and its recovery', async () => {
    const webPaths = ['web/web/tcp', 'web/web/http'];
    await net.nft(
      web,
      'table inet fltest { chain input { type filter hook input priority 0; tcp dport 8080 drop; }; }',
    );
    try {
      // Before the third failure in a row a path stays ok: the debounce.
      const early: PathState[] = [];
      const failing = await pollUntil(
        'the web paths of both agents failing',
        async () => {
          const list = (await paths('?component=web')).filter((p) => webPaths.includes(p.target));
          for (const p of list)
            if (p.consecutiveFailures > 0 && p.consecutiveFailures < 3) early.push(p);
          return list.length === 4 && list.every((p) => p.state === 'failing') ? list : undefined;
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      for (const p of failing) {
        expect(p.lastClass, `${p.agent} ${p.target}`).toBe('tcp_timeout');
        expect(p.consecutiveFailures).toBeGreaterThanOrEqual(3);
      }
      expect(early.length).toBeGreaterThan(0);
      for (const p of early) expect(p.state, `${p.agent} ${p.target} early`).not.toBe('failing');
      // Same host, other layers and ports (icmp, mtu, api/tcp from each agent): still fine.
      const others = (await paths('?component=web')).filter((p) => !webPaths.includes(p.target));
      expect(others).toHaveLength(6);
      for (const p of others) {
        expect(healthy(p), `${p.agent} ${p.target}: ${p.state} ${p.lastClass}`).toBe(true);
        expect(p.failures).toEqual({});
      }
    } finally {
      await net.nft(web, 'delete table inet fltest');
    }
    const recovered = await pollUntil(
      'the web paths ok again',
      async () => {
        const list = (await paths('?component=web')).filter((p) => webPaths.includes(p.target));
        return list.length === 4 && list.every(healthy) ? list : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    for (const p of recovered) expect(p.consecutiveSuccesses).toBeGreaterThanOrEqual(3);
  }, 40_000);

  it('an agent cut off from the collector goes silent, keeps probing, and delivers the cut when it heals', async () => {
    const target = 'web/api/tcp';
    const failedBefore = await resultsCounter('app-a', { target, class: 'tcp_timeout' });
    // Agent A can reach neither the collector nor web:8081: the failures it records while
    // cut off go in full into its spool (healthy paths only as summaries).
    await net.nft(
      hostA,
      `table inet flcut { chain output { type filter hook output priority 0;
         ip daddr ${net.gateway} tcp dport ${port} drop;
         ip daddr ${web.ip} tcp dport 8081 drop; }; }`,
    );
    const startMs = Date.now();
    try {
      const silent = await pollUntil(
        'agent A silent',
        async () => {
          const a = await livenessOf('app-a');
          return a?.state === 'silent' ? a : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      // Silent once `silentAfter` (3 s) has passed since its last report — and promptly then:
      // liveness is looked at every 100 ms (this poll and its request add a little).
      const seenSilentMs = Date.now();
      expect(silent.lastSeenMs).toBeLessThan(seenSilentMs - 3000);
      expect(seenSilentMs - silent.lastSeenMs).toBeLessThan(3000 + 500);
      expect((await livenessOf('app-b'))?.state).toBe('live');
      // The cut lasts ~6 s: a bounded wait, not a condition.
      await sleep(Math.max(0, startMs + 6000 - Date.now()));
      // Probing went on: A's own counter of the failing path grew by about one per second.
      const failedDuring = await resultsCounter('app-a', { target, class: 'tcp_timeout' });
      expect(failedDuring - failedBefore).toBeGreaterThanOrEqual(4);
    } finally {
      cut = { startMs, endMs: Date.now() };
      await net.nft(hostA, 'delete table inet flcut');
    }
    const endMs = cut.endMs;
    const back = await pollUntil(
      'agent A live again',
      async () => {
        const a = await livenessOf('app-a');
        return a?.state === 'live' && a.lastSeenMs >= endMs ? a : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(back.droppedResults).toBe(0);
    // The spooled failures made the path fail at the collector; it recovers after the heal.
    const path = await pollUntil(
      'A → web:8081 ok again, after the cut',
      async () => {
        const p = await pathOf('app-a', target);
        return healthy(p) && p!.lastSeenMs > endMs ? p : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(path.sinceMs).toBeGreaterThan(startMs);
    expect(path.failures.tcp_timeout ?? 0).toBeGreaterThanOrEqual(4);
    // B's view of the same service saw nothing of it (the window covers the cut).
    const viaB = await pathOf('app-b', target);
    expect(healthy(viaB)).toBe(true);
    expect(viaB?.failures).toEqual({});
  }, 45_000);

  it('a collector killed mid-stream restarts on its store: paths restored at once, spooled reports delivered', async () => {
    const countBefore = await resultsCounter('app-a', {});
    // The matrix as the crash finds it; an agent whose watermark moved meanwhile is only
    // compared by its paths' names below.
    const seqOf = (list: AgentLiveness[]): Map<string, number> =>
      new Map(list.map((a) => [a.agent, a.acceptedSeq]));
    const seqFirst = seqOf(await liveness());
    const before = await paths();
    const seqBefore = seqOf(await liveness());
    const killMs = Date.now();
    await api().kill();
    // Agents keep probing while it is away (two rounds of five targets at least).
    await pollUntil(
      'agent A probing on',
      async () => (await resultsCounter('app-a', {})) >= countBefore + 10,
      { timeoutMs: 6000, intervalMs: 250 },
    );
    await sleep(Math.max(0, killMs + 3000 - Date.now()));

    // Agents paused while it comes back: what /paths shows first can only be the store's.
    const pauseMs = Date.now();
    for (const a of agents.values()) a.signal('SIGSTOP');
    let restored: PathState[];
    let known: AgentLiveness[];
    try {
      collector = await api().restart();
      restored = await paths();
      known = await liveness();
    } finally {
      for (const a of agents.values()) a.signal('SIGCONT');
    }
    const restartMs = Date.now();
    outage = { killMs, pauseMs, restartMs };

    const key = (p: PathState): string => `${p.agent} ${p.target}`;
    const sorted = (list: PathState[]): PathState[] =>
      [...list].sort((x, y) => key(x).localeCompare(key(y)));
    expect(restored.map(key).sort()).toEqual(before.map(key).sort());
    for (const p of restored) expect(p.lastSeenMs, key(p)).toBeLessThanOrEqual(killMs);
    for (const name of agentNames) {
      const seq = known.find((k) => k.agent === name)?.acceptedSeq ?? -1;
      expect(seq, name).toBeGreaterThanOrEqual(seqBefore.get(name) ?? Infinity);
      // Nothing accepted after the snapshot: the rebuilt paths are the very same documents.
      if (seq === seqBefore.get(name) && seq === seqFirst.get(name)) {
        expect(sorted(restored.filter((p) => p.agent === name)), name).toEqual(
          sorted(before.filter((p) => p.agent === name)),
        );
      }
    }

    // Delivery resumes after the agents' backoff: every path hears of the outage period.
    await pollUntil(
      'every path updated after the restart',
      async () => {
        const list = await paths();
        return list.length === before.length && list.every((p) => p.lastSeenMs > pauseMs);
      },
      { timeoutMs: 25_000, intervalMs: 250 },
    );
    for (const a of await liveness()) {
      expect(a.state).toBe('live');
      expect(a.acceptedSeq).toBeGreaterThan((seqBefore.get(a.agent) ?? 0) + 3);
    }
  }, 45_000);

  it('loses nothing and doubles nothing: the store against the agents’ own counters', async () => {
    // Stop the agents first: their final spool is delivered and their final counters exported.
    const stopped = new Map<AgentName, Record<string, unknown>>();
    const codes = await Promise.all(agentNames.map((name) => agent(name).stop()));
    for (const [i, name] of agentNames.entries()) {
      const a = agent(name);
      agents.delete(name);
      expect(codes[i], a.stderr.slice(-2000)).toBe(0);
      const line = a.logLines().find((l) => l.msg === 'collector link stopped');
      expect(line, name).toMatchObject({ spooled: 0 });
      stopped.set(name, line!);
    }
    expect(await api().stop()).toBe(0);
    collector = undefined;

    const c = cut;
    const o = outage;
    if (c === undefined || o === undefined) throw new Error('the cut and outage tests did not run');
    const db = new Database(join(dir, 'data', 'faultline.db'), {
      readonly: true,
      fileMustExist: true,
    });
    try {
      for (const name of agentNames) {
        const row = db
          .prepare(
            'SELECT agent_key, accepted_seq, dropped_batches, dropped_results FROM agents WHERE name = ?',
          )
          .get(name) as {
          agent_key: number;
          accepted_seq: number;
          dropped_batches: number;
          dropped_results: number;
        };
        expect(row, name).toMatchObject({ dropped_batches: 0, dropped_results: 0 });
        expect(row.accepted_seq, name).toBe(stopped.get(name)?.acceptedSeq);
        // Every batch the agent made, once: seq 1..N without a hole.
        const batches = db
          .prepare(
            'SELECT seq, created_at_ms, received_at_ms FROM batches WHERE agent_key = ? ORDER BY seq',
          )
          .all(row.agent_key) as { seq: number; created_at_ms: number; received_at_ms: number }[];
        expect(batches.map((b) => b.seq)).toEqual(
          Array.from({ length: row.accepted_seq }, (_, i) => i + 1),
        );

        // Full results in arrival order: per path strictly increasing seq and start time, and
        // no probe twice.
        const results = (
          db
            .prepare('SELECT record FROM results WHERE agent_key = ? ORDER BY id')
            .pluck()
            .all(row.agent_key) as string[]
        ).map((r) => JSON.parse(r) as ProbeResult);
        expect(new Set(results.map((r) => r.seq)).size, name).toBe(results.length);
        const byTarget = new Map<string, ProbeResult[]>();
        for (const r of results) byTarget.set(r.target, [...(byTarget.get(r.target) ?? []), r]);
        for (const [target, list] of byTarget) {
          for (let i = 1; i < list.length; i++) {
            expect(list[i]!.seq, `${name} ${target}`).toBeGreaterThan(list[i - 1]!.seq);
            expect(list[i]!.startedAtMs, `${name} ${target}`).toBeGreaterThan(
              list[i - 1]!.startedAtMs,
            );
          }
        }

        // Summaries against the agent's own counter, per path and class: exactly once. A
        // batch keeps them in its body as it came (gzip'd from an agent), or apart.
        const summaries = (
          db
            .prepare(
              'SELECT summaries_json, body, body_gzip FROM batches WHERE agent_key = ? ORDER BY seq',
            )
            .all(row.agent_key) as Parameters<typeof storedSummaries>[0][]
        ).flatMap(storedSummaries);
        const fromSummaries = new Map<string, number>();
        const add = (k: string, n: number): void => {
          fromSummaries.set(k, (fromSummaries.get(k) ?? 0) + n);
        };
        for (const s of summaries) {
          if (s.ok > 0) add(`${s.target} ok`, s.ok);
          for (const [cls, n] of Object.entries(s.failures)) add(`${s.target} ${cls}`, n);
        }
        // A burst's re-probes come only in full (they confirm one sample, and the summaries
        // leave them out of the ratios): with them, every probe counted exactly once.
        for (const r of results) {
          if (r.confirm !== undefined && r.confirm.index > 0) add(`${r.target} ${r.class}`, 1);
        }
        const fromAgent = new Map<string, number>();
        for (const { point } of receiver!.points('faultline.probe.results')) {
          if (point.attributes.agent !== name) continue;
          // Cumulative: the newest point per series is the total.
          const { target, class: cls } = point.attributes;
          if (typeof target !== 'string' || typeof cls !== 'string') continue;
          fromAgent.set(`${target} ${cls}`, point.value ?? 0);
        }
        expect(fromAgent.size, `${name}: final OTLP export`).toBeGreaterThan(0);
        expect(Object.fromEntries(fromSummaries), name).toEqual(Object.fromEntries(fromAgent));
        // Failures came in full as the reporter promises: each change of class and the
        // results confirming it — its confirmation burst (defaultConfirm.count re-probes),
        // or, when no burst ran, the next defaultConfirmResults rounds — so every run of n
        // failures has at least min(n, 1 + the smaller of the two) in full.
        for (const [k, n] of fromSummaries) {
          const [target, cls] = k.split(' ');
          if (cls === 'ok') continue;
          const full = results.filter((r) => r.target === target && r.class === cls).length;
          expect(full, `${name} ${k}: full results`).toBeGreaterThanOrEqual(
            Math.min(n, 1 + Math.min(defaultConfirm.count, defaultConfirmResults)),
          );
          expect(full, `${name} ${k}: full results`).toBeLessThanOrEqual(n);
        }

        // The outage of the collector: its periods were spooled and delivered after the
        // restart, none missing (a batch per report interval).
        const during = batches.filter(
          (b) => b.created_at_ms > o.killMs && b.created_at_ms < o.pauseMs,
        );
        expect(
          during.length,
          `${name}: batches made while the collector was down`,
        ).toBeGreaterThanOrEqual(2);
        for (const b of during) expect(b.received_at_ms).toBeGreaterThan(o.pauseMs);
        expectNoGap(
          during.map((b) => b.created_at_ms),
          o.killMs,
          o.pauseMs,
          `${name} batches during the outage`,
        );
      }

      // The cut of agent A: the failing path's change and its confirmations arrived in full,
      // in order, from the start of the cut; the summaries cover the whole cut.
      const aKey = db.prepare("SELECT agent_key FROM agents WHERE name = 'app-a'").pluck().get();
      const cutResults = (
        db
          .prepare(
            `SELECT record FROM results WHERE agent_key = ? AND target = 'web/api/tcp'
               AND started_at_ms >= ? AND started_at_ms < ? ORDER BY id`,
          )
          .pluck()
          .all(aKey, c.startMs + 100, c.endMs) as string[]
      ).map((r) => JSON.parse(r) as ProbeResult);
      expect(cutResults.length).toBeGreaterThanOrEqual(4);
      for (const r of cutResults) expect(r.class).toBe('tcp_timeout');
      expectNoGap(
        cutResults.map((r) => r.startedAtMs),
        c.startMs,
        cutResults.at(-1)!.startedAtMs,
        'A → web:8081 during the cut, in full',
      );
      const cutSummaries = (
        db
          .prepare('SELECT summaries_json, body, body_gzip FROM batches WHERE agent_key = ?')
          .all(aKey) as Parameters<typeof storedSummaries>[0][]
      )
        .flatMap(storedSummaries)
        .filter((x) => x.target === 'web/api/tcp' && x.toMs > c.startMs && x.fromMs < c.endMs);
      expect(cutSummaries.some((x) => (x.failures.tcp_timeout ?? 0) > 0)).toBe(true);
      expectNoGap(
        cutSummaries.map((x) => x.toMs),
        c.startMs,
        c.endMs,
        'A → web:8081 during the cut, summarised',
        // A probe that times out lands in the period it ends in: a period may hold none.
        2.5 * intervalMs,
      );
      // The history: ok → failing in the cut, failing → ok after it.
      const transitions = db
        .prepare(
          `SELECT from_state, to_state, to_class, at_ms FROM transitions
             WHERE agent_key = ? AND target = 'web/api/tcp' ORDER BY id`,
        )
        .all(aKey) as { from_state: string; to_state: string; to_class: string; at_ms: number }[];
      const fail = transitions.find((t) => t.to_state === 'failing');
      expect(fail).toMatchObject({ to_class: 'tcp_timeout' });
      expect(['ok', 'degraded']).toContain(fail!.from_state);
      expect(fail!.at_ms).toBeGreaterThanOrEqual(c.startMs);
      expect(fail!.at_ms).toBeLessThan(c.endMs);
      const recovery = transitions.find((t) => t.from_state === 'failing');
      expect(recovery).toMatchObject({ to_state: 'ok' });
      expect(recovery!.at_ms).toBeGreaterThanOrEqual(c.endMs - intervalMs);
    } finally {
      db.close();
    }
  }, 30_000);
});

/** Times cover [fromMs, toMs] with no hole longer than `limit`, at the edges too. */
function expectNoGap(
  times: readonly number[],
  fromMs: number,
  toMs: number,
  what: string,
  limit = 1.5 * intervalMs,
): void {
  const all = [fromMs, ...[...times].sort((x, y) => x - y), toMs];
  for (let i = 1; i < all.length; i++) {
    expect(all[i]! - all[i - 1]!, `${what}: hole before #${i}`).toBeLessThanOrEqual(limit);
  }
}
