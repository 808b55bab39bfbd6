import { errorCodeOf } from '../lib/errors.js';
import type { FailureClass } from '../wire/result.js';
import type { ProbeCode } from './codes.js';

/**
 * The one place where errors become evidence. Decided from `err.code` (errno names from
 * libuv, c-ares and OpenSSL, undici's UND_ERR_* codes) and the phase the probe was in,
 * never from `err.message`.
 */
export type Phase = 'dns' | 'connect' | 'tls' | 'exchange';

const networkUnreachable = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);
const dnsTimeout = new Set(['ETIMEOUT', 'EAI_AGAIN']);
const tlsCodePrefixes = ['ERR_TLS_', 'ERR_SSL_', 'CERT_', 'ERR_OSSL_'];
const tlsCodes = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'HOSTNAME_MISMATCH',
  'EPROTO',
]);

/**
 * The code evidence is decided from: the innermost in the `cause` chain, so a real socket
 * error wins over the wrapper that reported it.
 */
function evidenceCode(err: unknown): string | undefined {
  return errorCodeOf(err, { innermost: true });
}

/** Failure class of a socket-level error code in a phase. */
export function classifyCode(code: string | undefined, phase: Phase): FailureClass {
  if (code === undefined) return phase === 'exchange' ? 'protocol_error' : 'tcp_unreachable';
  if (phase === 'dns') {
    if (dnsTimeout.has(code)) return 'dns_timeout';
    return 'dns_error';
  }
  if (networkUnreachable.has(code)) return 'tcp_unreachable';
  if (code === 'ECONNREFUSED') return 'tcp_refused';
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return phase === 'exchange' ? 'protocol_timeout' : 'tcp_timeout';
  }
  if (
    code === 'ENOTFOUND' ||
    code === 'EAI_NONAME' ||
    code === 'EAI_NODATA' ||
    code === 'ENODATA'
  ) {
    return 'dns_error';
  }
  if (code === 'EAI_AGAIN') return 'dns_timeout';
  if (tlsCodes.has(code) || tlsCodePrefixes.some((p) => code.startsWith(p))) {
    return 'tls_error';
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED') {
    // A reset while the TLS handshake runs is the TLS layer refusing us.
    return phase === 'tls' ? 'tls_error' : 'tcp_reset';
  }
  if (code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED') return 'tcp_reset';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'http_timeout';
  if (phase === 'tls') return 'tls_error';
  if (phase === 'exchange') return 'protocol_error';
  return 'tcp_unreachable';
}

/** Failure class of an error thrown in a phase. */
export function classifyError(err: unknown, phase: Phase): FailureClass {
  return classifyCode(evidenceCode(err), phase);
}

/** The failure class of a timer of ours that fired in a phase. */
export function timeoutClass(phase: Phase, protocol: 'http' | 'other' = 'other'): FailureClass {
  switch (phase) {
    case 'dns':
      return 'dns_timeout';
    case 'connect':
      return 'tcp_timeout';
    case 'tls':
      return 'tls_error';
    case 'exchange':
      return protocol === 'http' ? 'http_timeout' : 'protocol_timeout';
  }
}

/**
 * The failure class of a socket error once connected: the peer (or a middlebox) tearing the
 * connection down, so a code that says nothing more is a reset, not a protocol error.
 */
export function classifyConnectionError(err: unknown): FailureClass {
  const cls = classifyError(err, 'exchange');
  return cls === 'protocol_error' ? 'tcp_reset' : cls;
}

/**
 * The failure class of one of a probe's own raw codes (probes/codes.ts), in the phase the
 * probe was in: our timers and cancellations are the timeout of that phase; an answer that is
 * not the protocol's is a protocol error; a failed check is the class of what it checks.
 * Table-tested per code.
 */
