import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  diesWithParent,
  freePort,
  httpReady,
  makeServerDir,
  ManagedServer,
  type ServerProcess,
} from './server-process.js';

/** Debian's prometheus-alertmanager. */
export const alertmanagerBin = '/usr/bin/prometheus-alertmanager';

/** Whether the tests can start an Alertmanager here. */
export const canRunAlertmanager = existsSync(alertmanagerBin);

/** An alert as `GET /api/v2/alerts` returns it (the fields the tests read). */
export interface GettableAlert {
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly startsAt: string;
  readonly endsAt: string;
  readonly generatorURL?: string;
  readonly fingerprint: string;
  readonly status: { readonly state: 'active' | 'suppressed' | 'unprocessed' };
}

/** A throwaway Alertmanager. */
export interface TestAlertmanager extends ServerProcess {
  /** Base URL, e.g. http://127.0.0.1:PORT — what an `alertmanager` sink's `urls` takes. */
  readonly url: string;
  /** `GET /api/v2/alerts` (active alerts; with `all`, silenced/inhibited/resolved-but-kept too). */
  alerts(opts?: { readonly all?: boolean }): Promise<GettableAlert[]>;
}

/**
 * Starts Debian's Alertmanager on 127.0.0.1 (or `opts.host`: an address of this namespace,
 * such as a lab's management address) on a free port, clustering off
 * (`--cluster.listen-address=`), storage in a temp dir, with one route to a receiver that
 * sends nowhere. Resolves once `/-/ready` answers; end it with `stop()` in afterAll (by PID;
 * it also dies with the test process).
 */
export async function startAlertmanager(
  opts: { readonly host?: string } = {},
): Promise<TestAlertmanager> {
  const host = opts.host ?? '127.0.0.1';
  const port = await freePort();
  const dir = makeServerDir('alertmanager');
  const configFile = join(dir, 'alertmanager.yml');
  writeFileSync(
    configFile,
    [
      'route:',
      '  receiver: nowhere',
      '  group_wait: 1s',
      '  group_interval: 1s',
      '  repeat_interval: 1h',
      'receivers:',
      '  - name: nowhere',
      '',
    ].join('\n'),
  );
  const url = `http://${host}:${port}`;
  const [command, args] = diesWithParent(alertmanagerBin, [
    `--config.file=${configFile}`,
    `--storage.path=${join(dir, 'data')}`,
    `--web.listen-address=${host}:${port}`,
    '--cluster.listen-address=',
    '--log.level=warn',
  ]);
  const server = new ManagedServer(host, port, dir, {
    name: 'alertmanager',
    command,
    args,
    stopSignal: 'SIGTERM',
    startTimeoutMs: 20_000,
    ready: httpReady(`${url}/-/ready`),
  });
  await server.start();
  return Object.assign(server, {
    url,
    async alerts(opts: { readonly all?: boolean } = {}): Promise<GettableAlert[]> {
      const query =
        opts.all === true ? '?active=true&silenced=true&inhibited=true&unprocessed=true' : '';
      const res = await fetch(`${url}/api/v2/alerts${query}`, {
        signal: AbortSignal.timeout(5000),
      });
      if (!res.ok) throw new Error(`GET /api/v2/alerts: HTTP ${res.status}`);
      return (await res.json()) as GettableAlert[];
    },
  });
}

/** One alert as it was posted to Alertmanager (`POST /api/v2/alerts`), with when. */
export interface ReceivedAlert {
  /** When the front received it (epoch ms). */
  readonly atMs: number;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly startsAt: string;
  readonly endsAt: string;
}

/** A recording front for an Alertmanager: see {@link recordAlertsTo}. */
export interface AlertRecorder {
  /** Base URL of the front: what a sink's `urls` takes instead of the Alertmanager's. */
  readonly url: string;
  /** Every alert posted through the front, in order, firing and resolved alike. */
  readonly received: readonly ReceivedAlert[];
  stop(): Promise<void>;
}

/**
 * A front on `host` (a free port) that passes every request on to `am` unchanged and keeps
 * every alert posted to `/api/v2/alerts` — what Alertmanager was told, including an alert
 * that fired and resolved between two reads of its API (which shows only active alerts).
 */
export async function recordAlertsTo(am: TestAlertmanager, host: string): Promise<AlertRecorder> {
  const received: ReceivedAlert[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && (req.url ?? '').endsWith('/api/v2/alerts')) {
        try {
          for (const a of JSON.parse(body.toString('utf8')) as Omit<ReceivedAlert, 'atMs'>[]) {
            received.push({ atMs: Date.now(), ...a });
          }
        } catch {
          /* Alertmanager judges a bad body; the front only passes it on */
        }
      }
      const headers: Record<string, string> = {};
      const type = req.headers['content-type'];
      if (type !== undefined) headers['content-type'] = type;
      fetch(`${am.url}${req.url ?? '/'}`, {
        method: req.method ?? 'GET',
        headers,
        ...(req.method === 'GET' || req.method === 'HEAD' ? {} : { body }),
        signal: AbortSignal.timeout(5000),
      }).then(
        async (r) => {
          res.writeHead(r.status, {
            'content-type': r.headers.get('content-type') ?? 'text/plain',
          });
          res.end(Buffer.from(await r.arrayBuffer()));
        },
        (err: unknown) => {
          res.writeHead(502);
          res.end(err instanceof Error ? err.message : 'bad gateway');
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    received,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
