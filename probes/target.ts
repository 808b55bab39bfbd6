import { isIP } from 'node:net';
import { ConfigError } from '../lib/errors.js';
import type { Target, TargetForm } from './types.js';

const maxTargetLength = 2048;
// RFC 1123 labels; a trailing dot (FQDN) is allowed. Underscores appear in real service
// names (_srv records, some internal DNS), so they are accepted inside a label.
const labelRe = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** FL_ERR_TARGET; its `reason.why` without the `invalid target "x": ` framing. */
function reject(raw: string, why: string, cause?: unknown): never {
  throw new ConfigError(`invalid target ${JSON.stringify(raw)}: ${why}`, {
    code: 'FL_ERR_TARGET',
    reason: { why },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Checks that apply to every target string before anything parses it. */
function screen(raw: string): void {
  if (raw.length === 0) reject(raw, 'it is empty');
  if (raw.length > maxTargetLength)
    reject(raw.slice(0, 40) + '…', `longer than ${maxTargetLength} characters`);
  if (raw.startsWith('-')) reject(raw, 'it starts with "-" and would be read as a flag');
  // Control characters (incl. newline, NUL, DEL) and whitespace never belong in a target.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f-\u009f]/.test(raw))
    reject(raw, 'it contains whitespace or control characters');
}

/** Whether `host` is an IP literal or a valid DNS hostname. */
export function isValidHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  if (host.length === 0 || host.length > 253) return false;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0) return false;
  const labels = name.split('.');
  if (!labels.every((l) => labelRe.test(l))) return false;
  // A name whose last label is all digits is a malformed IPv4 address, not a hostname.
  return !/^\d+$/.test(labels[labels.length - 1] ?? '');
}

function checkHost(raw: string, host: string): string {
  if (host.startsWith('-')) reject(raw, 'the host starts with "-"');
  if (!isValidHost(host)) {
    reject(raw, `"${host}" is not a valid hostname or IP address`);
  }
  return host;
}

function parsePort(raw: string, text: string): number {
  if (!/^\d{1,5}$/.test(text)) reject(raw, `port "${text}" is not a number from 1 to 65535`);
  const port = Number(text);
  if (port < 1 || port > 65535) reject(raw, `port ${port} is outside 1–65535`);
  return port;
}

function splitHostPort(raw: string): { host: string; port?: string } {
  if (raw.startsWith('[')) {
    const end = raw.indexOf(']');
    if (end < 0) reject(raw, 'an IPv6 address opened with "[" is not closed with "]"');
    const host = raw.slice(1, end);
    if (isIP(host) !== 6) reject(raw, `"${host}" inside brackets is not an IPv6 address`);
    const rest = raw.slice(end + 1);
    if (rest === '') return { host };
    if (!rest.startsWith(':')) reject(raw, 'expected ":port" after "]"');
    return { host, port: rest.slice(1) };
  }
  // A bare IPv6 address has several colons; it carries no port.
  if (isIP(raw) === 6) return { host: raw };
  const colon = raw.lastIndexOf(':');
  if (colon < 0) return { host: raw };
  if (raw.indexOf(':') !== colon) reject(raw, 'write an IPv6 address with a port as [addr]:port');
  return { host: raw.slice(0, colon), port: raw.slice(colon + 1) };
}

function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Validates and parses a target string for a probe kind. Refuses anything that could be
 * read as a flag, carries whitespace, control or shell characters, or is not a valid
 * host, IP, host:port or http(s) URL — no user string reaches a command line unchecked.
 */
export function parseTarget(
  raw: string,
  spec: { readonly form: TargetForm; readonly defaultPort?: number },
  name?: string,
): Target {
  screen(raw);
  const display = name ?? raw;
  switch (spec.form) {
    case 'host': {
      if (/[^A-Za-z0-9.:_%-]/.test(raw)) reject(raw, 'expected a hostname or IP address');
      const host = checkHost(raw, raw);
      return Object.freeze({ name: display, address: host, host });
    }
    case 'hostPort': {
      if (/[^A-Za-z0-9.:_[\]-]/.test(raw)) reject(raw, 'expected host:port (or [IPv6]:port)');
      const parts = splitHostPort(raw);
      const host = checkHost(raw, parts.host);
      let port: number;
      if (parts.port !== undefined) port = parsePort(raw, parts.port);
      else if (spec.defaultPort !== undefined) port = spec.defaultPort;
      else reject(raw, 'expected host:port: the port is missing');
      return Object.freeze({ name: display, address: formatHostPort(host, port), host, port });
    }
    case 'url': {
      let url: URL;
      try {
        url = new URL(raw);
      } catch (cause) {
        reject(raw, 'not a valid URL (expected http://host[:port]/path)', cause);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        reject(raw, `URL scheme "${url.protocol.replace(/:$/, '')}" is not http or https`);
      }
      if (url.username !== '' || url.password !== '') {
        reject(raw, "credentials in the URL are not accepted; use the probe's header options");
      }
      const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
      checkHost(raw, host);
      const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
      return Object.freeze({ name: display, address: url.href, host, port, url });
    }
  }
}
