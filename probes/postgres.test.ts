import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { canRunPostgres, startPostgres, type PostgresServer } from '../lab/postgres.js';
import { pollUntil } from '../lab/poll-until.js';
import { postgres, postgresOptions } from './postgres.js';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';

function probe(address: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(postgres, parseTarget(address, postgres.target), postgresOptions.parse(options), {
    timeoutMs,
  });
}

/** A PostgreSQL backend message: type byte, Int32 length, body. */
function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}
function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function errorResponse(fields: Record<string, string>): Buffer {
  const parts = Object.entries(fields).map(([k, v]) => `${k}${v}\0`);
  return message('E', Buffer.from(parts.join('') + '\0', 'utf8'));
}

describe('postgres probe parses what a server sends (crafted bytes on loopback)', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  /** A server that answers the first bytes it receives with `answer` (or stays silent). */
  async function serve(answer: Buffer | undefined, close = false): Promise<string> {
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', () => {
        if (answer === undefined) return;
        if (close) s.end(answer);
        else s.write(answer);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no port');
    return `127.0.0.1:${addr.port}`;
  }

  const cases: {
    what: string;
    answer: Buffer;
    cls: string;
    detail?: Record<string, unknown>;
    code?: string;
  }[] = [
    {
      what: 'an MD5 password request is ok (alive), authMethod md5',
      answer: message('R', Buffer.concat([int32(5), Buffer.from([1, 2, 3, 4])])),
      cls: 'ok',
      detail: { authCode: 5, authMethod: 'md5' },
    },
    {
      what: 'a cleartext password request is ok, authMethod cleartext',
      answer: message('R', int32(3)),
      cls: 'ok',
      detail: { authCode: 3, authMethod: 'cleartext' },
    },
    {
      what: 'a SASL request lists its mechanisms',
      answer: message(
        'R',
        Buffer.concat([int32(10), Buffer.from('SCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0\0')]),
      ),
      cls: 'ok',
      detail: { authMethod: 'sasl', saslMechanisms: ['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'] },
    },
    {
      what: 'FATAL 28000 (no pg_hba.conf entry / role does not exist) is ok: alive, refusing us',
      answer: errorResponse({
        S: 'FATAL',
        V: 'FATAL',
        C: '28000',
        M: 'no pg_hba.conf entry for host',
      }),
      cls: 'ok',
      detail: { sqlstate: '28000', severity: 'FATAL' },
    },
    {
      what: 'FATAL 57P03 (the database system is starting up) is protocol_error',
      answer: errorResponse({
        S: 'FATAL',
        V: 'FATAL',
        C: '57P03',
        M: 'the database system is starting up',
      }),
      cls: 'protocol_error',
      code: '57P03',
      detail: { sqlstate: '57P03' },
    },
    {
      what: 'FATAL 53300 (too many connections) is protocol_error',
      answer: errorResponse({ S: 'FATAL', C: '53300', M: 'sorry, too many clients already' }),
      cls: 'protocol_error',
      code: '53300',
      detail: { sqlstate: '53300' },
    },
    {
      what: 'the same message text with another SQLSTATE decides by SQLSTATE, not by text',
      answer: errorResponse({ S: 'FATAL', C: '28P01', M: 'the database system is starting up' }),
      cls: 'ok',
      detail: { sqlstate: '28P01' },
    },
    {
      what: 'an ErrorResponse without SQLSTATE is protocol_error',
      answer: errorResponse({ S: 'FATAL', M: 'odd' }),
      cls: 'protocol_error',
      code: 'FL_PG_NO_SQLSTATE',
    },
    {
      what: 'an HTTP server on the port is protocol_error at once',
      answer: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'),
      cls: 'protocol_error',
      code: 'FL_PG_UNEXPECTED',
    },
    {
      what: "an 'R' with an impossible length is protocol_error",
      answer: Buffer.from([0x52, 0xff, 0xff, 0xff, 0xff]),
      cls: 'protocol_error',
      code: 'FL_PG_BAD_LENGTH',
    },
  ];
  it.each(cases)('$what', async ({ answer, cls, detail, code }) => {
    const r = await probe(await serve(answer));
    expect(r.class).toBe(cls);
    if (detail) expect(r.detail).toMatchObject(detail);
    if (code) expect(r.error?.code).toBe(code);
    expect(r.timings.firstByteMs).toBeGreaterThanOrEqual(0);
  });

  it('a message split across TCP segments is read whole', async () => {
    const full = message('R', Buffer.concat([int32(10), Buffer.from('SCRAM-SHA-256\0\0')]));
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', () => {
        s.write(full.subarray(0, 3));
        setTimeout(() => s.write(full.subarray(3)), 30);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const addr = server.address() as { port: number };
    const r = await probe(`127.0.0.1:${addr.port}`);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ authMethod: 'sasl' });
  });

  it('a truncated message and a close is protocol_error; silence is protocol_timeout', async () => {
    const cut = await probe(await serve(message('R', int32(10)).subarray(0, 6), true));
    expect(cut.class).toBe('protocol_error');
    expect(cut.error?.code).toBe('FL_PEER_CLOSED');

    const silent = await probe(await serve(undefined), {}, 300);
    expect(silent.class).toBe('protocol_timeout');
    expect(silent.timings.connectMs).toBeDefined();
  });

  it('sends a protocol 3.0 StartupMessage naming user and database', async () => {
    let received: Buffer | undefined;
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', (d: Buffer) => {
        received = d;
        s.write(message('R', int32(3)));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const addr = server.address() as { port: number };
    await probe(`127.0.0.1:${addr.port}`, { user: 'alice', database: 'shop' });
    expect(received?.readUInt32BE(0)).toBe(received?.length);
    expect(received?.readUInt32BE(4)).toBe(196608);
    expect(received?.subarray(8).toString()).toBe(
      'user\0alice\0database\0shop\0application_name\0faultline\0\0',
    );
  });
});

