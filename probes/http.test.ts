import { X509Certificate } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { timeWaitLeftBy } from '../test/helpers/time-wait.js';
import { TestPki } from '../test/helpers/tls.js';
import { http, httpOptions, statusAllowed } from './http.js';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function probe(url: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(http, parseTarget(url, http.target), httpOptions.parse(options), { timeoutMs });
}
function portOf(server: Server): number {
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}
function listen<S extends Server>(server: S, host = '127.0.0.1'): Promise<S> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(server));
  });
}
function cert(detail: Record<string, unknown> | undefined): Record<string, unknown> {
  return (detail?.certificate ?? {}) as Record<string, unknown>;
}

const hasIpv6Loopback = Object.values(networkInterfaces()).some((addrs) =>
  addrs?.some((a) => a.address === '::1'),
);

describe('options', () => {
  it('fills defaults and rejects unknown keys, bad regexes and framing headers', () => {
    const o = httpOptions.parse({});
    expect(o).toMatchObject({
      method: 'GET',
      validStatusCodes: ['2xx'],
      followRedirects: false,
      tlsVerify: true,
      ipFamily: 0,
    });
    expect(() => httpOptions.parse({ folowRedirects: true })).toThrow();
    expect(() => httpOptions.parse({ expectBody: '(' })).toThrow(/regular expression/);
    expect(() => httpOptions.parse({ headers: { 'Content-Length': '5' } })).toThrow(
      /set by the probe/,
    );
    expect(() => httpOptions.parse({ headers: { 'x-a': 'a\r\nb: c' } })).toThrow(/control/);
    expect(() => httpOptions.parse({ validStatusCodes: ['299-200'] })).toThrow(/low to high/);
    expect(() => httpOptions.parse({ method: 'HEAD', body: 'x' })).toThrow(/no body/);
  });

  it.each([
    [200, ['2xx'], true],
    [204, ['2xx'], true],
    [301, ['2xx'], false],
    [301, ['2xx', 301], true],
    [404, ['400-404'], true],
    [405, ['400-404'], false],
    [503, [500], false],
  ] as const)('status %d with %j → %s', (status, specs, allowed) => {
    expect(statusAllowed(status, [...specs])).toBe(allowed);
  });
});

