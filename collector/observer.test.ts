import { describe, expect, it } from 'vitest';
import type { ComponentConfig } from './config.js';
import { whereCollectorStands } from './observer.js';

const component = (name: string, address: string, agent = name): ComponentConfig => ({
  name,
  address,
  role: 'other',
  labels: { switch: `sw-${name}` },
  agent,
  services: [],
});

describe('whereCollectorStands', () => {
  const inventory = [component('ctl-1', '10.9.0.2'), component('db-1', '10.9.0.3', 'db-agent')];

  it('finds its host by its own addresses, with that host agent and labels', () => {
    expect(whereCollectorStands(inventory, { addresses: ['192.0.2.1', '10.9.0.2'] })).toEqual({
      host: 'ctl-1',
      labels: { switch: 'sw-ctl-1' },
      agents: ['ctl-1'],
    });
  });

  it('adds the agent started beside it', () => {
    expect(whereCollectorStands(inventory, { addresses: ['10.9.0.3'], localAgent: 'box' })).toEqual(
      { host: 'db-1', labels: { switch: 'sw-db-1' }, agents: ['box', 'db-agent'] },
    );
  });

  it('knows nothing when no component is on this machine', () => {
    expect(whereCollectorStands(inventory, { addresses: ['192.0.2.1'] })).toEqual({});
    expect(whereCollectorStands(inventory, { addresses: [], localAgent: 'box' })).toEqual({
      agents: ['box'],
    });
  });

  it('takes no host when several components share its address and none runs its agent', () => {
    const shared = [component('a', '10.9.0.2'), component('b', '10.9.0.2')];
    expect(whereCollectorStands(shared, { addresses: ['10.9.0.2'] })).toEqual({});
    expect(whereCollectorStands(shared, { addresses: ['10.9.0.2'], localAgent: 'b' })).toEqual({
      host: 'b',
      labels: { switch: 'sw-b' },
      agents: ['b'],
    });
  });
});
