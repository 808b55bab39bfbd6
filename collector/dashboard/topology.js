// Topology: hosts grouped by their switch (or zone) label, each group's uplink to the core
// drawn, and the cut drawn where the diagnosis puts it. Our own SVG rather than Cytoscape.js:
// the picture is a fixed two-level tree (core → switch → host) that the inventory's labels
// already lay out, so a force layout's wandering positions and ~400 kB would buy nothing.
import { groupKey, html, useStore } from './common.js';

const hostR = 9;
const hostGap = 46;
const perRow = 5;

function statusOf(host, ctx) {
  const agent = ctx.agents.get(host.agent);
  if (ctx.unreachable.has(host.name)) return 'unreachable';
  if (ctx.cutOff.has(host.name)) return 'cut-off';
  if (agent?.state === 'silent') return 'silent';
  if (agent?.late) return 'late';
  if (ctx.blamed.has(host.name)) return 'blamed';
  if (agent === undefined) return 'no-agent';
  return 'ok';
}

export function TopologyView() {
  const { matrix: m, diagnosis: d, agents } = useStore();
  if (m === undefined || d === undefined) return html`<p class="loading">Reading the topology…</p>`;
  const hosts = m.hosts;
  const key = groupKey(hosts.map((h) => h.labels));
  const outerKey =
    key !== 'zone' && hosts.some((h) => h.labels.zone !== undefined) ? 'zone' : undefined;

  const cutValues = new Map(); // label key → values cut off
  const cutOff = new Set();
  const unreachable = new Set();
  const blamed = new Set();
  let collectorCutOff = false;
  for (const h of d.hypotheses) {
    if (h.cutLabel !== undefined) {
      const set = cutValues.get(h.cutLabel.key) ?? new Set();
      for (const v of h.cutLabel.values) set.add(v);
      cutValues.set(h.cutLabel.key, set);
    }
    if (h.kind === 'network_partition') {
      // The cut-off side: the hosts under the cut label, else the smaller group.
      if (h.cutLabel !== undefined) {
        for (const x of hosts) {
          if (h.cutLabel.values.includes(x.labels[h.cutLabel.key])) cutOff.add(x.name);
        }
      } else if (h.groups.length > 1) {
        const small = [...h.groups].sort((a, b) => a.members.length - b.members.length)[0];
        for (const n of small.members) cutOff.add(n);
      }
    }
    if (h.kind === 'host_unreachable') for (const c of h.components) unreachable.add(c);
    else for (const c of h.components) blamed.add(c);
    if (h.collectorCutOff) collectorCutOff = true;
  }
  const ctx = {
    agents: new Map((agents ?? []).map((a) => [a.agent, a])),
    cutOff,
    unreachable,
    blamed,
  };

  const groups = new Map();
  for (const x of hosts) {
    const g = x.labels[key] ?? '—';
    if (!groups.has(g))
      groups.set(g, { name: g, outer: outerKey ? (x.labels[outerKey] ?? '—') : '', hosts: [] });
    groups.get(g).hosts.push(x);
  }
  const list = [...groups.values()].sort((a, b) =>
    a.outer === b.outer ? (a.name < b.name ? -1 : 1) : a.outer < b.outer ? -1 : 1,
  );
  const isCut = (g) =>
    cutValues.get(key)?.has(g.name) === true ||
    (outerKey !== undefined && cutValues.get(outerKey)?.has(g.outer) === true) ||
    (g.hosts.length > 0 && g.hosts.every((x) => cutOff.has(x.name)));

  const boxW = perRow * hostGap + 20;
  const layout = [];
  let x = 20;
  let y = 110;
  let rowH = 0;
  const maxW = 1200;
  for (const g of list) {
    const rows = Math.ceil(g.hosts.length / perRow);
    const h = 50 + rows * 48;
    if (x + boxW > maxW) {
      x = 20;
      y += rowH + 30;
      rowH = 0;
    }
    layout.push({ g, x, y, w: boxW, h });
    x += boxW + 24;
    rowH = Math.max(rowH, h);
  }
  const width = Math.max(...layout.map((l) => l.x + l.w), 300) + 20;
  const height = y + rowH + 30;
  const core = { x: width / 2, y: 40 };
  const cutNames = list.filter(isCut).map((g) => g.name);

  return html`<section class="topology" data-group-by=${key} data-cut=${cutNames.join(',')}>
    <p class="muted">
      Hosts grouped by <b>${key}</b>${outerKey ? html` within <b>${outerKey}</b>` : ''}.
      ${
        cutNames.length > 0
          ? html` <span class="cut">Cut: ${key}=${cutNames.join(', ')}</span>`
          : ' No cut.'
      }
      ${collectorCutOff && html` <span class="cut">The collector's own side is cut off.</span>`}
    </p>
    <svg width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`} role="img">
      <g class="core">
        <rect x=${core.x - 50} y=${core.y - 16} width="100" height="32" rx="6"></rect>
        <text x=${core.x} y=${core.y + 5} text-anchor="middle">core</text>
      </g>
      ${layout.map(({ g, x, y, w }) => {
        const cut = isCut(g);
        const ux = x + w / 2;
        const mx = (core.x + ux) / 2;
        const my = (core.y + 16 + y) / 2;
        return html`<g class=${`uplink ${cut ? 'cut' : ''}`} data-switch=${g.name}>
          <line x1=${core.x} y1=${core.y + 16} x2=${ux} y2=${y}></line>
          ${
            cut &&
            html`<g class="cut-mark" transform=${`translate(${mx},${my})`}>
              <circle r="11"></circle>
              <text y="5" text-anchor="middle">✂</text>
            </g>`
          }
        </g>`;
      })}
      ${layout.map(({ g, x, y, w, h }) => {
        const cut = isCut(g);
        return html`<g
          class=${`switch ${cut ? 'cut' : ''}`}
          data-switch=${g.name}
          data-cut=${String(cut)}
        >
          <rect x=${x} y=${y} width=${w} height=${h} rx="8"></rect>
          <text class="switch-name" x=${x + 10} y=${y + 20}>
            ${key}=${g.name}${g.outer ? ` (${outerKey}=${g.outer})` : ''}
          </text>
          ${g.hosts.map((host, k) => {
            const hx = x + 25 + (k % perRow) * hostGap;
            const hy = y + 48 + Math.floor(k / perRow) * 48;
            const status = statusOf(host, ctx);
            return html`<g class=${`host ${status}`} data-host=${host.name} data-status=${status}>
              <title>${host.name} (${host.role}), agent ${host.agent}: ${status}</title>
              <circle cx=${hx} cy=${hy} r=${hostR}></circle>
              <text x=${hx} y=${hy + 22} text-anchor="middle">${host.name}</text>
            </g>`;
          })}
        </g>`;
      })}
    </svg>
    <p class="topology-legend">
      <span class="host-key ok">ok</span><span class="host-key cut-off">cut off</span
      ><span class="host-key unreachable">unreachable</span
      ><span class="host-key blamed">blamed</span><span class="host-key late">agent late</span
      ><span class="host-key silent">agent silent</span>
    </p>
  </section>`;
}