describe.runIf(canRunPostgres)('postgres probe against a real PostgreSQL 15', () => {
  let pg: PostgresServer;
  beforeAll(async () => {
    pg = await startPostgres();
  });
  afterAll(async () => {
    await pg?.stop();
  });

  it('handshake: an unknown role is asked for SCRAM — the server is alive: ok', async () => {
    const r = await probe(pg.address);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ authCode: 10, authMethod: 'sasl' });
    expect(r.detail?.saslMechanisms).toContain('SCRAM-SHA-256');
    expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.firstByteMs).toBeGreaterThanOrEqual(0);
    expect(r.detail?.query).toBeUndefined();
  });

  it('with the right password it logs in and runs SELECT 1', async () => {
    const r = await probe(pg.address, {
      user: pg.user,
      password: pg.password,
      database: pg.database,
    });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ authMethod: 'sasl', query: 'ok' });
    expect(r.detail?.queryMs).toBeGreaterThan(0);
  });

  it('a wrong password is protocol_error 28P01; an unknown database is protocol_error 3D000', async () => {
    const wrong = await probe(pg.address, {
      user: pg.user,
      password: 'not-it',
      database: pg.database,
    });
    expect(wrong.class).toBe('protocol_error');
    expect(wrong.error?.code).toBe('28P01');
    expect(wrong.detail).toMatchObject({ query: 'failed', sqlstate: '28P01' });

    const nodb = await probe(pg.address, {
      user: pg.user,
      password: pg.password,
      database: 'nope',
    });
    expect(nodb.class).toBe('protocol_error');
    expect(nodb.detail).toMatchObject({ sqlstate: '3D000' });
  });

  it('leaves no "connection reset" line in the server log (it closes with a FIN, not a reset)', async () => {
    for (let i = 0; i < 3; i++) expect((await probe(pg.address)).class).toBe('ok');
    const login = { user: pg.user, password: pg.password, database: pg.database };
    expect((await probe(pg.address, login)).class).toBe('ok');
    // A failed login logs a FATAL line: once it shows, every earlier line has been written.
    const marker = `marker_${Date.now()}`;
    await probe(pg.address, { user: marker, password: 'x' });
    const log = await pollUntil('the marker in the server log', () => {
      const all = pg.log();
      return all.includes(marker) ? all : undefined;
    });
    expect(log).not.toMatch(/could not receive data from client|unexpected EOF/);
  });

  it('a frozen server (SIGSTOP) still completes TCP connects, then is protocol_timeout', async () => {
    await pg.freeze();
    try {
      const r = await probe(pg.address, {}, 500);
      expect(r.class).toBe('protocol_timeout');
      // The kernel accepted the connection into the listen backlog: connect succeeded.
      expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
      expect(r.timings.totalMs).toBeGreaterThanOrEqual(450);
    } finally {
      await pg.thaw();
    }
    expect((await probe(pg.address)).class).toBe('ok');
  });

  it('a killed server is tcp_refused; restarted, ok again', async () => {
    await pg.kill();
    const r = await probe(pg.address);
    expect(r.class).toBe('tcp_refused');
    expect(r.error?.code).toBe('ECONNREFUSED');
    await pg.restart();
    expect((await probe(pg.address)).class).toBe('ok');
  });
});

describe.runIf(canUseNetns && canRunPostgres)(
  'postgres probe across a network (server in a namespace host)',
  () => {
    let net: TestNet | undefined;
    let host: TestHost;
    let server: PostgresServer | undefined;
    beforeAll(async () => {
      net = await TestNet.create();
      host = await net.addHost('db');
      server = await startPostgres({ host });
    });
    afterAll(async () => {
      await server?.stop();
      await net?.destroy();
    });

    it('the default port reaches it: ok; dropped by nftables it is tcp_timeout — the network, not the database', async () => {
      const r = await probe(host.ip);
      expect(r.class).toBe('ok');
      expect(r.address).toBe(`${host.ip}:5432`);
      await net!.nft(
        host,
        'table inet fltest { chain input { type filter hook input priority 0; tcp dport 5432 drop; }; }',
      );
      const cut = await probe(host.ip, {}, 500);
      expect(cut.class).toBe('tcp_timeout');
      expect(cut.timings.totalMs).toBeGreaterThanOrEqual(450);
    });
  },
);
