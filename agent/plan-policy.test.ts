import { describe, expect, it } from 'vitest';
import type { Plan, PlanTarget } from '../wire/plan.js';
import { compileAllowList, defaultPlanPolicy, planTargetRefusal } from './plan-policy.js';
import type { PlanPolicy } from './plan-policy.js';
import { planToAgentConfig } from './plan-targets.js';

function target(over: Partial<PlanTarget>): PlanTarget {
  return {
    name: 't',
    component: 'c',
    kind: 'tcp',
    address: '10.0.0.5:5432',
    intervalMs: 1000,
    timeoutMs: 500,
    options: {},
    labels: {},
    ...over,
  };
}

function convert(t: PlanTarget, policy: PlanPolicy = defaultPlanPolicy) {
  const plan: Plan = {
    version: 'v',
    agent: 'a',
    generatedAtMs: 1,
    refreshIntervalMs: 1000,
    reportIntervalMs: 1000,
    targets: [t],
  };
  const allowList =
    policy.allowTargets === undefined ? undefined : compileAllowList(policy.allowTargets, 'x');
  return planToAgentConfig(plan, {
    name: 'a',
    labels: {},
    metricsListen: false,
    maxInFlight: 4,
    policy: { policy, ...(allowList === undefined ? {} : { allowList }) },
  });
}

describe('plan policy', () => {
  const cases: {
    desc: string;
    t: Partial<PlanTarget>;
    policy?: Partial<PlanPolicy>;
    refused: RegExp | undefined;
  }[] = [
    { desc: 'a plain tcp connect runs', t: {}, refused: undefined },
    {
      desc: 'tcp expect without send runs (what an inventory tcp service makes)',
      t: { options: { expect: '^INFO ' } },
      refused: undefined,
    },
    {
      desc: 'a tcp payload is refused by default',
      t: { options: { send: 'DEL *\\r\\n' } },
      refused: /tcp payload/,
    },
    {
      desc: 'a tcp payload runs when allowTcpSend',
      t: { options: { send: 'PING\\r\\n' } },
      policy: { allowTcpSend: true },
      refused: undefined,
    },
    {
      desc: 'http GET runs',
      t: { kind: 'http', address: 'http://10.0.0.5/healthz', options: { validStatusCodes: [200] } },
      refused: undefined,
    },
    {
      desc: 'http POST is refused by default',
      t: { kind: 'http', address: 'http://10.0.0.5/x', options: { method: 'POST', body: 'x' } },
      refused: /method POST/,
    },
    {
      desc: 'http custom headers are refused by default',
      t: { kind: 'http', address: 'http://10.0.0.5/x', options: { headers: { 'X-Admin': '1' } } },
      refused: /X-Admin/,
    },
    {
      desc: 'http POST with headers runs when both are allowed',
      t: {
        kind: 'http',
        address: 'http://10.0.0.5/x',
        options: { method: 'POST', headers: { a: 'b' } },
      },
      policy: { allowHttpMethods: ['GET', 'POST'], allowHttpHeaders: true },
      refused: undefined,
    },
    {
      desc: 'a host inside allowTargets runs',
      t: {},
      policy: { allowTargets: ['10.0.0.0/24'] },
      refused: undefined,
    },
    {
      desc: 'a host outside allowTargets is refused',
      t: { address: '169.254.169.254:80' },
      policy: { allowTargets: ['10.0.0.0/24'] },
      refused: /not in the agent's allowTargets/,
    },
    {
      desc: 'a host name matches a wildcard entry',
      t: { address: 'db-1.internal:5432' },
      policy: { allowTargets: ['*.internal'] },
      refused: undefined,
    },
    {
      desc: 'a host name is not allowed by a CIDR alone',
      t: { address: 'db-1.internal:5432' },
      policy: { allowTargets: ['10.0.0.0/8'] },
      refused: /not in/,
    },
    {
      desc: 'IPv6 in a v6 block',
      t: { address: '[fd00::5]:80' },
      policy: { allowTargets: ['fd00::/8'] },
      refused: undefined,
    },
    {
      desc: 'dns: the resolver is checked, not the name',
      t: { kind: 'dns', address: 'db.internal', options: { server: '8.8.8.8' } },
      policy: { allowTargets: ['10.0.0.0/8', '*.internal'] },
      refused: /dns server 8.8.8.8/,
    },
    {
      desc: 'http redirects are refused while allowTargets is set',
      t: { kind: 'http', address: 'http://10.0.0.5/', options: { followRedirects: true } },
      policy: { allowTargets: ['10.0.0.0/8'] },
      refused: /followRedirects/,
    },
  ];
  for (const c of cases) {
    it(c.desc, () => {
      const policy = { ...defaultPlanPolicy, ...c.policy };
      const { config, problems } = convert(target(c.t), policy);
      if (c.refused === undefined) {
        expect(problems).toEqual([]);
        expect(config.targets).toHaveLength(1);
      } else {
        expect(config.targets).toHaveLength(0);
        expect(problems[0]?.message).toMatch(c.refused);
        expect(problems[0]?.message).toMatch(/plan policy/);
      }
    });
  }

  it('a bad allowTargets entry is a clear error naming it', () => {
    expect(() => compileAllowList(['10.0.0.0/8', '10.0.0.0/99'], 'allowTargets')).toThrow(
      /allowTargets\[1\]: expected a CIDR block .*10\.0\.0\.0\/99/,
    );
    expect(() => compileAllowList(['ex ample'], 'allowTargets')).toThrow(/allowTargets\[0\]/);
  });

  it('planTargetRefusal is undefined for every target of a default plan kind without extras', () => {
    const { config } = convert(target({}), { ...defaultPlanPolicy, allowTargets: undefined });
    expect(planTargetRefusal(config.targets[0]!, defaultPlanPolicy, undefined)).toBeUndefined();
  });
});
