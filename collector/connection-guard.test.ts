import { createServer, type Server } from 'node:http';
import { createConnection, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  defaultConnectionLimits,
  guardConnections,
  isLoopbackHost,
  plainListenWarning,
  serverTimeoutOptions,
} from './connection-guard.js';
import { pollUntil } from '../lab/poll-until.js';

let server: Server | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  server?.closeAllConnections();
  await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
  server = undefined;
});

interface Client {
  readonly socket: Socket;
  closed: boolean;
}

async function connect(port: number, send: string): Promise<Client> {
  const socket = createConnection({ host: '127.0.0.1', port });
  sockets.push(socket);
  const c: Client = { socket, closed: false };
  socket.on('error', () => {});
  socket.resume();
  socket.once('close', () => (c.closed = true));
  await new Promise<void>((r) => {
    socket.once('connect', () => {
      socket.write(send);
      r();
    });
    socket.once('close', () => r());
  });
  return c;
}

/** A whole GET on a fresh connection; the status line, or 'closed' if the server hung up. */
async function get(port: number): Promise<string> {
  const c = await connect(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  let text = '';
  c.socket.on('data', (d: Buffer) => (text += d.toString()));
  await pollUntil('an answer or a close', () => c.closed || text.includes('\r\n\r\n'));
  return text.split('\r\n', 1)[0] || 'closed';
}

async function listen(
  maxConnections: number,
  handler: (release: () => void) => void = (release) => release(),
): Promise<{ port: number; stats: ReturnType<typeof guardConnections> }> {
  const s = createServer((_req, res) => handler(() => res.end('ok')));
  server = s;
  const stats = guardConnections(s, maxConnections);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as AddressInfo).port, stats };
}

describe('guardConnections', () => {
  it('sheds the oldest stalled connection to let a whole request in', async () => {
    const { port, stats } = await listen(4);
    const stalled: Client[] = [];
    for (let i = 0; i < 4; i++) stalled.push(await connect(port, 'GET / HTTP/1.1\r\nHo'));
    await pollUntil('four open', () => stats().open === 4);
    expect(await get(port)).toBe('HTTP/1.1 200 OK');
    await pollUntil('the oldest stalled closed', () => stalled[0]?.closed === true);
    expect(stalled.slice(1).map((c) => c.closed)).toEqual([false, false, false]);
    expect(stats().shed).toBeGreaterThanOrEqual(1);
    expect(stats().open).toBeLessThanOrEqual(4);
  });

  it('never holds more than the cap, however many stalled connections arrive', async () => {
    const { port, stats } = await listen(8);
    for (let i = 0; i < 50; i++) await connect(port, 'POST / HTTP/1.1\r\n');
    await pollUntil('the flood shed down to the cap', () => stats().shed === 42);
    expect(stats().open).toBe(8);
  });

  it('refuses a newcomer rather than cut a request in progress', async () => {
    const pending: (() => void)[] = [];
    const { port, stats } = await listen(2, (release) => pending.push(release));
    const busy = [
      await connect(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      await connect(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    ];
    await pollUntil('both requests in progress', () => pending.length === 2);
    expect(await get(port)).toBe('closed');
    expect(stats().refused).toBe(1);
    expect(busy.map((c) => c.closed)).toEqual([false, false]);
    for (const release of pending) release();
  });

  it('counts an answered keep-alive connection as idle again: it may be shed', async () => {
    const { port, stats } = await listen(1);
    const idle = await connect(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await pollUntil('one open', () => stats().open === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(await get(port)).toBe('HTTP/1.1 200 OK');
    await pollUntil('the idle one closed', () => idle.closed);
  });
});

describe('serverTimeoutOptions', () => {
  it('checks header deadlines every second, not every 30 s', () => {
    expect(serverTimeoutOptions(defaultConnectionLimits)).toEqual({
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: 1_000,
    });
  });
});

describe('plainListenWarning', () => {
  it.each([
    ['127.0.0.1:7070', false, false],
    ['127.1.2.3:7070', false, false],
    ['[::1]:7070', false, false],
    ['localhost:7070', false, false],
    ['0.0.0.0:7070', false, true],
    ['[::]:7070', false, true],
    ['10.0.0.5:7070', false, true],
    ['collector.example:7070', false, true],
    ['0.0.0.0:7070', true, false],
  ])('%s, tls %s → warns: %s', (listen, tls, warns) => {
    const w = plainListenWarning(listen, tls);
    expect(w !== undefined).toBe(warns);
    if (warns) expect(w).toMatch(/without TLS.*tls\.cert/);
  });

  it('does not take 127-looking names for loopback', () => {
    expect(isLoopbackHost('127.0.0.1.example.com')).toBe(false);
  });
});