export function classifyProbeCode(
  code: ProbeCode,
  phase: Phase,
  protocol: 'http' | 'other' = 'other',
): FailureClass {
  switch (code) {
    case 'FL_ABORTED':
    case 'FL_DNS_TIMEOUT':
    case 'FL_CONNECT_TIMEOUT':
    case 'FL_ANSWER_TIMEOUT':
    case 'FL_QUERY_TIMEOUT':
    case 'FL_TLS_TIMEOUT':
    case 'FL_HTTP_TIMEOUT':
      return timeoutClass(phase, protocol);
    case 'FL_ICMP_TIMEOUT':
      return 'icmp_timeout';
    case 'FL_CONNECT_LOST':
      // The kernel failed the handshake and the error went missing: an unreachable host.
      return 'tcp_unreachable';
    case 'FL_DNS_UNEXPECTED_ANSWER':
      return 'dns_error';
    case 'FL_TLS_UNTRUSTED':
      return 'tls_error';
    case 'FL_HTTP_STATUS':
    case 'FL_HTTP_TOO_MANY_REDIRECTS':
      return 'http_status';
    case 'FL_HTTP_ASSERTION':
      return 'http_body';
    case 'FL_ANSWER_TOO_LONG':
    case 'FL_PEER_CLOSED':
    case 'FL_HTTP_BAD_REDIRECT':
    case 'FL_PG_UNEXPECTED':
    case 'FL_PG_BAD_LENGTH':
    case 'FL_PG_NO_SQLSTATE':
    case 'FL_MYSQL_UNEXPECTED':
    case 'FL_REDIS_UNEXPECTED':
      return 'protocol_error';
  }
}

/** A compact raw error for the result record. */
export function rawError(err: unknown): { code?: string; message: string } {
  const code = evidenceCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code === undefined
    ? { message: message.slice(0, 1024) }
    : { code: code.slice(0, 64), message: message.slice(0, 1024) };
}

/**
 * ICMP errors that come back instead of an echo reply, by address family and ICMP type (and
 * code, where one code means something else than its type): the ones that say the echo
 * cannot reach its target. Other types (source quench, redirect, parameter problem) are no
 * verdict on their own; such a probe times out.
 */
const icmpErrorClasses: Readonly<Record<4 | 6, Readonly<Record<number, FailureClass>>>> = {
  4: {
    3: 'icmp_unreachable', // destination unreachable (net, host, port, prohibited…)
    11: 'icmp_unreachable', // time exceeded: a routing loop or a path too long
  },
  6: {
    1: 'icmp_unreachable', // destination unreachable
    2: 'mtu_exceeded', // packet too big: a link on the way is smaller than the packet
    3: 'icmp_unreachable', // time exceeded (hop limit)
  },
};

/** ICMP (IPv4) destination unreachable, code 4: fragmentation needed and DF set. */
const icmp4Unreachable = 3;
const icmp4NeedFrag = 4;

/**
 * Failure class of an ICMP error message (by family, type and code), or undefined if it
 * decides nothing. A "fragmentation needed" (IPv4 type 3 code 4) or "packet too big"
 * (ICMPv6 type 2) is `mtu_exceeded`: the packet was too big for a link on the way.
 */
export function classifyIcmpError(
  family: 4 | 6,
  type: number,
  code?: number,
): FailureClass | undefined {
  if (family === 4 && type === icmp4Unreachable && code === icmp4NeedFrag) return 'mtu_exceeded';
  return icmpErrorClasses[family][type];
}

/**
 * Errors our own stack gives instead of sending a packet, by errno name. EMSGSIZE: the packet
 * is larger than the route's MTU (the interface's, or a path MTU the kernel learnt from a
 * "fragmentation needed") and may not be fragmented. The unreachable ones: no route, or the
 * neighbour (ARP, NDP) did not answer lately — what an ICMP error from our own stack says.
 */
const sendErrorClasses: Readonly<Record<string, FailureClass>> = {
  EMSGSIZE: 'mtu_exceeded',
  ...Object.fromEntries([...networkUnreachable].map((code) => [code, 'icmp_unreachable'])),
};

/** Failure class of a local send error (by errno name), or undefined if it decides nothing. */
export function classifySendError(code: string): FailureClass | undefined {
  return Object.prototype.hasOwnProperty.call(sendErrorClasses, code)
    ? sendErrorClasses[code]
    : undefined;
}
