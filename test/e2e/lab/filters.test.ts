import { describe, expect, it } from 'vitest';
import { pollUntil } from '../../../lab/poll-until.js';
import { dropPort, dropSource, randomLoss } from '../../../lab/faults.js';
import { faultCycle, labPaths, pathHealthy } from '../../../lab/expect.js';
import { useLab } from './use-lab.js';
import { canRunLab } from '../../../lab/spec.js';
import { servicesLab, servicesLabPaths } from './services-lab.js';

/** The echo probes (the ping and the full-size one): a TCP port filter leaves them alone. */
const echoKinds = ['icmp', 'mtu'];

/** Filters and loss on some paths: blocked paths and lossy links, told from outages. */
describe.runIf(canRunLab)('lab: filters and loss', () => {
  const theLab = useLab(servicesLab, servicesLabPaths, 'filters.test.ts');

  it('the Redis port dropped for app-1 only is path_blocked; the others still reach it', async () => {
    const l = theLab();
    const { diagnosis } = await faultCycle(
      l,
      dropPort(l, 'cache-1', 6379, ['app-1']),
      { kind: 'path_blocked' },
      {
        whileInjected: async () => {
          const paths = await pollUntil(
            'app-1 → cache-1 redis paths failing',
            async () => {
              const list = await labPaths(l, '?component=cache-1');
              const mine = list.filter((p) => p.agent === 'app-1' && !echoKinds.includes(p.kind));
              return mine.length === 2 && mine.every((p) => p.state === 'failing')
                ? list
                : undefined;
            },
            { timeoutMs: 10_000, intervalMs: 200 },
          );
          for (const p of paths) {
            if (p.agent === 'app-1' && !echoKinds.includes(p.kind))
              expect(p.lastClass).toBe('tcp_timeout');
            else expect(pathHealthy(p), `${p.agent} → ${p.target}`).toBe(true);
          }
        },
      },
    );
    const top = diagnosis.hypotheses[0]!;
    expect(top.components, top.summary).toContain('cache-1');
  }, 90_000);

  it('a host dropping everything from one source is path_blocked between those two', async () => {
    const l = theLab();
    const { diagnosis } = await faultCycle(l, dropSource(l, 'db-1', 'app-2'), {
      kind: 'path_blocked',
    });
    // Both directions between the two are cut (the filter eats app-2's replies too): the
    // blocked pair is named, whichever side the hypothesis calls the sources.
    const top = diagnosis.hypotheses[0]!;
    const named = new Set([...top.components, ...top.groups.flatMap((g) => g.members)]);
    expect([...named].sort(), top.summary).toEqual(['app-2', 'db-1']);
  }, 90_000);

  it('random loss on a link (nftables numgen) is packet_loss at that host', async () => {
    const l = theLab();
    await faultCycle(
      l,
      randomLoss(l, 'cache-1', 30),
      { kind: 'packet_loss', components: ['cache-1'] },
      // The collector keeps a 30 s window: the lossy period ages out of it before the
      // paths are clean again.
      { detectTimeoutMs: 30_000, recoverTimeoutMs: 60_000 },
    );
  }, 120_000);
});
