// Path matrix: agents (rows) × targets (columns) on one canvas, grouped by a topology label
// so a cut shows as a block. 2,000 × 300 cells are one ImageData, not 600k DOM nodes.
import { useEffect, useMemo, useRef, useState } from './vendor/preact-hooks.mjs';
import { get } from './api.js';
import { cellMeaning } from './store.js';
import {
  ago,
  cellColour,
  clock,
  groupKey,
  html,
  legend,
  percent,
  rgb,
  useStore,
} from './common.js';

const stateFilters = {
  all: () => true,
  'not ok': (s) => s !== 'ok',
  failing: (s) => s === 'failing',
  degraded: (s) => s === 'degraded',
  unknown: (s) => s === 'unknown',
};

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Rows and columns shown, in order, with their groups (exported for the tests' sake). */
export function layoutMatrix(m, { groupBy, label, kind, stateFilter }) {
  const [lk, lv] = label === '' ? [undefined, undefined] : label.split('=');
  const matches = (labels) => lk === undefined || labels[lk] === lv;
  let rows = [];
  for (let i = 0; i < m.agents.length; i++) if (matches(m.agents[i].labels)) rows.push(i);
  let cols = [];
  for (let j = 0; j < m.targets.length; j++) {
    const t = m.targets[j];
    if ((kind === '' || t.kind === kind) && matches(t.labels)) cols.push(j);
  }
  if (stateFilter !== 'all') {
    const keep = stateFilters[stateFilter];
    const rowHit = new Uint8Array(m.agents.length);
    const colHit = new Uint8Array(m.targets.length);
    const T = m.targets.length;
    for (const i of rows) {
      for (const j of cols) {
        const cell = m.cells[i * T + j];
        if (cell !== 0 && keep(cellMeaning(m, cell).state)) {
          rowHit[i] = 1;
          colHit[j] = 1;
        }
      }
    }
    rows = rows.filter((i) => rowHit[i] === 1);
    cols = cols.filter((j) => colHit[j] === 1);
  }
  const rowGroup = (i) => m.agents[i].labels[groupBy] ?? '—';
  const colGroup = (j) => m.targets[j].labels[groupBy] ?? '—';
  rows.sort((a, b) => cmp(rowGroup(a), rowGroup(b)) || cmp(m.agents[a].name, m.agents[b].name));
  cols.sort(
    (a, b) =>
      cmp(colGroup(a), colGroup(b)) ||
      cmp(m.targets[a].component, m.targets[b].component) ||
      cmp(m.targets[a].name, m.targets[b].name),
  );
  const spans = (list, groupOf) => {
    const out = [];
    list.forEach((x, k) => {
      const g = groupOf(x);
      if (out.length === 0 || out[out.length - 1].name !== g)
        out.push({ name: g, start: k, end: k });
      out[out.length - 1].end = k;
    });
    return out;
  };
  return { rows, cols, rowGroups: spans(rows, rowGroup), colGroups: spans(cols, colGroup) };
}

/** Failing cells per (row group, column group): what a cut looks like, as numbers. */
function blocks(m, layout) {
  const T = m.targets.length;
  const out = [];
  let failing = 0;
  for (const rg of layout.rowGroups) {
    for (const cg of layout.colGroups) {
      let n = 0;
      let cells = 0;
      for (let r = rg.start; r <= rg.end; r++) {
        const i = layout.rows[r];
        for (let c = cg.start; c <= cg.end; c++) {
          const cell = m.cells[i * T + layout.cols[c]];
          if (cell === 0) continue;
          cells++;
          if ((cell - 1) >> 5 === 1) n++;
        }
      }
      failing += n;
      out.push({ rows: rg.name, cols: cg.name, failing: n, cells });
    }
  }
  return { failing, blocks: out };
}

function draw(canvas, m, layout, cw, ch) {
  const W = layout.cols.length * cw;
  const H = layout.rows.length * ch;
  canvas.width = Math.max(1, W);
  canvas.height = Math.max(1, H);
  if (W === 0 || H === 0) return;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(W, H);
  const px = img.data;
  const T = m.targets.length;
  const palette = new Map();
  const colour = (cell) => {
    let c = palette.get(cell);
    if (c === undefined) {
      const meaning = cellMeaning(m, cell);
      c = meaning === undefined ? [246, 248, 250] : cellColour(meaning.state, meaning.cls);
      palette.set(cell, c);
    }
    return c;
  };
  const rowEdge = new Set(layout.rowGroups.map((g) => g.start).filter((s) => s > 0));
  const colEdge = new Set(layout.colGroups.map((g) => g.start).filter((s) => s > 0));
  for (let r = 0; r < layout.rows.length; r++) {
    const base = layout.rows[r] * T;
    for (let c = 0; c < layout.cols.length; c++) {
      const [R, G, B] = colour(m.cells[base + layout.cols[c]]);
      for (let y = r * ch; y < (r + 1) * ch; y++) {
        let o = (y * W + c * cw) * 4;
        for (let x = 0; x < cw; x++, o += 4) {
          px[o] = R;
          px[o + 1] = G;
          px[o + 2] = B;
          px[o + 3] = 255;
        }
      }
    }
  }
  // Group boundaries: one dark line, so blocks read as blocks.
  for (const r of rowEdge) {
    const o = r * ch * W * 4;
    for (let x = 0; x < W; x++) px.set([36, 41, 47, 255], o + x * 4);
  }
  for (const c of colEdge) {
    for (let y = 0; y < H; y++) px.set([36, 41, 47, 255], (y * W + c * cw) * 4);
  }
  ctx.putImageData(img, 0, 0);
}

/** Repaints only the cells a live change touched (`cells`: agent, target index pairs). */
function paint(canvas, m, layout, cw, ch, cells) {
  if (layout.rowPos === undefined) {
    layout.rowPos = new Int32Array(m.agents.length).fill(-1);
    layout.colPos = new Int32Array(m.targets.length).fill(-1);
    layout.rows.forEach((i, r) => (layout.rowPos[i] = r));
    layout.cols.forEach((j, c) => (layout.colPos[j] = c));
    layout.rowEdges = new Set(layout.rowGroups.map((g) => g.start).filter((x) => x > 0));
    layout.colEdges = new Set(layout.colGroups.map((g) => g.start).filter((x) => x > 0));
  }
  const ctx = canvas.getContext('2d');
  const T = m.targets.length;
  for (let k = 0; k < cells.length; k += 2) {
    const i = cells[k];
    const j = cells[k + 1];
    const r = layout.rowPos[i];
    const c = layout.colPos[j];
    if (r < 0 || c < 0) continue;
    const meaning = cellMeaning(m, m.cells[i * T + j]);
    ctx.fillStyle = rgb(
      meaning === undefined ? [246, 248, 250] : cellColour(meaning.state, meaning.cls),
    );
    ctx.fillRect(c * cw, r * ch, cw, ch);
    ctx.fillStyle = 'rgb(36,41,47)';
    if (layout.rowEdges.has(r)) ctx.fillRect(c * cw, r * ch, cw, 1);
    if (layout.colEdges.has(c)) ctx.fillRect(c * cw, r * ch, 1, ch);
  }
}

/**
 * A path's last stored results, as the hover shows them: asked for once the pointer rests
 * on a cell (debounced), kept a few seconds so moving back and forth asks again only when
 * they may have changed.
 */
const resultsCache = new Map();
const resultsTtlMs = 5000;
const resultsShown = 6;
const timingNames = {
  connectMs: 'connect',
  firstByteMs: 'first byte',
  rttMs: 'rtt',
  totalMs: 'total',
};

function cachedResults(agent, target) {
  const hit = resultsCache.get(`${agent}\n${target}`);
  return hit !== undefined && Date.now() - hit.atMs < resultsTtlMs ? hit.results : undefined;
}

function keepResults(agent, target, results) {
  resultsCache.set(`${agent}\n${target}`, { atMs: Date.now(), results });
  if (resultsCache.size > 200) resultsCache.delete(resultsCache.keys().next().value);
}

function resultTiming(r) {
  return r.ms !== undefined
    ? `${timingNames[r.timing] ?? r.timing} ${r.ms.toFixed(1)} ms`
    : `total ${r.totalMs.toFixed(0)} ms`;
}

function PathDetail({ m, agent, target, pinned }) {
  const [detail, setDetail] = useState(undefined);
  const [history, setHistory] = useState(undefined);
  const [results, setResults] = useState(undefined);
  const t = m.targets[m.col.get(target)];
  useEffect(() => {
    setDetail(undefined);
    const abort = new AbortController();
    const timer = setTimeout(() => {
      const q = new URLSearchParams({ agent, component: t.component, kind: t.kind });
      get(`api/v1/paths?${q}`, { signal: abort.signal })
        .then((r) => setDetail(r.paths.find((p) => p.target === target) ?? null))
        .catch(() => undefined);
    }, 120);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [agent, target]);
  useEffect(() => {
    const cached = cachedResults(agent, target);
    setResults(cached);
    if (cached !== undefined) return undefined;
    const abort = new AbortController();
    const timer = setTimeout(() => {
      const q = new URLSearchParams({ agent, target, limit: String(resultsShown) });
      get(`api/v1/paths/results?${q}`, { signal: abort.signal })
        .then((r) => {
          keepResults(agent, target, r.results);
          setResults(r.results);
        })
        .catch(() => (abort.signal.aborted ? undefined : setResults(null)));
    }, 250);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [agent, target]);
  useEffect(() => {
    setHistory(undefined);
    if (!pinned) return;
    const q = new URLSearchParams({ agent, target, limit: '50' });
    get(`api/v1/paths/history?${q}`)
      .then((r) => setHistory(r.transitions))
      .catch(() => setHistory([]));
  }, [agent, target, pinned]);
  const cell = cellMeaning(m, m.cells[m.row.get(agent) * m.targets.length + m.col.get(target)]);
  return html`<div class="path-detail" data-agent=${agent} data-target=${target}>
    <h4>${agent} → ${target}</h4>
    <p>
      <b class="state-${cell?.state}">${cell?.state ?? 'no path'}</b>${
        cell && cell.state !== 'ok' ? ` (${cell.cls})` : ''
      }
    </p>
    ${
      detail === undefined
        ? html`<p class="muted">reading…</p>`
        : detail === null
          ? html`<p class="muted">no such path now</p>`
          : html`<dl>
              <dt>last result</dt>
              <dd>${detail.lastClass}, ${ago(detail.lastSeenMs)}</dd>
              <dt>in the window</dt>
              <dd>
                ${detail.probes} probes, ${percent(detail.failureRatio)} failed
                ${Object.entries(detail.failures)
                  .map(([k, n]) => `${k} ${n}`)
                  .join(', ')}
              </dd>
              ${
                detail.lossRatio !== undefined &&
                html`<dt>loss</dt>
                  <dd>${percent(detail.lossRatio)}</dd>`
              }
              ${
                detail.latencyMs &&
                html`<dt>latency</dt>
                  <dd>
                    p50 ${detail.latencyMs.p50.toFixed(1)} ms, p99
                    ${detail.latencyMs.p99.toFixed(1)} ms (baseline
                    ${detail.latencyMs.baseline.toFixed(1)} ms)
                  </dd>`
              }
              <dt>state since</dt>
              <dd>${clock(detail.sinceMs)}</dd>
            </dl>`
    }
    <h4>Last stored results</h4>
    <p class="muted note">
      Only failures and state changes are stored in full (successes are summarised): these are the
      last stored ones.
    </p>
    ${
      results === undefined
        ? html`<p class="muted">reading…</p>`
        : results === null
          ? html`<p class="muted">could not read them</p>`
          : results.length === 0
            ? html`<p class="muted">none stored</p>`
            : html`<table class="results" data-count=${results.length}>
                ${results.map(
                  (r) =>
                    html`<tr data-class=${r.class}>
                      <td title=${clock(r.startedAtMs)}>
                        ${new Date(r.startedAtMs).toLocaleTimeString()}
                      </td>
                      <td>
                        <b class=${r.class === 'ok' ? 'state-ok' : 'state-failing'}>${r.class}</b>
                      </td>
                      <td>${resultTiming(r)}</td>
                      <td class="error" title=${r.error?.message ?? ''}>
                        ${r.error?.message ?? ''}
                      </td>
                    </tr>`,
                )}
              </table>`
    }
    ${
      pinned &&
      html`<h4>History</h4>
        ${
          history === undefined
            ? html`<p class="muted">reading…</p>`
            : history.length === 0
              ? html`<p class="muted">no state changes recorded</p>`
              : html`<table class="history">
                  ${history.map(
                    (h) =>
                      html`<tr>
                        <td>${clock(h.atMs)}</td>
                        <td>${h.fromState} → <b class="state-${h.toState}">${h.toState}</b></td>
                        <td>${h.toClass ?? ''}</td>
                      </tr>`,
                  )}
                </table>`
        }`
    }
  </div>`;
}

/** The filters' choices: label keys to group by, `key=value` labels, target kinds. */
function useMatrixOptions(m) {
  return useMemo(() => {
    if (m === undefined) return { keys: [], labels: [], kinds: [] };
    const keys = new Set();
    const labels = new Set();
    for (const x of [...m.agents, ...m.targets]) {
      for (const [k, v] of Object.entries(x.labels)) {
        keys.add(k);
        labels.add(`${k}=${v}`);
      }
    }
    return {
      keys: [...keys].sort(),
      labels: [...labels].sort(),
      kinds: [...new Set(m.targets.map((t) => t.kind))].sort(),
    };
  }, [m]);
}

/** The rows and columns shown, the label they are grouped by, and the cell size. */
function useMatrixLayout(m, matrixVersion, { groupBy, label, kind, stateFilter }) {
  const by =
    groupBy ??
    (m === undefined ? undefined : groupKey([...m.agents, ...m.targets].map((x) => x.labels)));
  const layout = useMemo(
    () =>
      m === undefined ? undefined : layoutMatrix(m, { groupBy: by, label, kind, stateFilter }),
    // Cells matter to the layout only when rows and columns are filtered by state.
    [m, by, label, kind, stateFilter, stateFilter === 'all' ? 0 : matrixVersion],
  );
  const cw =
    layout === undefined
      ? 8
      : Math.max(2, Math.min(16, Math.floor(1100 / Math.max(1, layout.cols.length))));
  const ch =
    layout === undefined
      ? 8
      : Math.max(2, Math.min(16, Math.floor(640 / Math.max(1, layout.rows.length))));
  return { by, layout, cw, ch };
}

/**
 * Keeps the canvas in step with the matrix: repaints only the cells of the last live change
 * when nothing else moved since the last drawing, else draws it all.
 */
function useMatrixCanvas(canvas, m, layout, cw, ch, matrixVersion, lastChanges) {
  const drawn = useRef({ layout: undefined, version: -1, cw: 0, ch: 0 });
  useEffect(() => {
    if (canvas.current === null || layout === undefined) return;
    const last = drawn.current;
    const incremental =
      last.layout === layout &&
      last.cw === cw &&
      last.ch === ch &&
      last.version === matrixVersion - 1 &&
      lastChanges?.version === matrixVersion;
    if (incremental) paint(canvas.current, m, layout, cw, ch, lastChanges.cells);
    else draw(canvas.current, m, layout, cw, ch);
    drawn.current = { layout, version: matrixVersion, cw, ch };
  }, [layout, matrixVersion, cw, ch]);
}

/** The filter bar: group by, label, kind and state, and what is shown. */
function filtersBar({ m, options, by, label, kind, stateFilter, failing, set }) {
  return html`<div class="filters">
    <label
      >group by
      <select value=${by ?? ''} onChange=${(e) => set.groupBy(e.target.value)}>
        ${options.keys.map((k) => html`<option value=${k}>${k}</option>`)}
      </select></label
    >
    <label
      >label
      <select name="label" value=${label} onChange=${(e) => set.label(e.target.value)}>
        <option value="">any</option>
        ${options.labels.map((l) => html`<option value=${l}>${l}</option>`)}
      </select></label
    >
    <label
      >kind
      <select name="kind" value=${kind} onChange=${(e) => set.kind(e.target.value)}>
        <option value="">any</option>
        ${options.kinds.map((k) => html`<option value=${k}>${k}</option>`)}
      </select></label
    >
    <label
      >state
      <select name="state" value=${stateFilter} onChange=${(e) => set.stateFilter(e.target.value)}>
        ${Object.keys(stateFilters).map((k) => html`<option value=${k}>${k}</option>`)}
      </select></label
    >
    <span class="muted"
      >${m.agents.length} agents × ${m.targets.length} targets; ${failing} failing paths shown</span
    >
  </div>`;
}

/** The group names beside the rows (as tall as their rows). */
function rowGroupLabels(layout, by, ch) {
  return html`<div class="row-groups" style=${`height:${layout.rows.length * ch}px`}>
    ${layout.rowGroups.map(
      (g) =>
        html`<div
          class="row-group"
          style=${`top:${g.start * ch}px;height:${(g.end - g.start + 1) * ch}px`}
          title=${`${by}=${g.name}`}
        >
          ${g.name}
        </div>`,
    )}
  </div>`;
}

/** The group names above the columns (as wide as their columns). */
function colGroupLabels(layout, by, cw) {
  return html`<div class="col-groups" style=${`width:${layout.cols.length * cw}px`}>
    ${layout.colGroups.map(
      (g) =>
        html`<div
          class="col-group"
          style=${`left:${g.start * cw}px;width:${(g.end - g.start + 1) * cw}px`}
          title=${`${by}=${g.name}`}
        >
          ${g.name}
        </div>`,
    )}
  </div>`;
}

export function MatrixView() {
  const { matrix: m, matrixVersion, lastChanges } = useStore();
  const [groupBy, setGroupBy] = useState(undefined);
  const [label, setLabel] = useState('');
  const [kind, setKind] = useState('');
  const [stateFilter, setStateFilter] = useState('all');
  const [hover, setHover] = useState(undefined);
  const [pinned, setPinned] = useState(undefined);
  const canvas = useRef(null);
  const box = useRef(null);

  const options = useMatrixOptions(m);
  const { by, layout, cw, ch } = useMatrixLayout(m, matrixVersion, {
    groupBy,
    label,
    kind,
    stateFilter,
  });
  const stats = useMemo(
    () => (layout === undefined ? { failing: 0, blocks: [] } : blocks(m, layout)),
    [layout, matrixVersion],
  );
  useMatrixCanvas(canvas, m, layout, cw, ch, matrixVersion, lastChanges);

  if (m === undefined) return html`<p class="loading">Reading the matrix…</p>`;
  const at = (e) => {
    const rect = canvas.current.getBoundingClientRect();
    const r = Math.floor((e.clientY - rect.top) / ch);
    const c = Math.floor((e.clientX - rect.left) / cw);
    const i = layout.rows[r];
    const j = layout.cols[c];
    if (i === undefined || j === undefined) return undefined;
    if (m.cells[i * m.targets.length + j] === 0) return undefined;
    return { agent: m.agents[i].name, target: m.targets[j].name, x: e.clientX, y: e.clientY };
  };
  const shown = pinned ?? hover;
  const set = { groupBy: setGroupBy, label: setLabel, kind: setKind, stateFilter: setStateFilter };
  return html`<section
    class="matrix"
    data-rows=${layout.rows.length}
    data-cols=${layout.cols.length}
    data-failing=${stats.failing}
    data-group-by=${by ?? ''}
    data-cell-width=${cw}
    data-cell-height=${ch}
    data-blocks=${JSON.stringify(stats.blocks)}
    data-version=${matrixVersion}
  >
    ${filtersBar({ m, options, by, label, kind, stateFilter, failing: stats.failing, set })}
    <div class="legend">
      ${legend.map(
        ([_k, c, text]) =>
          html`<span class="key"><i style=${`background:${rgb(c)}`}></i>${text}</span>`,
      )}
    </div>
    <div class="matrix-body">
      ${rowGroupLabels(layout, by, ch)}
      <div class="grid" ref=${box}>
        ${colGroupLabels(layout, by, cw)}
        <canvas
          ref=${canvas}
          onMouseMove=${(e) => setHover(at(e))}
          onMouseLeave=${() => setHover(undefined)}
          onClick=${(e) => {
            const p = at(e);
            setPinned(
              p === undefined || (pinned && pinned.agent === p.agent && pinned.target === p.target)
                ? undefined
                : p,
            );
          }}
        ></canvas>
      </div>
      <aside class="detail">
        ${
          shown === undefined
            ? html`<p class="muted">Hover a cell for the path; click it for its history.</p>`
            : html`<${PathDetail}
                m=${m}
                agent=${shown.agent}
                target=${shown.target}
                pinned=${pinned !== undefined}
              />`
        }
      </aside>
    </div>
  </section>`;
}
