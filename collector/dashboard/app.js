// The dashboard's shell: navigation by the URL's hash, the connection state, the viewer-token
// prompt, and alert links (`/?alert=<fingerprint>` opens the alert's incident).
import { render } from './vendor/preact.mjs';
import { useEffect, useState } from './vendor/preact-hooks.mjs';
import { ApiFailure, get, saveToken, savedToken } from './api.js';
import { html, useStore } from './common.js';
import { restart, run, update } from './store.js';
import { NowView } from './now.js';
import { MatrixView } from './matrix.js';
import { TopologyView } from './topology.js';
import { IncidentsView } from './incidents.js';
import { AgentsView } from './agents.js';

const views = [
  ['now', 'Now'],
  ['matrix', 'Path matrix'],
  ['topology', 'Topology'],
  ['incidents', 'Incidents'],
  ['agents', 'Agents'],
];

function route() {
  const [view = 'now', arg] = location.hash.replace(/^#\/?/, '').split('/');
  return { view, arg };
}

function useRoute() {
  const [r, set] = useState(route());
  useEffect(() => {
    const on = () => set(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return r;
}

function TokenPrompt({ message }) {
  const [value, setValue] = useState('');
  return html`<div class="token-prompt" role="dialog" aria-label="viewer token">
    <form
      onSubmit=${(e) => {
        e.preventDefault();
        saveToken(value.trim());
        update({ connection: 'connecting', authMessage: '' });
        restart();
      }}
    >
      <h2>A viewer token is needed</h2>
      <p>The collector answered: <i>${message}</i></p>
      <p class="muted">
        Ask for a token of the collector config's <code>viewers</code> (an agent's token cannot
        read). It is kept in this browser.
      </p>
      <input
        name="token"
        type="password"
        autocomplete="off"
        placeholder="viewer token"
        value=${value}
        onInput=${(e) => setValue(e.target.value)}
      />
      <button type="submit">Use this token</button>
    </form>
  </div>`;
}

function Connection({ connection }) {
  const text = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    token: 'token needed',
  };
  return html`<span class=${`connection ${connection}`} data-connection=${connection}
    >${text[connection]}</span
  >`;
}

function App() {
  const s = useStore();
  const { view, arg } = useRoute();
  const d = s.diagnosis;
  let body;
  switch (view) {
    case 'matrix':
      body = html`<${MatrixView} />`;
      break;
    case 'topology':
      body = html`<${TopologyView} />`;
      break;
    case 'incidents':
      body = html`<${IncidentsView} id=${arg === undefined ? undefined : Number(arg)} />`;
      break;
    case 'agents':
      body = html`<${AgentsView} />`;
      break;
    default:
      body = html`<${NowView} />`;
  }
  return html`<div class="shell" data-view=${view}>
    <header class="top">
      <span class="brand">Faultline</span>
      <nav>
        ${views.map(
          ([id, name]) =>
            html`<a href=${`#/${id}`} class=${view === id ? 'active' : ''} data-nav=${id}
              >${name}</a
            >`,
        )}
      </nav>
      ${
        d !== undefined &&
        html`<span class=${`health ${d.healthy ? 'healthy' : 'unhealthy'}`}>
          ${d.healthy ? 'healthy' : `${d.hypotheses[0]?.kind ?? 'unhealthy'}`}
        </span>`
      }
      <${Connection} connection=${s.connection} />
      ${
        savedToken() !== null &&
        html`<button
          class="forget"
          title="forget the viewer token kept in this browser"
          onClick=${() => {
            saveToken(null);
            restart();
          }}
        >
          forget token
        </button>`
      }
    </header>
    ${s.notice && html`<p class="notice">${s.notice}</p>`}
    ${s.error && html`<p class="error">${s.error}</p>`}
    ${s.connection === 'token' && html`<${TokenPrompt} message=${s.authMessage} />`}
    <main>${body}</main>
  </div>`;
}

/** An alert sent a moment ago may be ahead of its incident's record: asked again this often. */
const alertNotFoundRetries = 10;

/** `/?alert=<fingerprint>`: find the alert's incident and open it (retried until readable). */
async function openAlert(fingerprint) {
  for (let notFound = 0; ;) {
    try {
      const link = await get(`api/v1/alerts/${encodeURIComponent(fingerprint)}`);
      history.replaceState(null, '', `${location.pathname}#/incidents/${link.incidentId}`);
      dispatchEvent(new HashChangeEvent('hashchange'));
      return;
    } catch (err) {
      // A link clicked as the alert arrives can be ahead of its incident's record: a while.
      if (err instanceof ApiFailure && err.status === 404 && ++notFound < alertNotFoundRetries) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      if (err instanceof ApiFailure) {
        update({
          notice: `The alert ${fingerprint} belongs to no incident this collector knows: ${err.message}`,
        });
        return;
      }
      // No token yet: wait for one, then try again.
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

const root = document.getElementById('app');
// The "Loading…" placeholder is static HTML, not Preact's: render into an empty container.
root.textContent = '';
render(html`<${App} />`, root);
const alert = new URLSearchParams(location.search).get('alert');
if (alert !== null) void openAlert(alert);
void run();
