import type { LabSpec } from '../../../lab/spec.js';

/**
 * The lab of the service-level tests: two app hosts on sw-app with the collector; a
 * PostgreSQL host, a Redis host and a DNS server on sw-data; one cable between.
 */
export const servicesLab: LabSpec = {
  switches: [
    { name: 'sw-app', zone: 'front' },
    { name: 'sw-data', zone: 'data' },
  ],
  uplinks: [['sw-app', 'sw-data']],
  hosts: [
    { name: 'app-1', switch: 'sw-app', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'app-2', switch: 'sw-app', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'db-1', switch: 'sw-data', role: 'database', services: [{ kind: 'postgres' }] },
    { name: 'cache-1', switch: 'sw-data', role: 'cache', services: [{ kind: 'redis' }] },
    { name: 'dns-1', switch: 'sw-data', role: 'dns', services: [{ kind: 'dns' }] },
  ],
};

/** Every agent probes the 4 other hosts at 3 layers (icmp, tcp, protocol) and with a full-size echo (mtu). */
export const servicesLabPaths = 5 * 4 * 4;
