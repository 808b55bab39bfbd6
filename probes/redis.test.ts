import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { canRunRedis, startRedis, type RedisServer } from '../lab/redis.js';
import { redis, redisOptions } from './redis.js';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';

function probe(address: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(redis, parseTarget(address, redis.target), redisOptions.parse(options), {
    timeoutMs,
  });
}

describe('redis probe parses what a server sends (crafted bytes on loopback)', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  /** A server that answers the first bytes it receives with `answer` (or stays silent). */
  async function serve(
    answer: string | undefined,
    { close = false, eager = false } = {},
  ): Promise<string> {
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      const reply = (): void => {
        if (answer === undefined) return;
        if (close) s.end(answer);
        else s.write(answer);
      };
      if (eager) reply();
      else s.once('data', reply);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const addr = server.address() as { port: number };
    return `127.0.0.1:${addr.port}`;
  }

  const cases: {
    what: string;
    answer: string;
    cls: string;
    code?: string;
    detail?: Record<string, unknown>;
    eager?: boolean;
  }[] = [
    {
      what: '+PONG is ok',
      answer: '+PONG\r\n',
      cls: 'ok',
      detail: { reply: 'PONG', authRequired: false },
    },
    {
      what: '-NOAUTH is ok: alive, wants a password',
      answer: '-NOAUTH Authentication required.\r\n',
      cls: 'ok',
      detail: { errorCode: 'NOAUTH', authRequired: true },
    },
    {
      what: '-DENIED (protected mode) is ok: alive, refusing this client',
      answer: '-DENIED Redis is running in protected mode\r\n',
      cls: 'ok',
      detail: { errorCode: 'DENIED' },
    },
    {
      what: '-LOADING (dataset loading) is protocol_error',
      answer: '-LOADING Redis is loading the dataset in memory\r\n',
      cls: 'protocol_error',
      code: 'LOADING',
      detail: { errorCode: 'LOADING' },
    },
    {
      what: '-MASTERDOWN is protocol_error',
      answer: '-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to no\r\n',
      cls: 'protocol_error',
      code: 'MASTERDOWN',
    },
    {
      what: '-BUSY (a script runs) is protocol_error',
      answer: '-BUSY Redis is busy running a script.\r\n',
      cls: 'protocol_error',
      code: 'BUSY',
    },
    {
      what: 'the error code decides, not the text: -ERR saying "Authentication required" is protocol_error',
      answer: '-ERR Authentication required.\r\n',
      cls: 'protocol_error',
      code: 'ERR',
    },
    {
      what: '"-ERR max number of clients reached", sent before PING is even read, is protocol_error',
      answer: '-ERR max number of clients reached\r\n',
      cls: 'protocol_error',
      code: 'ERR',
      eager: true,
    },
    {
      what: 'another simple string is protocol_error',
      answer: '+OK\r\n',
      cls: 'protocol_error',
      code: 'FL_REDIS_UNEXPECTED',
    },
    {
      what: 'a bulk reply is protocol_error',
      answer: '$4\r\nPONG\r\n',
      cls: 'protocol_error',
      code: 'FL_REDIS_UNEXPECTED',
    },
    {
      what: 'an SSH banner is protocol_error',
      answer: 'SSH-2.0-OpenSSH_9.2\r\n',
      cls: 'protocol_error',
      code: 'FL_REDIS_UNEXPECTED',
    },
  ];
  it.each(cases)('$what', async ({ answer, cls, code, detail, eager }) => {
    const r = await probe(await serve(answer, { eager: eager ?? false }));
    expect(r.class).toBe(cls);
    if (code) expect(r.error?.code).toBe(code);
    if (detail) expect(r.detail).toMatchObject(detail);
  });

  it('a reply split across segments is read whole; a cut line and close is protocol_error; silence is protocol_timeout', async () => {
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', () => {
        s.write('+PO');
        setTimeout(() => s.write('NG\r\n'), 30);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const split = await probe(`127.0.0.1:${(server.address() as { port: number }).port}`);
    expect(split.class).toBe('ok');

    const cut = await probe(await serve('+PON', { close: true }));
    expect(cut.class).toBe('protocol_error');
    expect(cut.error?.code).toBe('FL_PEER_CLOSED');

    const silent = await probe(await serve(undefined), {}, 300);
    expect(silent.class).toBe('protocol_timeout');
    expect(silent.timings.connectMs).toBeDefined();
  });

  it('an authenticated check that gets no answer gives up at the deadline: protocol_timeout', async () => {
    // Answers the inline PING of the handshake, never the AUTH of the login.
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', (d: Buffer) => {
        if (d.toString().startsWith('PING')) s.write('-NOAUTH Authentication required.\r\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const r = await probe(
      `127.0.0.1:${(server.address() as { port: number }).port}`,
      { password: 'x' },
      400,
    );
    expect(r.class).toBe('protocol_timeout');
    expect(r.error?.code).toBe('FL_QUERY_TIMEOUT');
    expect(r.detail).toMatchObject({ authRequired: true, query: 'timeout' });
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(350);
    // Gives up at its deadline, not at the runner's backstop (timeout + 1 s).
    expect(r.timings.totalMs).toBeLessThan(1300);
  });
});

