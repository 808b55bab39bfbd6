import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Diagnosis, Hypothesis } from '../../../wire/diagnosis.js';
import { demoLab, demoLabPaths } from '../../../cli/demo.js';
import {
  diagnosisLine,
  faultCycle,
  labPaths,
  pathHealthy,
  watchDiagnosis,
} from '../../../lab/expect.js';
import { flappingLink, portMtu, wrongVlan } from '../../../lab/faults.js';
import { httpPageBytes } from '../../../lab/services.js';
import { canRunLab } from '../../../lab/spec.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { useLab } from './use-lab.js';

/**
 * Shapes the founding lab tests never made (issue 12), in the demo's lab (the collector on
 * ctl-1 beside app-1, app-2 and web-1 on sw-1; db-1 and db-2 on sw-2): hosts cut off together
 * with no label between them and the healthy hosts of their switch; a switch port whose MTU is
 * smaller than its host's; a link that flaps.
 */

const serviceKinds: readonly Hypothesis['kind'][] = ['service_down', 'service_unresponsive'];

/**
 * Connects to `host:port` from the test process (root namespace, on sw-1), sends a GET and
 * says what came back within `waitMs`: whether the handshake passed, and how many bytes.
 */
function tryHttp(
  host: string,
  port: number,
  waitMs: number,
): Promise<{ connected: boolean; bytes: number }> {
  return new Promise((resolve) => {
    let connected = false;
    let bytes = 0;
    const socket = connect({ host, port });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ connected, bytes });
    };
    const timer = setTimeout(done, waitMs);
    socket.on('connect', () => {
      connected = true;
      socket.write(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.on('error', done);
    socket.on('close', done);
  });
}

