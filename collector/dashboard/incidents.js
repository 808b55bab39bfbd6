// Incidents: the list; one incident's timeline (failing paths per kind over the incident,
// the leading hypothesis' changes marked) and its postmortem, rendered and sanitised.
import { useEffect, useRef, useState } from './vendor/preact-hooks.mjs';
import uPlot from './vendor/uplot.mjs';
import { marked } from './vendor/marked.mjs';
import DOMPurify from './vendor/purify.mjs';
import { get } from './api.js';
import { ago, clock, html, useStore } from './common.js';

const kindColours = {
  network_partition: '#cf222e',
  host_unreachable: '#a40e26',
  service_down: '#f0883e',
  service_unresponsive: '#8250df',
  path_blocked: '#bf3989',
  source_fault: '#0969da',
  packet_loss: '#d4a72c',
  dns_failure: '#9a6700',
  agent_silent: '#6e7781',
  mtu_mismatch: '#1b7c83',
  unexplained: '#57606a',
};

function failing(h) {
  return Object.entries(h.evidence.counts).reduce((s, [k, n]) => (k === 'ok' ? s : s + n), 0);
}

/** Step series of failing paths per kind, from the diagnoses the timeline kept. */
export function timelineSeries(detail) {
  const events = detail.events.filter((e) => e.diagnosis && Array.isArray(e.diagnosis.hypotheses));
  const kinds = [...new Set(events.flatMap((e) => e.diagnosis.hypotheses.map((h) => h.kind)))];
  const xs = events.map((e) => e.atMs / 1000);
  const end = (detail.closedAtMs ?? Date.now()) / 1000;
  if (xs.length > 0 && end > xs[xs.length - 1]) xs.push(end);
  const ys = kinds.map((kind) => {
    const row = events.map((e) =>
      e.diagnosis.hypotheses.filter((h) => h.kind === kind).reduce((s, h) => s + failing(h), 0),
    );
    if (row.length < xs.length)
      row.push(detail.closedAtMs === undefined ? (row[row.length - 1] ?? 0) : 0);
    return row;
  });
  const marks = events
    .filter((e) => e.type === 'opened' || e.type === 'leading_changed')
    .map((e) => ({ atS: e.atMs / 1000, text: e.diagnosis.hypotheses[0]?.kind ?? '' }));
  return { kinds, data: [xs, ...ys], marks };
}

function Timeline({ detail }) {
  const el = useRef(null);
  useEffect(() => {
    if (el.current === null) return undefined;
    const { kinds, data, marks } = timelineSeries(detail);
    if (data[0].length === 0) return undefined;
    const plot = new uPlot(
      {
        width: Math.min(1000, el.current.clientWidth || 900),
        height: 220,
        series: [
          {},
          ...kinds.map((k) => ({
            label: k,
            stroke: kindColours[k] ?? '#57606a',
            width: 2,
            paths: uPlot.paths.stepped({ align: 1 }),
          })),
        ],
        axes: [{}, { label: 'failing paths' }],
        hooks: {
          // The leading hypothesis' changes: a dashed line and its kind.
          draw: [
            (u) => {
              const c = u.ctx;
              c.save();
              c.strokeStyle = '#24292f';
              c.fillStyle = '#24292f';
              c.setLineDash([4, 4]);
              c.font = `${11 * devicePixelRatio}px sans-serif`;
              for (const mk of marks) {
                const x = Math.round(u.valToPos(mk.atS, 'x', true));
                c.beginPath();
                c.moveTo(x, u.bbox.top);
                c.lineTo(x, u.bbox.top + u.bbox.height);
                c.stroke();
                c.fillText(mk.text, x + 4, u.bbox.top + 12 * devicePixelRatio);
              }
              c.restore();
            },
          ],
        },
      },
      data,
      el.current,
    );
    el.current.dataset.series = String(kinds.length);
    el.current.dataset.marks = String(marks.length);
    return () => plot.destroy();
  }, [detail]);
  return html`<div class="timeline" ref=${el}></div>`;
}

function Postmortem({ id }) {
  const [md, setMd] = useState(undefined);
  const [err, setErr] = useState('');
  const { incidentsVersion } = useStore();
  useEffect(() => {
    get(`api/v1/incidents/${id}/postmortem`, { text: true })
      .then(setMd)
      .catch((e) => setErr(e.message));
  }, [id, incidentsVersion]);
  if (err !== '') return html`<p class="error">${err}</p>`;
  if (md === undefined) return html`<p class="muted">Reading the postmortem…</p>`;
  const safe = DOMPurify.sanitize(marked.parse(md, { async: false }));
  return html`<article
    class="postmortem markdown"
    data-rendered="true"
    dangerouslySetInnerHTML=${{ __html: safe }}
  ></article>`;
}

function IncidentDetail({ id }) {
  const [detail, setDetail] = useState(undefined);
  const [err, setErr] = useState('');
  const { incidentsVersion } = useStore();
  useEffect(() => {
    setErr('');
    get(`api/v1/incidents/${id}`)
      .then(setDetail)
      .catch((e) => setErr(e.message));
  }, [id, incidentsVersion]);
  if (err !== '') return html`<p class="error">${err}</p>`;
  if (detail === undefined || detail.id !== id)
    return html`<p class="loading">Reading incident ${id}…</p>`;
  const leading = detail.events.filter((e) => e.type === 'opened' || e.type === 'leading_changed');
  return html`<div
    class="incident"
    data-incident-id=${detail.id}
    data-open=${String(detail.closedAtMs === undefined)}
  >
    <h2>Incident ${detail.id}: ${detail.kind}</h2>
    <p class="summary">${detail.summary}</p>
    <p class="muted">
      ${[
        `first failure ${clock(detail.firstFailureMs)}`,
        `detected ${clock(detail.openedAtMs)}`,
        detail.closedAtMs === undefined ? 'open' : `recovered ${clock(detail.closedAtMs)}`,
        detail.components.join(', '),
      ].join(' · ')}
    </p>
    <h3>Timeline</h3>
    <${Timeline} detail=${detail} />
    <ul class="leading-changes">
      ${leading.map(
        (e) =>
          html`<li>
            ${`${clock(e.atMs)}: ${e.type === 'opened' ? 'opened as' : 'leading now'} `}
            <b>${e.diagnosis.hypotheses[0]?.kind}</b>${` — ${e.diagnosis.hypotheses[0]?.summary}`}
          </li>`,
      )}
    </ul>
    <h3>Postmortem draft</h3>
    <${Postmortem} id=${id} />
  </div>`;
}

export function IncidentsView({ id }) {
  const { incidents } = useStore();
  if (incidents === undefined) return html`<p class="loading">Reading incidents…</p>`;
  return html`<section class="incidents" data-count=${incidents.length}>
    <nav class="incident-list">
      ${incidents.length === 0 && html`<p class="muted">No incidents yet.</p>`}
      ${incidents.map(
        (i) =>
          html`<a
            href=${`#/incidents/${i.id}`}
            class=${`incident-link ${i.id === id ? 'selected' : ''} ${i.closedAtMs === undefined ? 'open' : ''}`}
            data-incident=${i.id}
          >
            <b>#${i.id} ${i.kind}</b>
            <span>${i.closedAtMs === undefined ? 'open' : 'closed'} · ${ago(i.openedAtMs)}</span>
            <span class="muted">${i.summary}</span>
          </a>`,
      )}
    </nav>
    <div class="incident-main">
      ${
        id === undefined
          ? html`<p class="muted">Pick an incident.</p>`
          : html`<${IncidentDetail} id=${id} />`
      }
    </div>
  </section>`;
}