describe('http probe on loopback', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  function track<S extends Server>(server: S): S {
    servers.push(server);
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    });
    return server;
  }
  async function serve(handler: Handler, host = '127.0.0.1'): Promise<number> {
    return portOf(await listen(track(createHttpServer(handler)), host));
  }
  async function serveRaw(handler: (s: Socket) => void): Promise<number> {
    return portOf(await listen(track(createNetServer(handler))));
  }

  it('200: ok with dns, connect, first-byte and total timings and the response facts', async () => {
    const port = await serve((_req, res) => res.end('hello'));
    const r = await probe(`http://localhost:${port}/healthz`, { ipFamily: 4 });
    expect(r.class).toBe('ok');
    expect(r.timings.dnsMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.connectMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.firstByteMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.tlsMs).toBeUndefined();
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(r.timings.firstByteMs!);
    expect(r.detail).toMatchObject({
      status: 200,
      httpVersion: '1.1',
      ip: '127.0.0.1',
      redirects: 0,
      bodyBytes: 5,
    });
  });

  it('contentLength is the declared Content-Length, -1 for a chunked body (as blackbox_exporter reports it)', async () => {
    const port = await serve((req, res) => {
      if (req.url === '/chunked') {
        res.write('a');
        res.end('b');
      } else res.end('hello');
    });
    const fixed = await probe(`http://127.0.0.1:${port}/`);
    expect(fixed.detail).toMatchObject({ contentLength: 5, bodyBytes: 5 });
    const chunked = await probe(`http://127.0.0.1:${port}/chunked`);
    expect(chunked.detail).toMatchObject({ contentLength: -1, bodyBytes: 2 });
  });

  it('sends the method, path, headers and body it is given', async () => {
    let seen: { method?: string; url?: string; auth?: string; body: string } = { body: '' };
    const port = await serve((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, auth: req.headers.authorization, body };
        res.end();
      });
    });
    const r = await probe(`http://127.0.0.1:${port}/x?y=1#frag`, {
      method: 'POST',
      headers: { Authorization: 'Bearer t' },
      body: '{"a":1}',
    });
    expect(r.class).toBe('ok');
    expect(seen).toEqual({ method: 'POST', url: '/x?y=1', auth: 'Bearer t', body: '{"a":1}' });
  });

  it('500 is http_status; allowed when validStatusCodes says so', async () => {
    const port = await serve((_req, res) => {
      res.statusCode = 500;
      res.end('db down');
    });
    const bad = await probe(`http://127.0.0.1:${port}/`);
    expect(bad.class).toBe('http_status');
    expect(bad.detail).toMatchObject({ status: 500, bodyPreview: 'db down' });
    expect(bad.error?.code).toBe('FL_HTTP_STATUS');
    const ok = await probe(`http://127.0.0.1:${port}/`, { validStatusCodes: ['5xx'] });
    expect(ok.class).toBe('ok');
  });

  it('a server that accepts and never answers is http_timeout, with connectMs', async () => {
    const port = await serveRaw(() => undefined);
    const r = await probe(`http://127.0.0.1:${port}/`, {}, 300);
    expect(r.class).toBe('http_timeout');
    expect(r.timings.connectMs).toBeDefined();
    expect(r.timings.firstByteMs).toBeUndefined();
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(290);
  });

  it('headers that come without the body in time are http_timeout too', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
    });
    const r = await probe(`http://127.0.0.1:${port}/`, {}, 300);
    expect(r.class).toBe('http_timeout');
    expect(r.timings.firstByteMs).toBeDefined();
    expect(r.detail).toMatchObject({ status: 200 });
  });

  it('body and header assertions: http_body when they fail, ok when they hold', async () => {
    const port = await serve((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end('{"status":"degraded"}');
    });
    const url = `http://127.0.0.1:${port}/`;
    expect((await probe(url, { expectBody: '"status":"(degraded|ok)"' })).class).toBe('ok');
    const body = await probe(url, { expectBody: '"status":"ok"' });
    expect(body.class).toBe('http_body');
    expect(body.error?.message).toMatch(/expectBody/);
    expect(body.detail?.bodyPreview).toBe('{"status":"degraded"}');
    expect((await probe(url, { failIfBodyMatches: 'degraded' })).class).toBe('http_body');
    expect(
      (await probe(url, { expectHeaders: { 'Content-Type': '^application/json' } })).class,
    ).toBe('ok');
    const wrong = await probe(url, { expectHeaders: { 'content-type': '^text/html' } });
    expect(wrong.class).toBe('http_body');
    const missing = await probe(url, { expectHeaders: { 'x-served-by': '.' } });
    expect(missing.class).toBe('http_body');
    expect(missing.error?.message).toMatch(/x-served-by is missing/);
  });

  it('reads no more than maxBodyBytes, and HEAD reads no body', async () => {
    const port = await serve((req, res) =>
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(100_000)),
    );
    const r = await probe(`http://127.0.0.1:${port}/`, { maxBodyBytes: 100, expectBody: '^x+$' });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ bodyBytes: 100, truncated: true });
    const head = await probe(`http://127.0.0.1:${port}/`, { method: 'HEAD' });
    expect(head.class).toBe('ok');
    expect(head.detail).toMatchObject({ bodyBytes: 0 });
  });

  it('a closed port is tcp_refused', async () => {
    const port = await serve(() => undefined);
    await new Promise((r) => servers.pop()!.close(r));
    const r = await probe(`http://127.0.0.1:${port}/`);
    expect(r.class).toBe('tcp_refused');
    expect(r.error?.code).toBe('ECONNREFUSED');
  });

  it('a server that reads the request and resets is tcp_reset', async () => {
    const port = await serveRaw((s) => s.once('data', () => s.resetAndDestroy()));
    const r = await probe(`http://127.0.0.1:${port}/`);
    expect(r.class).toBe('tcp_reset');
    expect(r.error?.code).toBe('ECONNRESET');
  });

  it('a server that closes without answering, or answers garbage, is protocol_error', async () => {
    const closes = await serveRaw((s) => s.once('data', () => s.end()));
    const closed = await probe(`http://127.0.0.1:${closes}/`);
    expect(closed.class).toBe('protocol_error');
    expect(closed.error?.code).toBe('FL_PEER_CLOSED');
    const garbage = await serveRaw((s) => s.once('data', () => s.end('SSH-2.0-OpenSSH_9.2\r\n')));
    const notHttp = await probe(`http://127.0.0.1:${garbage}/`);
    expect(notHttp.class).toBe('protocol_error');
    expect(notHttp.error?.code).toMatch(/^HPE_/);
    // Said so that the reader knows what to check, not the parser's "Parse Error".
    expect(notHttp.error?.message).toMatch(
      /not valid HTTP: .*another protocol answers on this port/,
    );
  });

  it('reads the answers HTTP allows: interim 1xx first, a body to the close, repeated headers', async () => {
    // A 103 Early Hints before the real answer, whose body runs to the close (no length).
    const early = await serveRaw((s) =>
      s.once('data', () => {
        s.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n');
        s.end(
          'HTTP/1.0 200 OK\r\nX-Part: a\r\nX-Part: b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nto the close',
        );
      }),
    );
    const r = await probe(`http://127.0.0.1:${early}/`, {
      expectBody: '^to the close$',
      expectHeaders: { 'x-part': '^a, b$', 'set-cookie': '^a=1, b=2$' },
    });
    expect(r.class, JSON.stringify(r.error)).toBe('ok');
    expect(r.detail).toMatchObject({
      status: 200,
      httpVersion: '1.0',
      contentLength: -1,
      bodyBytes: 12,
    });
    // A chunked body split across segments, and a HEAD answer whose length has no body after it.
    const chunked = await serveRaw((s) =>
      s.once('data', (d: Buffer) => {
        if (d.toString('latin1').startsWith('HEAD')) {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
          return;
        }
        s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel');
        setTimeout(() => s.write('lo\r\n6\r\n world\r\n0\r\n\r\n'), 20);
      }),
    );
    const body = await probe(`http://127.0.0.1:${chunked}/`, { expectBody: '^hello world$' });
    expect(body.class, JSON.stringify(body.error)).toBe('ok');
    expect(body.detail).toMatchObject({ bodyBytes: 11, contentLength: -1 });
    const head = await probe(`http://127.0.0.1:${chunked}/`, { method: 'HEAD' }, 500);
    expect(head.class, JSON.stringify(head.error)).toBe('ok');
    expect(head.detail).toMatchObject({ contentLength: 1000, bodyBytes: 0 });
  });

  it('a Content-Length that is not a number, headers without end or a line that is no header is protocol_error', async () => {
    const badLength = await serveRaw((s) =>
      s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello')),
    );
    const r = await probe(`http://127.0.0.1:${badLength}/`);
    expect(r.class).toBe('protocol_error');
    expect(r.error?.code).toBe('HPE_INVALID_CONTENT_LENGTH');
    const endless = await serveRaw((s) =>
      s.once('data', () => s.write(`HTTP/1.1 200 OK\r\n${'X-Pad: y\r\n'.repeat(10_000)}`)),
    );
    const overflow = await probe(`http://127.0.0.1:${endless}/`);
    expect(overflow.class).toBe('protocol_error');
    expect(overflow.error?.code).toBe('HPE_HEADER_OVERFLOW');
    const noColon = await serveRaw((s) =>
      s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nnot a header\r\n\r\nok')),
    );
    const malformed = await probe(`http://127.0.0.1:${noColon}/`);
    expect(malformed.class).toBe('protocol_error');
    expect(malformed.error?.code).toBe('HPE_INVALID_HEADER_TOKEN');
  });

  it('redirects: reported and judged by status when not followed; followed when asked', async () => {
    const other = await serve((req, res) => res.end(req.headers.authorization ?? 'no-auth'));
    const port = await serve((req, res) => {
      const to: Record<string, string> = {
        '/a': '/b',
        '/b': '/done',
        '/loop': '/loop',
        '/away': `http://localhost:${other}/there`,
      };
      const location = req.url === undefined ? undefined : to[req.url];
      if (location !== undefined) {
        res.writeHead(302, { location });
        res.end();
      } else res.end('arrived');
    });
    const base = `http://127.0.0.1:${port}`;
    const kept = await probe(`${base}/a`);
    expect(kept.class).toBe('http_status');
    expect(kept.detail).toMatchObject({ status: 302, location: '/b', redirects: 0 });

    const followed = await probe(`${base}/a`, { followRedirects: true, expectBody: 'arrived' });
    expect(followed.class).toBe('ok');
    expect(followed.detail).toMatchObject({ status: 200, redirects: 2, url: `${base}/done` });

    const loop = await probe(`${base}/loop`, { followRedirects: true, maxRedirects: 3 });
    expect(loop.class).toBe('http_status');
    expect(loop.error?.code).toBe('FL_HTTP_TOO_MANY_REDIRECTS');

    // Credentials stay with the origin they were configured for.
    const away = await probe(`${base}/away`, {
      followRedirects: true,
      headers: { authorization: 'Bearer secret' },
      expectBody: '^no-auth$',
    });
    expect(away.class).toBe('ok');
    expect(away.detail).toMatchObject({ ip: '127.0.0.1', url: `http://localhost:${other}/there` });
  });

  it.runIf(hasIpv6Loopback)('reaches [::1]', async () => {
    const port = await serve((_req, res) => res.end('v6'), '::1');
    const r = await probe(`http://[::1]:${port}/`, { expectBody: 'v6' });
    expect(r.class).toBe('ok');
    expect(r.detail?.ip).toBe('::1');
  });

  it('ends its connections with a reset: no TIME_WAIT left behind', async () => {
    const port = await serve((_req, res) => res.end('ok'));
    const left = await timeWaitLeftBy(port, async () => {
      for (let i = 0; i < 20; i++)
        expect((await probe(`http://127.0.0.1:${port}/`)).class).toBe('ok');
    });
    expect(left).toEqual([]);
  });
});

