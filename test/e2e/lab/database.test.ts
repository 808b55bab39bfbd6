import { describe, expect, it } from 'vitest';
import { pollUntil } from '../../../lab/poll-until.js';
import { breakDns, freezeDatabase, killAgent, stopPostgres } from '../../../lab/faults.js';
import { faultCycle, labPaths } from '../../../lab/expect.js';
import { useLab } from './use-lab.js';
import type { Lab } from '../../../lab/lab.js';
import { canRunLab } from '../../../lab/spec.js';
import { servicesLab, servicesLabPaths } from './services-lab.js';

/** Faults of a service, not of the network: the diagnosis must say so and name it. */
describe.runIf(canRunLab)('lab: service faults', () => {
  const theLab = useLab(servicesLab, servicesLabPaths, 'database.test.ts');
  /** The failing paths to `component`, once all `count` of `targetSuffix` fail. */
  const failingTo = (l: Lab, component: string, targetSuffix: string, count: number) =>
    pollUntil(
      `${count} paths to ${component} …${targetSuffix} failing`,
      async () => {
        const paths = (await labPaths(l, `?component=${component}`)).filter((p) =>
          p.target.endsWith(targetSuffix),
        );
        return paths.length === count && paths.every((p) => p.state === 'failing')
          ? paths
          : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );

  it('a DNS server that lost its records is dns_failure on dns-1, the network fine', async () => {
    const l = theLab();
    await faultCycle(
      l,
      breakDns(l, 'dns-1'),
      { kind: 'dns_failure', components: ['dns-1'] },
      {
        whileInjected: async () => {
          for (const p of await failingTo(l, 'dns-1', '/dns/dns', 4)) {
            expect(p.lastClass).toBe('dns_error');
          }
        },
      },
    );
  }, 90_000);

  it('PostgreSQL shut down (immediate) is service_down on db-1: refused, while the host answers', async () => {
    const l = theLab();
    await faultCycle(
      l,
      stopPostgres(l, 'db-1'),
      { kind: 'service_down', components: ['db-1'] },
      {
        whileInjected: async () => {
          for (const p of await failingTo(l, 'db-1', '/postgres/tcp', 4)) {
            expect(p.lastClass).toBe('tcp_refused');
          }
          const icmp = (await labPaths(l, '?component=db-1')).filter((p) => p.kind === 'icmp');
          expect(icmp.map((p) => p.state)).toEqual(['ok', 'ok', 'ok', 'ok']);
        },
      },
    );
  }, 90_000);

  it('PostgreSQL frozen (SIGSTOP) is service_unresponsive on db-1: connects, never answers', async () => {
    const l = theLab();
    await faultCycle(
      l,
      freezeDatabase(l, 'db-1', 'postgres'),
      { kind: 'service_unresponsive', components: ['db-1'] },
      {
        whileInjected: async () => {
          for (const p of await failingTo(l, 'db-1', '/postgres/postgres', 4)) {
            expect(p.lastClass).toBe('protocol_timeout');
          }
        },
      },
    );
  }, 90_000);
  it('a killed agent is agent_silent, its host still reachable; restarted, it reports again', async () => {
    const l = theLab();
    await faultCycle(
      l,
      killAgent(l, 'app-2'),
      { kind: 'agent_silent', components: ['app-2'] },
      {
        whileInjected: async () => {
          const agents = await l.get<{ agents: { agent: string; state: string }[] }>(
            '/api/v1/agents',
          );
          expect(agents.agents.find((a) => a.agent === 'app-2')?.state).toBe('silent');
        },
      },
    );
    const agents = await l.get<{ agents: { agent: string; state: string }[] }>('/api/v1/agents');
    expect(agents.agents.find((a) => a.agent === 'app-2')?.state).toBe('live');
  }, 90_000);
});
