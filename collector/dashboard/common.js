// Shared pieces of the views: htm bound to Preact, the store as a hook, colours and times.
import { h } from './vendor/preact.mjs';
import { useEffect, useState } from './vendor/preact-hooks.mjs';
import htm from './vendor/htm.mjs';
import { state, subscribe } from './store.js';

export const html = htm.bind(h);

/** The store's state; the component renders again when it changes. */
export function useStore() {
  const [s, set] = useState(state);
  useEffect(() => subscribe(set), []);
  return s;
}

/** Failure classes by what they point at, each family one hue. */
const classColours = {
  ok: [46, 160, 67],
  icmp_timeout: [207, 34, 46],
  icmp_unreachable: [207, 34, 46],
  tcp_timeout: [207, 34, 46],
  tcp_unreachable: [207, 34, 46],
  mtu_exceeded: [190, 60, 120],
  tcp_refused: [240, 136, 62],
  tcp_reset: [240, 136, 62],
  http_timeout: [130, 80, 223],
  protocol_timeout: [130, 80, 223],
  http_status: [163, 113, 247],
  http_body: [163, 113, 247],
  protocol_error: [163, 113, 247],
  tls_error: [219, 97, 162],
  dns_error: [212, 167, 44],
  dns_timeout: [212, 167, 44],
  internal_error: [110, 118, 129],
};

/** What the legend says for each hue. */
export const legend = [
  ['ok', [46, 160, 67], 'ok'],
  ['network', [207, 34, 46], 'network: timeout / unreachable'],
  ['refused', [240, 136, 62], 'refused / reset: service down'],
  ['service', [130, 80, 223], 'answer timed out or wrong'],
  ['tls', [219, 97, 162], 'TLS'],
  ['dns', [212, 167, 44], 'DNS'],
  ['degraded', [230, 190, 60], 'degraded: loss or latency'],
  ['unknown', [140, 149, 159], 'no word yet / silent agent'],
];

/** RGB of a cell's state and class. */
export function cellColour(stateName, cls) {
  if (stateName === 'ok') return classColours.ok;
  if (stateName === 'degraded') return [230, 190, 60];
  if (stateName === 'unknown') return [140, 149, 159];
  return classColours[cls] ?? [207, 34, 46];
}

export function rgb([r, g, b]) {
  return `rgb(${r},${g},${b})`;
}

/** "3 min ago", "2 h ago". */
export function ago(ms, nowMs = Date.now()) {
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function clock(ms) {
  return new Date(ms).toLocaleString();
}

export function percent(x) {
  return `${Math.round(x * 100)}%`;
}

/** The label key hosts are grouped by: the first of these the inventory uses. */
export function groupKey(labelSets, preferred = ['switch', 'zone', 'rack', 'subnet']) {
  const keys = new Set();
  for (const l of labelSets) for (const k of Object.keys(l)) keys.add(k);
  return preferred.find((k) => keys.has(k)) ?? [...keys].sort()[0];
}
