import { describe, expect, it } from 'vitest';
import { errorCodeOf } from '../lib/errors.js';
import {
  classifyCode,
  classifyConnectionError,
  classifyError,
  classifyIcmpError,
  classifyProbeCode,
  classifySendError,
  timeoutClass,
  type Phase,
} from './classify.js';
import { probeCodes, type ProbeCode } from './codes.js';
import type { FailureClass } from '../wire/result.js';

describe('classifyCode: the error code and the phase decide the class', () => {
  const table: ReadonlyArray<[string | undefined, Phase, string]> = [
    ['ECONNREFUSED', 'connect', 'tcp_refused'],
    ['ETIMEDOUT', 'connect', 'tcp_timeout'],
    ['UND_ERR_CONNECT_TIMEOUT', 'connect', 'tcp_timeout'],
    ['EHOSTUNREACH', 'connect', 'tcp_unreachable'],
    ['ENETUNREACH', 'connect', 'tcp_unreachable'],
    ['EHOSTDOWN', 'connect', 'tcp_unreachable'],
    ['ECONNRESET', 'exchange', 'tcp_reset'],
    ['EPIPE', 'exchange', 'tcp_reset'],
    ['ECONNRESET', 'tls', 'tls_error'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'tls', 'tls_error'],
    ['CERT_HAS_EXPIRED', 'tls', 'tls_error'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls', 'tls_error'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'tls', 'tls_error'],
    ['UND_ERR_HEADERS_TIMEOUT', 'exchange', 'http_timeout'],
    ['UND_ERR_BODY_TIMEOUT', 'exchange', 'http_timeout'],
    ['UND_ERR_SOCKET', 'exchange', 'tcp_reset'],
    ['ENOTFOUND', 'dns', 'dns_error'],
    ['ENOTFOUND', 'connect', 'dns_error'],
    ['EAI_AGAIN', 'dns', 'dns_timeout'],
    ['ETIMEOUT', 'dns', 'dns_timeout'],
    ['ESERVFAIL', 'dns', 'dns_error'],
    // A resolver port answered with ICMP port unreachable: host up, DNS service down.
    ['ECONNREFUSED', 'dns', 'dns_error'],
    ['EREFUSED', 'dns', 'dns_error'],
    ['ENODATA', 'dns', 'dns_error'],
    ['SOMETHING_ELSE', 'exchange', 'protocol_error'],
  ];
  it.each(table)('%s in %s → %s', (code, phase, expected) => {
    expect(classifyCode(code, phase)).toBe(expected);
  });

  it('never looks at the message', () => {
    const lying = Object.assign(new Error('connect ECONNREFUSED 1.2.3.4:5'), {
      code: 'EHOSTUNREACH',
    });
    expect(classifyError(lying, 'connect')).toBe('tcp_unreachable');
  });

  it('finds the code in the cause chain (undici wraps socket errors)', () => {
    const inner = Object.assign(new Error('x'), { code: 'ECONNRESET' });
    const outer = new Error('fetch failed', { cause: inner });
    expect(errorCodeOf(outer, { innermost: true })).toBe('ECONNRESET');
    expect(classifyError(outer, 'exchange')).toBe('tcp_reset');
  });

  it('a timer of ours that fires names the phase it interrupted', () => {
    expect(timeoutClass('connect')).toBe('tcp_timeout');
    expect(timeoutClass('dns')).toBe('dns_timeout');
    expect(timeoutClass('exchange')).toBe('protocol_timeout');
    expect(timeoutClass('exchange', 'http')).toBe('http_timeout');
  });
});

describe('classifyIcmpError: the ICMP type (and code) decides', () => {
  const table: ReadonlyArray<[4 | 6, number, number | undefined, string | undefined]> = [
    [4, 3, 1, 'icmp_unreachable'], // destination unreachable: host
    [4, 3, 13, 'icmp_unreachable'], // destination unreachable: administratively prohibited
    [4, 3, undefined, 'icmp_unreachable'], // destination unreachable, code unknown
    [4, 3, 4, 'mtu_exceeded'], // fragmentation needed and DF set
    [4, 11, 0, 'icmp_unreachable'], // time exceeded
    [4, 11, 4, 'icmp_unreachable'], // code 4 means "fragmentation needed" under type 3 only
    [4, 4, undefined, undefined], // source quench
    [4, 5, 1, undefined], // redirect
    [4, 12, undefined, undefined], // parameter problem
    [6, 1, 3, 'icmp_unreachable'], // destination unreachable
    [6, 2, 0, 'mtu_exceeded'], // packet too big
    [6, 2, undefined, 'mtu_exceeded'], // packet too big (fping prints no code)
    [6, 3, 0, 'icmp_unreachable'], // time exceeded (hop limit)
    [6, 4, 0, undefined], // parameter problem
  ];
  it.each(table)('IPv%s type %s code %s → %s', (family, type, code, expected) => {
    expect(classifyIcmpError(family, type, code)).toBe(expected);
  });
});

describe('classifySendError: the errno of a packet our own stack refused', () => {
  const table: ReadonlyArray<[string, string | undefined]> = [
    ['EMSGSIZE', 'mtu_exceeded'], // larger than the route's MTU, Don't Fragment set
    ['ENOBUFS', undefined],
    ['toString', undefined], // an inherited property is no errno
  ];
  it.each(table)('%s → %s', (code, expected) => {
    expect(classifySendError(code)).toBe(expected);
  });
});

describe("classifyProbeCode: a probe's own raw code and the phase decide the class", () => {
  const table: ReadonlyArray<[ProbeCode, Phase, 'http' | 'other', FailureClass]> = [
    ['FL_ABORTED', 'connect', 'other', 'tcp_timeout'], // cancelled mid-handshake
    ['FL_ABORTED', 'tls', 'other', 'tls_error'],
    ['FL_ABORTED', 'exchange', 'http', 'http_timeout'],
    ['FL_DNS_TIMEOUT', 'dns', 'other', 'dns_timeout'],
    ['FL_CONNECT_TIMEOUT', 'connect', 'other', 'tcp_timeout'],
    ['FL_ANSWER_TIMEOUT', 'exchange', 'other', 'protocol_timeout'],
    ['FL_QUERY_TIMEOUT', 'exchange', 'other', 'protocol_timeout'], // connected: the database hung
    ['FL_QUERY_TIMEOUT', 'connect', 'other', 'tcp_timeout'], // never connected: the network
    ['FL_TLS_TIMEOUT', 'tls', 'other', 'tls_error'],
    ['FL_HTTP_TIMEOUT', 'exchange', 'http', 'http_timeout'],
    ['FL_ICMP_TIMEOUT', 'exchange', 'other', 'icmp_timeout'],
    ['FL_CONNECT_LOST', 'connect', 'other', 'tcp_unreachable'],
    ['FL_DNS_UNEXPECTED_ANSWER', 'dns', 'other', 'dns_error'],
    ['FL_TLS_UNTRUSTED', 'tls', 'other', 'tls_error'],
    ['FL_HTTP_STATUS', 'exchange', 'http', 'http_status'],
    ['FL_HTTP_TOO_MANY_REDIRECTS', 'exchange', 'http', 'http_status'],
    ['FL_HTTP_ASSERTION', 'exchange', 'http', 'http_body'],
    ['FL_HTTP_BAD_REDIRECT', 'exchange', 'http', 'protocol_error'],
    ['FL_ANSWER_TOO_LONG', 'exchange', 'other', 'protocol_error'],
    ['FL_PEER_CLOSED', 'exchange', 'other', 'protocol_error'],
    ['FL_PG_UNEXPECTED', 'exchange', 'other', 'protocol_error'],
    ['FL_PG_BAD_LENGTH', 'exchange', 'other', 'protocol_error'],
    ['FL_PG_NO_SQLSTATE', 'exchange', 'other', 'protocol_error'],
    ['FL_MYSQL_UNEXPECTED', 'exchange', 'other', 'protocol_error'],
    ['FL_REDIS_UNEXPECTED', 'exchange', 'other', 'protocol_error'],
  ];
  it.each(table)('%s in %s (%s) is %s', (code, phase, protocol, cls) => {
    expect(classifyProbeCode(code, phase, protocol)).toBe(cls);
  });

  it('every catalogued code has a row', () => {
    expect(new Set(table.map(([code]) => code))).toEqual(new Set(Object.keys(probeCodes)));
  });
});

describe('classifyConnectionError: a connected socket torn down', () => {
  it.each<[string | undefined, FailureClass]>([
    ['ECONNRESET', 'tcp_reset'],
    ['EPIPE', 'tcp_reset'],
    [undefined, 'tcp_reset'], // no code says nothing more than the teardown
    ['E_UNHEARD_OF', 'tcp_reset'],
    ['ETIMEDOUT', 'protocol_timeout'], // the kernel gave up on an unanswered segment
    ['EHOSTUNREACH', 'tcp_unreachable'],
  ])('%s: %s', (code, cls) => {
    const err = code === undefined ? new Error('x') : Object.assign(new Error('x'), { code });
    expect(classifyConnectionError(err)).toBe(cls);
  });
});
