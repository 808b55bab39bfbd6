// Now: healthy or not; the hypotheses as the alert says them; what is ruled out.
import { ago, clock, html, percent, useStore } from './common.js';

function Evidence({ evidence }) {
  const counts = Object.entries(evidence.counts).sort(([, a], [, b]) => b - a);
  return html`<div class="evidence">
    <div class="counts">
      ${counts.map(([cls, n]) => html`<span class="count cls-${cls}">${cls} ${n}</span>`)}
    </div>
    ${
      evidence.examples.length > 0 &&
      html`<ul class="examples">
        ${evidence.examples.map((e) => html`<li><code>${e}</code></li>`)}
      </ul>`
    }
  </div>`;
}

function Hypothesis({ h, rank }) {
  return html`<article class="hypothesis ${rank === 0 ? 'leading' : ''}" data-kind=${h.kind}>
    <header>
      <span class="kind">${h.kind}</span>
      <span class="confidence" title="confidence">${percent(h.confidence)}</span>
      <span class="since" title=${clock(h.since)}>since ${ago(h.since)}</span>
    </header>
    <p class="summary">${h.summary}</p>
    ${
      h.cutLabel &&
      html`<p class="cut">cut at <b>${h.cutLabel.key}=${h.cutLabel.values.join(',')}</b></p>`
    }
    ${h.collectorCutOff && html`<p class="cut">The collector's own side is cut off.</p>`}
    ${
      h.groups.length > 0 &&
      html`<p class="groups">
        ${h.groups.map(
          (g) => html`<span class="group">${g.name ?? 'group'}: ${g.members.join(', ')}</span>`,
        )}
      </p>`
    }
    <${Evidence} evidence=${h.evidence} />
  </article>`;
}

export function NowView() {
  const { diagnosis: d } = useStore();
  if (d === undefined) return html`<p class="loading">Reading the diagnosis…</p>`;
  const ruledOut = d.ruledOut.filter((r) => r.canBeRuledOut);
  const notRuledOut = d.ruledOut.filter((r) => !r.canBeRuledOut);
  return html`<section
    class="now"
    data-healthy=${String(d.healthy)}
    data-hypotheses=${d.hypotheses.length}
    data-settling=${String(d.settling === true)}
  >
    <div class="verdict ${d.healthy ? 'healthy' : 'unhealthy'}">
      ${d.healthy ? 'Healthy: every path answers.' : 'Not healthy'}
      ${
        d.settling &&
        html`<span class="settling" title="the hypotheses may still change; alerts wait">
          settling${d.settlingSinceMs ? ` since ${ago(d.settlingSinceMs)}` : ''}
        </span>`
      }
      <span class="computed">computed ${ago(d.computedAtMs)}</span>
    </div>
    ${d.hypotheses.map((h, i) => html`<${Hypothesis} h=${h} rank=${i} />`)}
    ${
      d.ruledOut.length > 0 &&
      html`<div class="ruled-out">
        ${
          ruledOut.length > 0 &&
          html`<h3>Ruled out</h3>
            <ul>
              ${ruledOut.map(
                (r) =>
                  html`<li data-component=${r.component}><b>${r.component}</b>: ${r.reason}</li>`,
              )}
            </ul>`
        }
        ${
          notRuledOut.length > 0 &&
          html`<h3>Cannot be ruled out</h3>
            <ul>
              ${notRuledOut.map((r) => html`<li><b>${r.component}</b>: ${r.reason}</li>`)}
            </ul>`
        }
      </div>`
    }
  </section>`;
}
