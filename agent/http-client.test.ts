import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CollectorHttp } from './http-client.js';

let server: Server | undefined;
let client: CollectorHttp | undefined;

afterEach(async () => {
  client?.close();
  client = undefined;
  server?.closeAllConnections();
  await new Promise<void>((resolve) =>
    server === undefined ? resolve() : server.close(() => resolve()),
  );
  server = undefined;
});

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ base: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  server = createServer(handler);
  server.on('connection', (s: Socket) => sockets.add(s));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sockets };
}

describe("the agent's HTTP client", () => {
  it('sends the method, headers and body, and reads the status, headers and whole body', async () => {
    const { base } = await serve((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        res.writeHead(201, {
          'x-echo': String(req.headers['x-test']),
          'content-type': 'text/plain',
        });
        // Two writes: the client must read the answer whole.
        res.write(`${req.method} ${req.url} ${req.headers['content-length']} `);
        res.end(body.repeat(1000));
      });
    });
    client = new CollectorHttp();
    const reply = await client.request(`${base}/api/v1/reports?x=1`, {
      method: 'POST',
      headers: { 'x-test': 'yes' },
      body: 'ab',
    });
    expect(reply.statusCode).toBe(201);
    expect(reply.headers['x-echo']).toBe('yes');
    expect(reply.body.toString()).toBe(`POST /api/v1/reports?x=1 2 ${'ab'.repeat(1000)}`);
  });

  it('keeps its connection: ten requests in a row take one socket', async () => {
    const { base, sockets } = await serve((_req, res) => res.end('ok'));
    client = new CollectorHttp();
    for (let i = 0; i < 10; i++) {
      const reply = await client.request(`${base}/healthz`, { method: 'GET', headers: {} });
      expect(reply.body.toString()).toBe('ok');
    }
    expect(sockets.size).toBe(1);
  });

  it("rejects with the signal's reason when a request times out, also while its answer is read", async () => {
    const { base } = await serve((req, res) => {
      if (req.url === '/slow-body') {
        res.writeHead(200);
        res.write('partial');
        return; // never ends
      }
      // /slow-head: never answers
    });
    client = new CollectorHttp();
    for (const path of ['/slow-head', '/slow-body']) {
      const started = performance.now();
      const err: unknown = await client
        .request(`${base}${path}`, { method: 'GET', headers: {}, signal: AbortSignal.timeout(150) })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err, path).toBeInstanceOf(Error);
      expect((err as Error).name, path).toBe('TimeoutError');
      expect(performance.now() - started, path).toBeLessThan(2000);
    }
  });

  it('rejects with the connection error when nothing listens, naming its code', async () => {
    const { base } = await serve((_req, res) => res.end());
    const port = new URL(base).port;
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    client = new CollectorHttp();
    const err = await client
      .request(`http://127.0.0.1:${port}/`, { method: 'GET', headers: {} })
      .then(
        () => undefined,
        (e: unknown) => e as NodeJS.ErrnoException,
      );
    expect(err?.code).toBe('ECONNREFUSED');
  });

  it('refuses at once with an aborted signal, sending nothing', async () => {
    let asked = 0;
    const { base } = await serve((_req, res) => {
      asked++;
      res.end();
    });
    client = new CollectorHttp();
    const signal = AbortSignal.abort(new Error('stopping'));
    await expect(client.request(base, { method: 'GET', headers: {}, signal })).rejects.toThrow(
      'stopping',
    );
    expect(asked).toBe(0);
  });
});
