import { isIP } from 'node:net';

// RFC 1123 labels; a trailing dot (FQDN) is allowed. Underscores appear in real service
// names (_srv records, some internal DNS), so they are accepted inside a label.
const labelRe = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

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
