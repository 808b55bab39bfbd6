import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { canRunMysql, startMysql, type MysqlServer } from '../test/helpers/mysql.js';
import { pollUntil } from '../lab/poll-until.js';
import { mysql, mysqlOptions } from './mysql.js';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';

function probe(address: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(mysql, parseTarget(address, mysql.target), mysqlOptions.parse(options), {
    timeoutMs,
  });
}

function packet(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq;
  return Buffer.concat([head, payload]);
}

/** A protocol-10 greeting shaped like MariaDB 10.11's (version, caps incl. PLUGIN_AUTH, plugin name). */
function greeting(version = '5.5.5-10.11.19-MariaDB-0+deb12u1', protocol = 10): Buffer {
  const tail = Buffer.alloc(4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10);
  tail.writeUInt32LE(42, 0); // connection id
  tail.fill(0x41, 4, 12); // auth data part 1
  tail.writeUInt16LE(0xf7fe, 13); // capabilities (low): PROTOCOL_41, SECURE_CONNECTION…
  tail[15] = 45; // charset
  tail.writeUInt16LE(0x0002, 16); // status
  tail.writeUInt16LE(0x81bf, 18); // capabilities (high): PLUGIN_AUTH…
  tail[20] = 21; // auth data length
  const payload = Buffer.concat([
    Buffer.from([protocol]),
    Buffer.from(`${version}\0`),
    tail,
    Buffer.from('BBBBBBBBBBBB\0'),
    Buffer.from('mysql_native_password\0'),
  ]);
  return packet(0, payload);
}

function errPacket(seq: number, code: number, message: string, sqlstate?: string): Buffer {
  const head = Buffer.alloc(3);
  head[0] = 0xff;
  head.writeUInt16LE(code, 1);
  return packet(
    seq,
    Buffer.concat([head, Buffer.from(sqlstate ? `#${sqlstate}${message}` : message)]),
  );
}
const okPacket = (seq: number): Buffer => packet(seq, Buffer.from([0x00, 0, 0, 2, 0, 0, 0]));

