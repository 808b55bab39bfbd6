import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { timeWaitLeftBy } from '../test/helpers/time-wait.js';
import { runProbe } from './run.js';
import { connect, ProbeClock } from './socket.js';
import { tcp, tcpOptions } from './tcp.js';
import { parseTarget } from './target.js';

function listen(handler: (s: Socket) => void): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
function portOf(server: Server): number {
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}
function probe(address: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(tcp, parseTarget(address, tcp.target), tcpOptions.parse(options), { timeoutMs });
}

describe('tcp probe on loopback', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  async function serve(handler: (s: Socket) => void): Promise<number> {
    const server = await listen((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      handler(s);
    });
    servers.push(server);
    return portOf(server);
  }

  it('connects to a listening server: ok with a connect time', async () => {
    const port = await serve(() => undefined);
    const r = await probe(`127.0.0.1:${port}`);
    expect(r.class).toBe('ok');
    expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.connectMs).toBeLessThan(100);
  });

  it('the connect time starts at the connect(2) call, not before the JS work of the same tick', async () => {
    const port = await serve(() => undefined);
    const clock = new ProbeClock(2000);
    const connecting = connect('127.0.0.1', port, clock, new AbortController().signal);
    // Other work in this tick (at 1,000 probes/s, other probes'): Node calls connect(2) after it.
    const until = performance.now() + 20;
    while (performance.now() < until);
    const socket = await connecting;
    socket.destroy();
    // A loopback handshake takes well under a millisecond; the busy 20 ms must not count.
    expect(clock.timings.connectMs).toBeLessThan(10);
  });

  it('a closed port is tcp_refused', async () => {
    const port = await serve(() => undefined);
    await new Promise((r) => servers.pop()!.close(r));
    const r = await probe(`127.0.0.1:${port}`);
    expect(r.class).toBe('tcp_refused');
    expect(r.error?.code).toBe('ECONNREFUSED');
    // The address it tried stays on the failure (probe_ip_protocol reads it).
    expect(r.detail).toEqual({ ip: '127.0.0.1' });
  });

  it('send/expect: matching answer is ok, wrong answer is protocol_error, silence is protocol_timeout', async () => {
    const echo = await serve((s) => s.on('data', (d) => s.write(`PONG ${d.toString()}`)));
    const ok = await probe(`127.0.0.1:${echo}`, { send: 'PING\\r\\n', expect: '^PONG' });
    expect(ok.class).toBe('ok');
    expect(ok.timings.firstByteMs).toBeGreaterThanOrEqual(0);

    const wrong = await serve((s) => s.end('HELLO\r\n'));
    const bad = await probe(`127.0.0.1:${wrong}`, { expect: '^SSH-' });
    expect(bad.class).toBe('protocol_error');

    const silent = await serve(() => undefined);
    const hung = await probe(`127.0.0.1:${silent}`, { expect: '^SSH-' }, 300);
    expect(hung.class).toBe('protocol_timeout');
    expect(hung.timings.connectMs).toBeDefined();
  });

  it('a backtracking-prone expect cannot stall the agent: ^(a+)+$ against 30 a and "!" answers within its timeout', async () => {
    // JavaScript's backtracking engine takes 2^30 steps (minutes, the event loop blocked);
    // RE2 semantics take one pass.
    const port = await serve((s) => s.end(`${'a'.repeat(30)}!`));
    const t0 = performance.now();
    const r = await probe(`127.0.0.1:${port}`, { expect: '^(a+)+$' }, 500);
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(r.class).not.toBe('ok');
  });

  it('refuses a regex RE2 cannot run in linear time, naming why', () => {
    const r = tcpOptions.safeParse({ expect: '^(?=SSH)' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['expect']);
    expect(r.error?.issues[0]?.message).toMatch(/linear time \(RE2\), without lookahead/);
  });

  it('a server that accepts and then resets is tcp_reset', async () => {
    const port = await serve((s) => s.resetAndDestroy());
    const r = await probe(`127.0.0.1:${port}`, { expect: '.' });
    expect(r.class).toBe('tcp_reset');
    expect(r.error?.code).toBe('ECONNRESET');
  });

  it('ends its connections with a reset: no TIME_WAIT left behind', async () => {
    let closedByPeer = 0;
    const port = await serve((s) => s.on('error', () => closedByPeer++));
    const left = await timeWaitLeftBy(port, async () => {
      for (let i = 0; i < 20; i++) expect((await probe(`127.0.0.1:${port}`)).class).toBe('ok');
    });
    expect(left).toEqual([]);
  });
});

describe.runIf(canUseNetns)('tcp probe across a network', () => {
  let net: TestNet;
  let server: TestHost;
  let dead: TestHost;
  beforeAll(async () => {
    net = await TestNet.create();
    server = await net.addHost('srv');
    dead = await net.addHost('dead');
    await net.nft(
      server,
      `table inet fltest { chain input { type filter hook input priority 0; tcp dport 81 drop; }; }`,
    );
    await net.linkDown(dead);
  });
  afterAll(async () => {
    await net?.destroy();
  });

  it('a port dropped by nftables is tcp_timeout', async () => {
    const r = await probe(`${server.ip}:81`, {}, 500);
    expect(r.class).toBe('tcp_timeout');
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(450);
  });

  it('a closed port on a live host is tcp_refused', async () => {
    const r = await probe(`${server.ip}:82`, {}, 2000);
    expect(r.class).toBe('tcp_refused');
  });

  it('a host whose link is down is tcp_unreachable', async () => {
    // ARP gives up after ~3 s and the kernel answers EHOSTUNREACH.
    const r = await probe(`${dead.ip}:80`, {}, 6000);
    expect(r.class).toBe('tcp_unreachable');
    // FL_CONNECT_LOST: the kernel's EHOSTUNREACH was lost in a race and the probe saw a
    // "connect" on a socket with no peer (see connect() in socket.ts).
    expect(['EHOSTUNREACH', 'FL_CONNECT_LOST']).toContain(r.error?.code);
  }, 10_000);
});