describe.runIf(canRunRedis)('redis probe against a real redis-server', () => {
  let server: RedisServer;
  const acl = { username: 'probe', password: 'probe-secret' };
  beforeAll(async () => {
    server = await startRedis({ password: 'default-secret', aclUser: acl });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('handshake: a password-protected server answers -NOAUTH: ok, authRequired', async () => {
    const r = await probe(server.address);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ errorCode: 'NOAUTH', authRequired: true });
    expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.firstByteMs).toBeGreaterThanOrEqual(0);
  });

  it('with the right password (default user, and an ACL user) it logs in and PINGs', async () => {
    const def = await probe(server.address, { password: 'default-secret' });
    expect(def.class).toBe('ok');
    expect(def.detail).toMatchObject({ query: 'ok' });
    expect(def.detail?.queryMs).toBeGreaterThan(0);

    const user = await probe(server.address, acl);
    expect(user.class).toBe('ok');
    expect(user.detail).toMatchObject({ query: 'ok' });
  });

  it('a wrong password is protocol_error WRONGPASS', async () => {
    const r = await probe(server.address, { username: acl.username, password: 'nope' });
    expect(r.class).toBe('protocol_error');
    expect(r.error?.code).toBe('WRONGPASS');
    expect(r.detail).toMatchObject({ query: 'failed', errorCode: 'WRONGPASS' });
  });

  it('a frozen server (SIGSTOP) still completes TCP connects, then is protocol_timeout', async () => {
    await server.freeze();
    try {
      const r = await probe(server.address, {}, 500);
      expect(r.class).toBe('protocol_timeout');
      expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
      expect(r.timings.totalMs).toBeGreaterThanOrEqual(450);
    } finally {
      await server.thaw();
    }
    expect((await probe(server.address)).class).toBe('ok');
  });

  it('a killed server is tcp_refused; restarted, ok again', async () => {
    await server.kill();
    const r = await probe(server.address);
    expect(r.class).toBe('tcp_refused');
    expect(r.error?.code).toBe('ECONNREFUSED');
    await server.restart();
    expect((await probe(server.address, { password: 'default-secret' })).class).toBe('ok');
  });
});

describe.runIf(canUseNetns && canRunRedis)(
  'redis probe across a network (server in a namespace host)',
  () => {
    let net: TestNet | undefined;
    let host: TestHost;
    let server: RedisServer | undefined;
    beforeAll(async () => {
      net = await TestNet.create();
      host = await net.addHost('db');
      server = await startRedis({ host });
    });
    afterAll(async () => {
      await server?.stop();
      await net?.destroy();
    });

    it('the default port reaches it: ok; dropped by nftables it is tcp_timeout — the network, not the database', async () => {
      const r = await probe(host.ip);
      expect(r.class).toBe('ok');
      expect(r.address).toBe(`${host.ip}:6379`);
      await net!.nft(
        host,
        'table inet fltest { chain input { type filter hook input priority 0; tcp dport 6379 drop; }; }',
      );
      const cut = await probe(host.ip, {}, 500);
      expect(cut.class).toBe('tcp_timeout');
      expect(cut.timings.totalMs).toBeGreaterThanOrEqual(450);
    });
  },
);