describe('https probe on loopback', () => {
  let pki: TestPki;
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    pki = await TestPki.create();
  });
  afterAll(async () => {
    await pki?.destroy();
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  function track<S extends Server>(server: S): S {
    servers.push(server);
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    });
    return server;
  }
  async function serveTls(spec: Parameters<TestPki['issue']>[0]): Promise<number> {
    const c = await pki.issue(spec);
    const server = createHttpsServer({ key: c.key, cert: c.cert }, (_req, res) =>
      res.end('secure'),
    );
    server.on('tlsClientError', () => undefined);
    track(server);
    return portOf(await listen(server));
  }
  const localhost = ['DNS:localhost', 'IP:127.0.0.1'];

  it('a certificate from a trusted CA: ok, with tls timing, protocol and certificate facts', async () => {
    const port = await serveTls({ cn: 'localhost', sans: localhost });
    const r = await probe(`https://localhost:${port}/`, {
      caFile: pki.ca.certPath,
      expectBody: 'secure',
    });
    expect(r.class).toBe('ok');
    expect(r.timings.tlsMs).toBeGreaterThan(0);
    expect(r.timings.connectMs).toBeDefined();
    expect(r.timings.firstByteMs).toBeDefined();
    expect(r.detail?.tlsVersion).toMatch(/^TLSv1\.[23]$/);
    expect(cert(r.detail)).toMatchObject({
      subject: 'localhost',
      issuer: 'Faultline Test CA',
      trusted: true,
    });
    expect(cert(r.detail).daysUntilExpiry).toBeGreaterThanOrEqual(29);
    expect(Date.parse(cert(r.detail).validTo as string)).toBeGreaterThan(Date.now());
  });

  it('chainValidTo: the earliest expiry of the certificates the server sent, not of the local CA', async () => {
    // The test CA expires in 2 days, the leaf in 30.
    const leafOnly = await serveTls({ cn: 'localhost', sans: localhost });
    const trusted = await probe(`https://localhost:${leafOnly}/`, { caFile: pki.ca.certPath });
    expect(trusted.class).toBe('ok');
    expect(cert(trusted.detail).chainValidTo).toBe(cert(trusted.detail).validTo);

    const c = await pki.issue({ cn: 'localhost', sans: localhost });
    const server = createHttpsServer({ key: c.key, cert: c.cert + pki.ca.cert }, (_req, res) =>
      res.end('secure'),
    );
    const withCa = portOf(await listen(track(server)));
    const r = await probe(`https://localhost:${withCa}/`, { caFile: pki.ca.certPath });
    expect(r.class).toBe('ok');
    const caExpiry = new X509Certificate(pki.ca.cert).validTo;
    expect(cert(r.detail).chainValidTo).toBe(new Date(caExpiry).toISOString());
    expect(Date.parse(cert(r.detail).validTo as string)).toBeGreaterThan(Date.parse(caExpiry));
  });

  it('a self-signed certificate is tls_error; ok with tlsVerify false, certificate still reported', async () => {
    const port = await serveTls({ cn: 'localhost', sans: localhost, selfSigned: true });
    const r = await probe(`https://localhost:${port}/`);
    expect(r.class).toBe('tls_error');
    expect(r.error?.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(r.timings.firstByteMs).toBeUndefined();
    expect(cert(r.detail).issuer).toBe('localhost');

    const lax = await probe(`https://localhost:${port}/`, { tlsVerify: false });
    expect(lax.class).toBe('ok');
    expect(cert(lax.detail).daysUntilExpiry).toBeGreaterThanOrEqual(29);
    expect(cert(lax.detail).daysUntilExpiry).toBeLessThanOrEqual(30);
    expect(cert(lax.detail)).toMatchObject({
      trusted: false,
      verifyError: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    });
  });

  it('an expired certificate is tls_error, and the result shows when it expired', async () => {
    const port = await serveTls({
      cn: 'localhost',
      sans: localhost,
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 3 * 86_400_000),
    });
    const r = await probe(`https://localhost:${port}/`, { caFile: pki.ca.certPath });
    expect(r.class).toBe('tls_error');
    expect(r.error?.code).toBe('CERT_HAS_EXPIRED');
    expect(cert(r.detail).daysUntilExpiry).toBeLessThanOrEqual(-3);
    expect(Date.parse(cert(r.detail).validTo as string)).toBeLessThan(Date.now());
  });

  it('a certificate for another name is tls_error (also via serverName)', async () => {
    const port = await serveTls({ cn: 'localhost', sans: ['DNS:localhost'] });
    const byIp = await probe(`https://127.0.0.1:${port}/`, { caFile: pki.ca.certPath });
    expect(byIp.class).toBe('tls_error');
    expect(byIp.error?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    const byName = await probe(`https://127.0.0.1:${port}/`, {
      caFile: pki.ca.certPath,
      serverName: 'localhost',
    });
    expect(byName.class).toBe('ok');
    const wrong = await probe(`https://localhost:${port}/`, {
      caFile: pki.ca.certPath,
      serverName: 'db.internal',
    });
    expect(wrong.class).toBe('tls_error');
  });

  it('handshake done but no HTTP answer is http_timeout; no handshake at all is tls_error', async () => {
    const c = await pki.issue({ cn: 'localhost', sans: localhost });
    const hung = createHttpsServer({ key: c.key, cert: c.cert }, () => undefined);
    track(hung);
    const hungPort = portOf(await listen(hung));
    const r = await probe(`https://localhost:${hungPort}/`, { caFile: pki.ca.certPath }, 400);
    expect(r.class).toBe('http_timeout');
    expect(r.timings.tlsMs).toBeDefined();
    expect(cert(r.detail).subject).toBe('localhost');

    const mute = createNetServer((s) => s.on('error', () => undefined));
    track(mute);
    const mutePort = portOf(await listen(mute));
    const t = await probe(`https://localhost:${mutePort}/`, {}, 300);
    expect(t.class).toBe('tls_error');
    expect(t.error?.code).toBe('FL_TLS_TIMEOUT');
    expect(t.timings.connectMs).toBeDefined();
  });

  it('a plain-TCP server on an https URL is tls_error', async () => {
    const server = createNetServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    });
    track(server);
    const port = portOf(await listen(server));
    const r = await probe(`https://127.0.0.1:${port}/`);
    expect(r.class).toBe('tls_error');
  });

  it('ends TLS connections with a reset: no TIME_WAIT left behind', async () => {
    const port = await serveTls({ cn: 'localhost', sans: localhost });
    const left = await timeWaitLeftBy(port, async () => {
      for (let i = 0; i < 10; i++) {
        const r = await probe(`https://localhost:${port}/`, { caFile: pki.ca.certPath });
        expect(r.class).toBe('ok');
      }
    });
    expect(left).toEqual([]);
  });
});

describe.runIf(canUseNetns)('http probe across a network', () => {
  let net: TestNet;
  let server: TestHost;
  beforeAll(async () => {
    net = await TestNet.create();
    server = await net.addHost('web');
    await net.nft(
      server,
      `table inet fltest { chain input { type filter hook input priority 0; tcp dport 80 drop; }; }`,
    );
  });
  afterAll(async () => {
    await net?.destroy();
  });

  it('port 80 dropped by nftables is tcp_timeout, not http_timeout', async () => {
    const r = await probe(`http://${server.ip}/`, {}, 500);
    expect(r.class).toBe('tcp_timeout');
    expect(r.timings.connectMs).toBeUndefined();
    expect(r.detail?.ip).toBe(server.ip);
  });

  it('a closed port on a live host is tcp_refused', async () => {
    const r = await probe(`http://${server.ip}:8080/`, {}, 2000);
    expect(r.class).toBe('tcp_refused');
  });
});