describe('mysql probe parses what a server sends (crafted bytes on loopback)', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  /**
   * A server that sends `first` on accept, then answers each packet the client sends with the
   * next of `answers` (closing after the last when `close`). Keeps what the client sent.
   */
  async function serve(
    first: Buffer | undefined,
    answers: Buffer[] = [],
    received: Buffer[] = [],
  ): Promise<string> {
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      if (first !== undefined) s.write(first);
      let next = 0;
      s.on('data', (d: Buffer) => {
        received.push(d);
        const answer = answers[next++];
        if (answer !== undefined) s.write(answer);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    return `127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  it('greeting, login accepted: ok with serverVersion; the login names our user and the server plugin, then COM_QUIT', async () => {
    const received: Buffer[] = [];
    const r = await probe(await serve(greeting(), [okPacket(2)], received), { user: 'watcher' });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({
      serverVersion: '5.5.5-10.11.19-MariaDB-0+deb12u1',
      authPlugin: 'mysql_native_password',
      login: 'ok',
    });
    expect(r.timings.firstByteMs).toBeGreaterThanOrEqual(0);
    const sent = Buffer.concat(received);
    expect(sent[3]).toBe(1); // the login is packet 1 of the handshake
    expect(sent.includes(Buffer.from('watcher\0\0mysql_native_password\0'))).toBe(true);
    // COM_QUIT: length 1, sequence 0, command 0x01
    expect(sent.subarray(-5)).toEqual(Buffer.from([1, 0, 0, 0, 1]));
  });

  const cases: {
    what: string;
    first: Buffer;
    answers?: Buffer[];
    cls: string;
    code?: string;
    detail?: Record<string, unknown>;
  }[] = [
    {
      what: 'login denied (1045) is ok: alive, refusing us',
      first: greeting(),
      answers: [
        errPacket(
          2,
          1045,
          "Access denied for user 'faultline'@'127.0.0.1' (using password: NO)",
          '28000',
        ),
      ],
      cls: 'ok',
      detail: { login: 'denied', loginErrorCode: 1045 },
    },
    {
      what: 'an auth switch is answered with an empty response, then judged',
      first: greeting(),
      answers: [
        packet(2, Buffer.from('\xfemysql_native_password\0AAAAAAAAAAAAAAAAAAAA\0', 'latin1')),
        errPacket(4, 1045, 'Access denied', '28000'),
      ],
      cls: 'ok',
      detail: { login: 'denied' },
    },
    {
      what: 'ERR 1040 (too many connections) instead of a greeting is protocol_error',
      first: errPacket(0, 1040, 'Too many connections'),
      cls: 'protocol_error',
      code: '1040',
      detail: { errorCode: 1040 },
    },
    {
      what: 'ERR 1129 (host blocked) instead of a greeting is protocol_error',
      first: errPacket(0, 1129, "Host '198.18.0.1' is blocked because of many connection errors"),
      cls: 'protocol_error',
      code: '1129',
      detail: { errorCode: 1129 },
    },
    {
      what: 'ERR 1040 after the login (non-super user at the limit) is protocol_error',
      first: greeting(),
      answers: [errPacket(2, 1040, 'Too many connections', '08004')],
      cls: 'protocol_error',
      detail: {
        errorCode: 1040,
        sqlstate: '08004',
        serverVersion: '5.5.5-10.11.19-MariaDB-0+deb12u1',
      },
    },
    {
      what: 'a protocol-9 greeting is protocol_error',
      first: greeting('3.22', 9),
      cls: 'protocol_error',
      code: 'FL_MYSQL_UNEXPECTED',
      detail: { protocolVersion: 9 },
    },
    {
      what: 'an HTTP answer is protocol_error at once',
      first: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'),
      cls: 'protocol_error',
      code: 'FL_MYSQL_UNEXPECTED',
    },
  ];
  it.each(cases)('$what', async ({ first, answers, cls, code, detail }) => {
    const r = await probe(await serve(first, answers ?? []));
    expect(r.class).toBe(cls);
    if (code) expect(r.error?.code).toBe(code);
    if (detail) expect(r.detail).toMatchObject(detail);
  });

  it('with login off, it reads the greeting and sends nothing', async () => {
    const received: Buffer[] = [];
    const r = await probe(await serve(greeting(), [], received), { login: false });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({
      login: 'skipped',
      serverVersion: '5.5.5-10.11.19-MariaDB-0+deb12u1',
    });
    expect(received).toEqual([]);
  });

  it('silence is protocol_timeout; a greeting and then silence on the login is protocol_timeout too', async () => {
    const silent = await probe(await serve(undefined), {}, 300);
    expect(silent.class).toBe('protocol_timeout');
    expect(silent.timings.connectMs).toBeDefined();

    const hungLogin = await probe(await serve(greeting()), {}, 300);
    expect(hungLogin.class).toBe('protocol_timeout');
    expect(hungLogin.detail).toMatchObject({ serverVersion: '5.5.5-10.11.19-MariaDB-0+deb12u1' });
  });

  it('a greeting split across segments is read whole', async () => {
    const g = greeting();
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.write(g.subarray(0, 2));
      setTimeout(() => s.write(g.subarray(2)), 30);
      s.once('data', () => s.write(okPacket(2)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const r = await probe(`127.0.0.1:${(server.address() as { port: number }).port}`);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ login: 'ok' });
  });
});

describe.runIf(canRunMysql)('mysql probe against a real MariaDB', () => {
  let db: MysqlServer;
  beforeAll(async () => {
    db = await startMysql({ passwordlessUser: 'watcher' });
  });
  afterAll(async () => {
    await db?.stop();
  });

  it('handshake: greeting and a denied login (the user has a password): ok', async () => {
    const r = await probe(db.address);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ login: 'denied', loginErrorCode: 1045 });
    expect(r.detail?.serverVersion).toMatch(/MariaDB/);
    expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.firstByteMs).toBeGreaterThanOrEqual(0);
  });

  it('a passwordless, privilege-less user logs in: ok, login ok', async () => {
    const r = await probe(db.address, { user: 'watcher' });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ login: 'ok' });
  });

  it('with the right password it logs in and runs SELECT 1; a wrong one is protocol_error 1045', async () => {
    const good = await probe(db.address, {
      user: db.user,
      password: db.password,
      database: 'mysql',
    });
    expect(good.class).toBe('ok');
    expect(good.detail).toMatchObject({ query: 'ok' });
    expect(good.detail?.queryMs).toBeGreaterThan(0);

    const bad = await probe(db.address, { user: db.user, password: 'not-it' });
    expect(bad.class).toBe('protocol_error');
    expect(bad.error?.code).toBe('ER_ACCESS_DENIED_ERROR');
    expect(bad.detail).toMatchObject({ query: 'failed', errorCode: 1045, sqlstate: '28000' });
  });

  it('a finished login leaves no "Aborted connection" in the server log; hanging up after the greeting does', async () => {
    const aborted = (): number => (db.log().match(/Aborted connection/g) ?? []).length;
    const before = aborted();
    for (let i = 0; i < 3; i++)
      expect((await probe(db.address, { user: 'watcher' })).class).toBe('ok');
    expect((await probe(db.address)).class).toBe('ok');
    // The counter-example is also the marker: once its line shows, earlier lines are written.
    expect((await probe(db.address, { login: false })).class).toBe('ok');
    await pollUntil('the aborted connect in the server log', () => aborted() > before);
    expect(aborted()).toBe(before + 1);
  });

  it('a frozen server (SIGSTOP) still completes TCP connects, then is protocol_timeout', async () => {
    await db.freeze();
    try {
      const r = await probe(db.address, {}, 500);
      expect(r.class).toBe('protocol_timeout');
      expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
      expect(r.timings.totalMs).toBeGreaterThanOrEqual(450);
    } finally {
      await db.thaw();
    }
    expect((await probe(db.address)).class).toBe('ok');
  });

  it('a killed server is tcp_refused; restarted, ok again', async () => {
    await db.kill();
    const r = await probe(db.address);
    expect(r.class).toBe('tcp_refused');
    expect(r.error?.code).toBe('ECONNREFUSED');
    await db.restart();
    expect((await probe(db.address, { user: db.user, password: db.password })).class).toBe('ok');
  });
});

describe.runIf(canUseNetns && canRunMysql)(
  'mysql probe across a network (server in a namespace host)',
  () => {
    let net: TestNet | undefined;
    let host: TestHost;
    let server: MysqlServer | undefined;
    beforeAll(async () => {
      net = await TestNet.create();
      host = await net.addHost('db');
      server = await startMysql({ host });
    });
    afterAll(async () => {
      await server?.stop();
      await net?.destroy();
    });

    it('the default port reaches it: ok; dropped by nftables it is tcp_timeout — the network, not the database', async () => {
      const r = await probe(host.ip);
      expect(r.class).toBe('ok');
      expect(r.address).toBe(`${host.ip}:3306`);
      await net!.nft(
        host,
        'table inet fltest { chain input { type filter hook input priority 0; tcp dport 3306 drop; }; }',
      );
      const cut = await probe(host.ip, {}, 500);
      expect(cut.class).toBe('tcp_timeout');
      expect(cut.timings.totalMs).toBeGreaterThanOrEqual(450);
    });
  },
);
