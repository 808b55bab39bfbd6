// Agents: liveness, lateness, last report, version, spool backlog, labels, results lost to the
// spool bound.
import { useEffect, useState } from './vendor/preact-hooks.mjs';
import { ago, clock, html, useStore } from './common.js';

const pageSize = 300;

export function AgentsView() {
  const { agents } = useStore();
  const [filter, setFilter] = useState('');
  const [limit, setLimit] = useState(pageSize);
  // "3 s ago" moves on between refreshes of the list.
  const [, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 5000);
    return () => clearInterval(t);
  }, []);
  if (agents === undefined) return html`<p class="loading">Reading agents…</p>`;
  const rank = (a) => (a.state === 'silent' ? 0 : a.late ? 1 : 2);
  const shown = agents
    .filter(
      (a) => filter === '' || a.agent.includes(filter) || JSON.stringify(a.labels).includes(filter),
    )
    .sort((a, b) => rank(a) - rank(b) || (a.agent < b.agent ? -1 : 1));
  const silent = agents.filter((a) => a.state === 'silent').length;
  const late = agents.filter((a) => a.state !== 'silent' && a.late).length;
  const now = Date.now();
  return html`<section
    class="agents"
    data-count=${agents.length}
    data-silent=${silent}
    data-late=${late}
  >
    <p>
      ${`${agents.length} agents: ${agents.length - silent - late} live, ${late} late, ${silent} silent. `}
      <input
        placeholder="filter by name or label"
        value=${filter}
        onInput=${(e) => setFilter(e.target.value)}
      />
    </p>
    <table>
      <thead>
        <tr>
          <th>agent</th>
          <th>state</th>
          <th>last report</th>
          <th>version</th>
          <th title="batches spooled behind its last report: 0 when it is caught up">
            spool backlog
          </th>
          <th>labels</th>
          <th>results lost</th>
          <th>accepted seq</th>
        </tr>
      </thead>
      <tbody>
        ${shown.slice(0, limit).map(
          (a) =>
            html`<tr
              data-agent=${a.agent}
              class=${a.state === 'silent' ? 'silent' : a.late ? 'late' : ''}
            >
              <td>${a.agent}</td>
              <td>${a.state}${a.late ? ' (late)' : ''}</td>
              <td title=${clock(a.lastSeenMs)}>${ago(a.lastSeenMs, now)}</td>
              <td
                class="version"
                title=${
                  a.version === undefined
                    ? 'its last report did not say (an older agent, or none since the collector started)'
                    : ''
                }
              >
                ${a.version ?? 'unknown'}
              </td>
              <td class=${a.spoolBacklog > 0 ? 'backlog behind' : 'backlog'}>
                ${a.spoolBacklog ?? 0}
              </td>
              <td>
                ${Object.entries(a.labels).map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}
              </td>
              <td>${a.droppedResults}</td>
              <td>${a.acceptedSeq ?? '—'}</td>
            </tr>`,
        )}
      </tbody>
    </table>
    ${
      shown.length > limit &&
      html`<button onClick=${() => setLimit(limit + pageSize)}>
        show ${Math.min(pageSize, shown.length - limit)} more
      </button>`
    }
  </section>`;
}
