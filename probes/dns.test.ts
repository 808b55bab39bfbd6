import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsmasq, type TestDns } from '../test/helpers/dnsmasq.js';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { dns, dnsOptions, missingAnswers, parseServer, rcodeOfCaresCode } from './dns.js';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';

function probe(name: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(dns, parseTarget(name, dns.target), dnsOptions.parse(options), { timeoutMs });
}

/** A UDP "resolver" on loopback that answers every query with `rcode`, or never answers. */
async function fakeResolver(
  rcode: number | 'silent',
): Promise<{ sock: UdpSocket; server: string }> {
  const sock = createSocket('udp4');
  sock.on('message', (msg, peer) => {
    if (rcode === 'silent' || msg.length < 12) return;
    // Header + the question only: skip the name's labels, then type and class.
    let end = 12;
    while (end < msg.length && msg[end] !== 0) end += (msg[end] ?? 0) + 1;
    end += 5;
    const res = Buffer.from(msg.subarray(0, end));
    res[2] = 0x80 | ((msg[2] ?? 0) & 0x79); // QR, opcode and RD kept
    res[3] = 0x80 | rcode; // RA + rcode
    res.writeUInt16BE(0, 6);
    res.writeUInt16BE(0, 8);
    res.writeUInt16BE(0, 10);
    sock.send(res, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return { sock, server: `127.0.0.1:${sock.address().port}` };
}

describe('options and helpers', () => {
  it('fills defaults and rejects unknown keys, bad servers and bad regexes', () => {
    expect(dnsOptions.parse({})).toEqual({ recordType: 'A' });
    expect(() => dnsOptions.parse({ recordtype: 'A' })).toThrow();
    expect(() => dnsOptions.parse({ recordType: 'ANY' })).toThrow();
    expect(() => dnsOptions.parse({ server: 'dns.example' })).toThrow(/IP:port/);
    expect(() => dnsOptions.parse({ expectAnswers: ['/(/'] })).toThrow(/regular expression/);
  });

  it.each([
    ['10.0.0.1', { ip: '10.0.0.1', port: 53 }],
    ['10.0.0.1:5353', { ip: '10.0.0.1', port: 5353 }],
    ['::1', { ip: '::1', port: 53 }],
    ['[fd00::1]:5353', { ip: 'fd00::1', port: 5353 }],
    ['10.0.0.1:0', undefined],
    ['10.0.0.256', undefined],
    ['[10.0.0.1]:53', undefined],
    ['host:53', undefined],
  ])('server %s → %j', (s, expected) => {
    expect(parseServer(s)).toEqual(expected);
  });

  it('expectAnswers: exact answers (any case) or /regex/, each matched by some answer', () => {
    const answers = ['10 mail.ok.test', '20 backup.ok.test'];
    expect(missingAnswers(answers, ['10 MAIL.ok.test', '/^20 /'])).toEqual([]);
    expect(missingAnswers(answers, ['10 mail', '/^30 /'])).toEqual(['10 mail', '/^30 /']);
  });

  it('maps c-ares codes to the rcode they stand for', () => {
    expect(rcodeOfCaresCode).toMatchObject({
      ENOTFOUND: 'NXDOMAIN',
      ENODATA: 'NOERROR',
      ESERVFAIL: 'SERVFAIL',
      EREFUSED: 'REFUSED',
    });
    expect(rcodeOfCaresCode.ETIMEOUT).toBeUndefined();
  });
});

describe('dns probe against resolvers on loopback', () => {
  const socks: UdpSocket[] = [];
  afterAll(() => {
    for (const s of socks) s.close();
  });
  async function resolverAnswering(rcode: number | 'silent'): Promise<string> {
    const { sock, server } = await fakeResolver(rcode);
    socks.push(sock);
    return server;
  }

  it.each([
    [2, 'SERVFAIL', 'ESERVFAIL'],
    [5, 'REFUSED', 'EREFUSED'],
    [3, 'NXDOMAIN', 'ENOTFOUND'],
    [4, 'NOTIMP', 'ENOTIMP'],
  ])('rcode %d is dns_error with rcode %s', async (rcode, name, code) => {
    const server = await resolverAnswering(rcode);
    const r = await probe('svc.example.test', { server });
    expect(r.class).toBe('dns_error');
    expect(r.detail).toMatchObject({ rcode: name, servers: [server] });
    expect(r.error?.code).toBe(code);
    expect(r.timings.dnsMs).toBeLessThan(500);
  });

  it('a resolver that never answers is dns_timeout at the deadline', async () => {
    const server = await resolverAnswering('silent');
    const r = await probe('svc.example.test', { server }, 300);
    expect(r.class).toBe('dns_timeout');
    expect(r.detail?.rcode).toBeUndefined();
    expect(r.timings.dnsMs).toBeGreaterThanOrEqual(250);
    expect(r.timings.totalMs).toBeLessThan(1000);
  });

  it('a closed resolver port (ICMP port unreachable) is dns_error ECONNREFUSED, at once', async () => {
    const { sock, server } = await fakeResolver('silent');
    await new Promise<void>((resolve) => sock.close(resolve));
    const r = await probe('svc.example.test', { server }, 2000);
    expect(r.class).toBe('dns_error');
    expect(r.error?.code).toBe('ECONNREFUSED');
    expect(r.detail?.rcode).toBeUndefined();
    expect(r.timings.dnsMs).toBeLessThan(500);
  });
});

describe.runIf(canUseNetns)('dns probe against dnsmasq in a namespace', () => {
  let net: TestNet;
  let ns1: TestHost;
  let ns2: TestHost;
  let blackhole: TestHost;
  let dns1: TestDns;
  let dns2: TestDns;
  let appIp: string;
  beforeAll(async () => {
    net = await TestNet.create();
    ns1 = await net.addHost('ns1');
    ns2 = await net.addHost('ns2');
    blackhole = await net.addHost('bh');
    appIp = net.address(200);
    const records = {
      localDomains: ['test'],
      hosts: { 'app.test': [appIp], 'db.test': [net.address(201), net.address(202)] },
      cnames: { 'www.test': 'app.test' },
      txt: { 'app.test': 'v=faultline1' },
      mx: [{ name: 'app.test', exchange: 'mail.app.test', preference: 10 }],
    };
    dns1 = await startDnsmasq(net, ns1, records);
    dns2 = await startDnsmasq(net, ns2, records);
    await net.nft(
      blackhole,
      `table inet fltest { chain input { type filter hook input priority 0; udp dport 53 drop; tcp dport 53 drop; }; }`,
    );
  });
  afterAll(async () => {
    await net?.destroy();
  });

  it('a known name: ok, NOERROR with its answers and a resolution time', async () => {
    const r = await probe('app.test', { server: dns1.server });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ rcode: 'NOERROR', answers: [appIp], recordType: 'A' });
    expect(r.timings.dnsMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.dnsMs).toBeLessThan(500);
  });

  it.each([
    ['www.test', 'CNAME', ['app.test']],
    ['app.test', 'MX', ['10 mail.app.test']],
    ['app.test', 'TXT', ['v=faultline1']],
  ] as const)('%s %s answers %j', async (name, recordType, answers) => {
    const r = await probe(name, { server: dns1.server, recordType });
    expect(r.class).toBe('ok');
    expect(r.detail?.answers).toEqual(answers);
  });

  it('PTR of an IP address looks up its reverse name', async () => {
    const r = await probe(appIp, { server: dns1.server, recordType: 'PTR' });
    expect(r.class).toBe('ok');
    expect(r.detail?.answers).toEqual(['app.test']);
  });

  it('expectAnswers: ok when every expected answer is there, dns_error saying which is not', async () => {
    const both = [net.address(201), net.address(202)];
    const ok = await probe('db.test', { server: dns1.server, expectAnswers: both });
    expect(ok.class).toBe('ok');
    const r = await probe('db.test', { server: dns1.server, expectAnswers: [net.address(203)] });
    expect(r.class).toBe('dns_error');
    expect(r.error?.code).toBe('FL_DNS_UNEXPECTED_ANSWER');
    expect(r.detail).toMatchObject({ rcode: 'NOERROR', missing: [net.address(203)] });
    expect([...(r.detail?.answers as string[])].sort()).toEqual(both);
  });

  it('an unknown name is dns_error with rcode NXDOMAIN', async () => {
    const r = await probe('nothere.test', { server: dns1.server });
    expect(r.class).toBe('dns_error');
    expect(r.detail?.rcode).toBe('NXDOMAIN');
    expect(r.error?.code).toBe('ENOTFOUND');
  });

  it('a name with no record of the type is dns_error, rcode NOERROR, no answers', async () => {
    const r = await probe('app.test', { server: dns1.server, recordType: 'AAAA' });
    expect(r.class).toBe('dns_error');
    expect(r.detail).toMatchObject({ rcode: 'NOERROR', answers: [] });
    expect(r.error?.code).toBe('ENODATA');
  });

  it('a name the resolver will not serve is dns_error with rcode REFUSED', async () => {
    // dnsmasq has no upstream: it refuses instead of forwarding anywhere.
    const r = await probe('elsewhere.invalid', { server: dns1.server });
    expect(r.class).toBe('dns_error');
    expect(r.detail?.rcode).toBe('REFUSED');
  });

  it('a resolver whose port 53 is dropped is dns_timeout', async () => {
    const r = await probe('app.test', { server: `${blackhole.ip}:53` }, 400);
    expect(r.class).toBe('dns_timeout');
    expect(r.timings.dnsMs).toBeGreaterThanOrEqual(350);
  });

  it('a stopped dnsmasq (host up, port closed) is dns_error ECONNREFUSED, not a timeout', async () => {
    expect((await probe('app.test', { server: dns2.server })).class).toBe('ok');
    await dns2.stop();
    const r = await probe('app.test', { server: dns2.server }, 2000);
    expect(r.class).toBe('dns_error');
    expect(r.error?.code).toBe('ECONNREFUSED');
    expect(r.timings.dnsMs).toBeLessThan(1000);
  });
});
