import { describe, expect, it } from 'vitest';
import type { Plan, PlanTarget } from '../wire/plan.js';
import { planToAgentConfig } from './plan-targets.js';
import type { PlanAgentBase } from './plan-targets.js';

const base: PlanAgentBase = {
  name: 'app-1',
  labels: { zone: 'a' },
  metricsListen: false,
  maxInFlight: 64,
};

function target(over: Partial<PlanTarget> = {}): PlanTarget {
  return {
    name: 'db-1/tcp/postgres',
    component: 'db-1',
    service: 'postgres',
    kind: 'tcp',
    address: '198.18.0.10:5432',
    intervalMs: 1000,
    timeoutMs: 800,
    options: {},
    labels: { zone: 'b', switch: 'sw-2' },
    ...over,
  };
}

function plan(targets: PlanTarget[]): Plan {
  return {
    version: 'v1',
    agent: 'app-1',
    generatedAtMs: 1,
    refreshIntervalMs: 30_000,
    reportIntervalMs: 1000,
    targets,
  };
}

describe('planToAgentConfig', () => {
  it("takes the plan's confirmation burst and adaptive timeouts, defaults when it says nothing", () => {
    const older = planToAgentConfig(plan([target()]), base).config;
    expect(older.defaults.confirm).toEqual({ count: 3, spacingMs: 150 });
    expect(older.defaults.adaptiveTimeout).toBe(true);
    const told = planToAgentConfig(
      { ...plan([target()]), confirm: { count: 0, spacingMs: 100 }, adaptiveTimeout: false },
      base,
    ).config;
    expect(told.defaults.confirm).toEqual({ count: 0, spacingMs: 100 });
    expect(told.defaults.adaptiveTimeout).toBe(false);
  });

  it('turns plan targets into resolved targets the Agent runs', () => {
    const { config, problems } = planToAgentConfig(
      plan([
        target(),
        target({
          name: 'api-1/http/web',
          component: 'api-1',
          service: 'web',
          kind: 'http',
          address: 'http://198.18.0.20:8080/healthz',
          options: { validStatusCodes: ['2xx', 404] },
        }),
        target({ name: 'db-1/icmp', kind: 'icmp', address: '198.18.0.10', service: undefined }),
      ]),
      base,
    );
    expect(problems).toEqual([]);
    expect(config.agent).toEqual({ name: 'app-1', labels: { zone: 'a' } });
    expect(config.metrics.listen).toBe(false);
    expect(config.defaults.maxInFlight).toBe(64);
    expect(config.targets).toHaveLength(3);
    const [tcpT, httpT, icmpT] = config.targets;
    expect(tcpT).toMatchObject({
      name: 'db-1/tcp/postgres',
      kind: 'tcp',
      intervalMs: 1000,
      timeoutMs: 800,
      // Option defaults applied by the kind's schema.
      options: { family: 0 },
      labels: { zone: 'b', switch: 'sw-2', component: 'db-1', service: 'postgres' },
    });
    expect(tcpT?.target).toMatchObject({
      host: '198.18.0.10',
      port: 5432,
      name: 'db-1/tcp/postgres',
    });
    expect(httpT?.target.url?.pathname).toBe('/healthz');
    expect(httpT?.options).toMatchObject({ method: 'GET', validStatusCodes: ['2xx', 404] });
    expect(icmpT?.labels).toEqual({ zone: 'b', switch: 'sw-2', component: 'db-1' });
    expect(Object.isFrozen(config.targets)).toBe(true);
  });

  it.each([
    ['an unknown kind', target({ kind: 'smtp' }), /unknown probe kind "smtp"/],
    ['an address of the wrong form', target({ address: 'db-1' }), /port is missing/],
    ['a hostile address', target({ address: '-oProxyCommand=x:1' }), /starts with "-"/],
    ['unknown options', target({ options: { bogus: 1 } }), /invalid tcp options: .*bogus/],
    [
      'options of the wrong type',
      target({ options: { family: 5 } }),
      /invalid tcp options: family/,
    ],
  ])('skips a target with %s, keeps the rest, and says why', (_what, bad, why) => {
    const good = target({ name: 'db-2/tcp/postgres', address: '198.18.0.11:5432' });
    const { config, problems } = planToAgentConfig(plan([bad, good]), base);
    expect(config.targets.map((t) => t.name)).toEqual(['db-2/tcp/postgres']);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ target: bad.name, action: 'skipped' });
    expect(problems[0]?.message).toMatch(why);
  });

  it('skips a duplicate name (the scheduler would refuse the whole set)', () => {
    const { config, problems } = planToAgentConfig(
      plan([target(), target({ address: '198.18.0.99:1' })]),
      base,
    );
    expect(config.targets).toHaveLength(1);
    expect(config.targets[0]?.address).toBe('198.18.0.10:5432');
    expect(problems).toEqual([
      {
        target: 'db-1/tcp/postgres',
        action: 'skipped',
        message: 'duplicate target name (targets[1])',
      },
    ]);
  });

  it('clamps a timeout that is not below the interval, and leaves out unusable label names', () => {
    const { config, problems } = planToAgentConfig(
      plan([target({ timeoutMs: 5000, labels: { 'rack-id': 'r1', job: 'x', rack: 'r1' } })]),
      base,
    );
    expect(config.targets[0]?.timeoutMs).toBe(900);
    expect(config.targets[0]?.labels).toEqual({
      rack: 'r1',
      component: 'db-1',
      service: 'postgres',
    });
    expect(problems.map((p) => p.action)).toEqual(['adjusted', 'adjusted', 'adjusted']);
    expect(problems.map((p) => p.message).join('\n')).toMatch(/timeout 5000 ms.*900 ms/);
  });

  it('an empty plan is a valid, empty config', () => {
    const { config, problems } = planToAgentConfig(plan([]), base);
    expect(config.targets).toEqual([]);
    expect(problems).toEqual([]);
    expect(config.defaults.intervalMs).toBe(0);
  });
});
