/**
 * The raw codes a probe puts on its result (`error.code`) when nothing below it gave one:
 * its own timer fired, the answer was not the protocol's, the check it was asked for failed.
 * Every other raw code is the system's, as it came: an errno (`ECONNREFUSED`), a c-ares or
 * OpenSSL code, undici's `UND_ERR_*`, a server's SQLSTATE or RESP error kind.
 *
 * These are evidence, not faults of Faultline (those are `lib/errors.ts`'s `FL_ERR_*`).
 * The failure class each one stands for is decided in `classify.ts` ({@link classifyProbeCode}),
 * never here and never in a probe. Stable: dashboards and alert rules match them.
 */
export const probeCodes = {
  FL_ABORTED:
    'the probe was cancelled (the agent stopping, the plan changing) before it finished: a timeout of the phase it interrupted',
  FL_DNS_TIMEOUT: 'the resolver did not answer before the deadline',
  FL_DNS_UNEXPECTED_ANSWER: 'the name resolved, but no answer matched expectAnswers',
  FL_CONNECT_TIMEOUT: 'no answer to the TCP handshake (SYN) before the deadline',
  FL_CONNECT_LOST:
    'the handshake failed but the kernel lost its error: no connection (most likely no ARP answer or an ICMP unreachable)',
  FL_ANSWER_TIMEOUT: 'connected, but no (complete) answer to the probe before the deadline',
  FL_ANSWER_TOO_LONG: 'connected, but the answer had no expected end within the byte limit',
  FL_PEER_CLOSED: 'the peer closed the connection before a complete answer',
  FL_QUERY_TIMEOUT: "a database's authenticated check (login and query) did not finish in time",
  FL_TLS_TIMEOUT: 'connected, but the TLS handshake did not finish before the deadline',
  FL_TLS_UNTRUSTED: "the server's certificate failed verification, with no reason from OpenSSL",
  FL_HTTP_TIMEOUT: 'connected, but no response headers (or not the whole body) before the deadline',
  FL_HTTP_STATUS: 'the response status is not one of validStatusCodes',
  FL_HTTP_TOO_MANY_REDIRECTS: 'more redirects than maxRedirects',
  FL_HTTP_BAD_REDIRECT: 'a redirect to an invalid URL, or not to http(s) with a valid host',
  FL_HTTP_ASSERTION: 'the response failed a body or header assertion',
  FL_ICMP_TIMEOUT: 'no echo reply to any echo request before the deadline',
  FL_PG_UNEXPECTED: "the answer to the startup message is not PostgreSQL's",
  FL_PG_BAD_LENGTH: 'a message whose length PostgreSQL never sends',
  FL_PG_NO_SQLSTATE: 'an ErrorResponse without the SQLSTATE every PostgreSQL error carries',
  FL_MYSQL_UNEXPECTED: "the server's packets are not MySQL's (greeting or login answer)",
  FL_REDIS_UNEXPECTED: 'the answer to PING is not a RESP reply, or not PONG',
} as const;

/** One of a probe's own raw codes. */
export type ProbeCode = keyof typeof probeCodes;

/** Whether a raw code is one of ours (as opposed to an errno or a server's). */
export function isProbeCode(code: unknown): code is ProbeCode {
  return typeof code === 'string' && Object.hasOwn(probeCodes, code);
}