describe.runIf(canRunLab)('lab: hosts cut together, a smaller MTU, a flapping link', () => {
  const theLab = useLab(demoLab, demoLabPaths, 'shapes.test.ts');

  it('two app hosts moved together into the wrong VLAN, beside healthy hosts on their switch, are ONE network partition', async () => {
    const l = theLab();
    const cut = ['app-1', 'app-2'];
    const { diagnosis } = await faultCycle(
      l,
      wrongVlan(l, cut, 'vlan-99'),
      { kind: 'network_partition', components: cut },
      {
        whileInjected: async () => {
          // The real effect: the two reach each other, not web-1 on their own switch; web-1
          // still reaches ctl-1 there.
          await l.exec('app-1', 'ping', ['-c', '1', '-W', '1', l.host('app-2').ip]);
          await expect(
            l.exec('app-1', 'ping', ['-c', '1', '-W', '1', l.host('web-1').ip]),
          ).rejects.toThrow();
          await l.exec('web-1', 'ping', ['-c', '1', '-W', '1', l.host('ctl-1').ip]);
          // One event, one hypothesis, while the cut lasts.
          await watchDiagnosis(l, 4000, (d) => {
            const naming = d.hypotheses.filter((h) => h.components.some((c) => cut.includes(c)));
            expect(
              naming.map((h) => h.kind),
              diagnosisLine(d),
            ).toEqual(['network_partition']);
          });
        },
      },
    );
    const partitions = diagnosis.hypotheses.filter((h) => h.kind === 'network_partition');
    expect(partitions, diagnosisLine(diagnosis)).toHaveLength(1);
    expect(
      diagnosis.hypotheses.filter((h) => h.kind === 'host_unreachable'),
      diagnosisLine(diagnosis),
    ).toEqual([]);
    const top = diagnosis.hypotheses[0]!;
    // No topology label separates them from web-1 and ctl-1, and the summary says so.
    expect(top.cutLabel, top.summary).toBeUndefined();
    expect(top.summary).toMatch(/no topology label separates them/i);
  }, 120_000);

  it("web-1's switch port at MTU 1000 is mtu_mismatch at web-1, never a fault of its web app", async () => {
    const l = theLab();
    const web = l.host('web-1');
    /**
     * Throws at a settled diagnosis blaming web-1's service for what its port does. While the
     * fault is still arriving (`settling`: an agent's page failed, its full-size echo not yet
     * back) the document is provisional and alerts wait for it; what it settles on must never
     * blame the web app.
     */
    let provisionalSinceMs: number | undefined;
    const blamesNoService = (d: Diagnosis): void => {
      const blame = d.hypotheses.find(
        (h) => serviceKinds.includes(h.kind) && h.components.includes('web-1'),
      );
      if (blame === undefined) {
        provisionalSinceMs = undefined;
        return;
      }
      const what = `the MTU blamed on the service: ${blame.kind}: ${blame.summary}`;
      if (d.settling !== true) throw new Error(what);
      // Provisional, and briefly: less than alerts wait for it (alerts.settleMax, 1.7 s here).
      provisionalSinceMs ??= Date.now();
      if (Date.now() - provisionalSinceMs > 1500) throw new Error(`${what} (settling > 1.5 s)`);
    };
    await faultCycle(
      l,
      portMtu(l, 'web-1', 1000),
      { kind: 'mtu_mismatch', components: ['web-1'] },
      {
        observe: blamesNoService,
        whileInjected: async () => {
          // The real effect: small pings pass, full-size ones with DF vanish; the HTTP
          // handshake passes and the page never comes.
          await l.exec('app-1', 'ping', ['-c', '1', '-W', '1', '-s', '56', web.ip]);
          await expect(
            l.exec('app-1', 'ping', ['-c', '1', '-W', '1', '-s', '1472', '-M', 'do', web.ip]),
          ).rejects.toThrow();
          expect(await tryHttp(web.ip, 8080, 1500)).toEqual({ connected: true, bytes: 0 });
          // The agents' view: web-1 answers pings and TCP handshakes; its page times out and
          // its full-size echo is lost (a switch drops it silently: no "fragmentation needed").
          const paths = await pollUntil(
            'the http and full-size echo paths to web-1 failing',
            async () => {
              const list = (await labPaths(l, '?component=web-1')).filter(
                (p) => p.agent !== 'web-1',
              );
              const big = list.filter((p) => p.kind === 'http' || p.kind === 'mtu');
              return big.length === 10 && big.every((p) => p.state === 'failing')
                ? list
                : undefined;
            },
            { timeoutMs: 15_000, intervalMs: 200 },
          );
          for (const p of paths) {
            if (p.kind === 'http') expect(p.lastClass, p.target).toBe('http_timeout');
            else if (p.kind === 'mtu') expect(p.lastClass, p.target).toBe('icmp_timeout');
            else if (p.kind === 'icmp' || p.kind === 'tcp') {
              expect(pathHealthy(p), `${p.agent} → ${p.target}`).toBe(true);
            }
          }
          await watchDiagnosis(l, 4000, (d) => {
            blamesNoService(d);
            expect(d.hypotheses[0]?.kind, diagnosisLine(d)).toBe('mtu_mismatch');
          });
        },
      },
    );
    // Healed: the whole page again (headers and the page).
    const healed = await tryHttp(web.ip, 8080, 2000);
    expect(healed.connected).toBe(true);
    expect(healed.bytes).toBeGreaterThan(httpPageBytes);
  }, 120_000);

  it("db-2's link flapping (1.5 s down, 1.5 s up) is packet_loss at db-2", async () => {
    const l = theLab();
    // What the diagnosis said on the way, in order (printed: the first answer is worth knowing).
    const answers: string[] = [];
    const note = (d: Diagnosis): void => {
      const h = d.hypotheses[0];
      const a =
        h === undefined ? (d.healthy ? 'healthy' : '—') : `${h.kind} [${h.components.join(', ')}]`;
      if (answers.at(-1) !== a) answers.push(a);
    };
    try {
      await faultCycle(
        l,
        flappingLink(l, 'db-2', { downMs: 1500, upMs: 1500 }),
        { kind: 'packet_loss', components: ['db-2'] },
        {
          observe: note,
          detectTimeoutMs: 30_000,
          // The collector keeps a 30 s window: the flapping ages out of it before healthy.
          recoverTimeoutMs: 60_000,
          whileInjected: async () => {
            // The real effect: some probes of db-2 pass, some do not.
            const p = await pollUntil(
              "db-1's ping of db-2 losing some, not all",
              async () => {
                const x = (await labPaths(l, '?agent=db-1')).find((y) => y.target === 'db-2/icmp');
                return x !== undefined && x.failureRatio > 0.1 && x.failureRatio < 0.9
                  ? x
                  : undefined;
              },
              { timeoutMs: 15_000, intervalMs: 250 },
            );
            expect(p.failureRatio).toBeGreaterThan(0.1);
          },
        },
      );
    } finally {
      console.info(`flapping link: answers on the way: ${answers.join(' → ')}`);
    }
  }, 150_000);
});
