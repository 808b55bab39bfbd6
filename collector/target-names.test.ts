import { describe, expect, it } from 'vitest';
import {
  describePlanTarget,
  hostTargetName,
  meshHostName,
  serviceTargetName,
} from './target-names.js';

describe('plan target names: made and split back by one format', () => {
  it.each([
    ['db-1/icmp', 'icmp', { component: 'db-1' }],
    ['db-1/mtu', 'mtu', { component: 'db-1' }],
    // A mesh agent named like a component that runs another agent.
    ['web-1/agent/icmp', 'icmp', { component: 'web-1' }],
    ['web-1/agent/mtu', 'mtu', { component: 'web-1' }],
    ['db-1/postgres/tcp', 'tcp', { component: 'db-1', service: 'postgres' }],
    ['db-1/postgres/postgres', 'postgres', { component: 'db-1', service: 'postgres' }],
    ['db-1/http/postgres', 'postgres', { component: 'db-1', service: 'http' }],
    ['db-1/tcp', 'tcp', { component: 'db-1' }],
    // The older <component>/<kind>/<service> form.
    ['db-1/tcp/postgres', 'tcp', { component: 'db-1', service: 'postgres' }],
    ['api-2/http/web/v1', 'http', { component: 'api-2', service: 'web/v1' }],
    ['db-1/tcp/postgres', 'http', { component: 'db-1/tcp/postgres' }],
    ['plain-target', 'tcp', { component: 'plain-target' }],
  ])('%s (%s) → %o', (target, kind, want) => {
    expect(describePlanTarget(target, kind)).toEqual(want);
  });

  it('reads back every name the plan makes', () => {
    expect(describePlanTarget(hostTargetName('db-1', 'icmp'), 'icmp')).toEqual({
      component: 'db-1',
    });
    expect(describePlanTarget(hostTargetName(meshHostName('web-1'), 'mtu'), 'mtu')).toEqual({
      component: 'web-1',
    });
    expect(describePlanTarget(serviceTargetName('db-1', 'pg', 'tcp'), 'tcp')).toEqual({
      component: 'db-1',
      service: 'pg',
    });
    expect(describePlanTarget(serviceTargetName('db-1', 'pg', 'postgres'), 'postgres')).toEqual({
      component: 'db-1',
      service: 'pg',
    });
  });
});
