// The dashboard's state and the loop that keeps it current: snapshots read from the API,
// then the live feed applied on top; a new boot id (the collector restarted) or a broken
// stream reads every snapshot again.
import { AuthNeeded, follow, get } from './api.js';

const listeners = new Set();

/** What every view reads. Replaced (never mutated in place) so views can compare. */
export let state = {
  /** connecting | live | reconnecting | token */
  connection: 'connecting',
  authMessage: '',
  error: '',
  diagnosis: undefined,
  matrix: undefined,
  agents: undefined,
  incidents: undefined,
  bootId: '',
  /** Bumped by every change of matrix cells (the canvas redraws on it). */
  matrixVersion: 0,
  lastEventMs: 0,
};

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function update(patch) {
  state = { ...state, ...patch };
  for (const fn of listeners) fn(state);
}

function decodeBase64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The matrix document with its cells decoded and its indexes built. */
export function decodeMatrix(doc) {
  const cells = decodeBase64(doc.cells);
  const row = new Map(doc.agents.map((a, i) => [a.name, i]));
  const col = new Map(doc.targets.map((t, i) => [t.name, i]));
  return { ...doc, cells, row, col };
}

/** A cell's state and class names (see collector/matrix-view.ts). */
export function cellMeaning(matrix, cell) {
  if (cell === 0) return undefined;
  const v = cell - 1;
  return { state: matrix.states[v >> 5] ?? 'unknown', cls: matrix.classes[v & 31] ?? 'ok' };
}

/** The current stream's `hello`: its boot id and the feed's seq when it subscribed. */
let hello;

/** Whether a matrix was computed after the current stream subscribed (it misses nothing). */
function fresh(matrix) {
  return (
    matrix !== undefined &&
    hello !== undefined &&
    matrix.feed?.bootId === hello.bootId &&
    matrix.feed.seq >= hello.seq
  );
}

let matrixLoading = false;
let bufferedChanges = [];
let matrixTimer;
let agentsTimer;

async function loadMatrix() {
  matrixLoading = true;
  bufferedChanges = [];
  try {
    const matrix = decodeMatrix(await get('api/v1/matrix'));
    // Changes that arrived while the snapshot was on its way: each is a path's latest word.
    const late = bufferedChanges;
    bufferedChanges = [];
    matrixLoading = false;
    update({ matrix, matrixVersion: state.matrixVersion + 1 });
    if (late.length > 0) applyChanges(late);
    // Read before the stream subscribed (at page load both start at once): it may lack a
    // change that came in between, so read it again. Not yet subscribed: `hello` decides.
    if (hello !== undefined && !fresh(matrix)) scheduleMatrix();
  } finally {
    matrixLoading = false;
  }
}

function applyChanges(changes) {
  const m = state.matrix;
  if (m === undefined || matrixLoading) {
    bufferedChanges.push(...changes);
    return;
  }
  let unknown = false;
  const changed = [];
  for (const [agent, target, cell] of changes) {
    const r = m.row.get(agent);
    const c = m.col.get(target);
    if (r === undefined || c === undefined) unknown = true;
    else {
      m.cells[r * m.targets.length + c] = cell;
      changed.push(r, c);
    }
  }
  const matrixVersion = state.matrixVersion + 1;
  // The cells this version changed: the canvas repaints only those.
  update({ matrixVersion, lastChanges: { version: matrixVersion, cells: changed } });
  // A path of an agent or target this snapshot does not have: read the matrix again.
  if (unknown) scheduleMatrix();
}

function scheduleMatrix() {
  if (matrixTimer !== undefined) return;
  matrixTimer = setTimeout(() => {
    matrixTimer = undefined;
    // One read at a time: the one on its way is checked for freshness when it lands.
    if (matrixLoading) scheduleMatrix();
    else loadMatrix().catch(showError);
  }, 300);
}

/** The agents list is read again at most every 5 s, however often liveness changes. */
function scheduleAgents() {
  if (agentsTimer !== undefined) return;
  agentsTimer = setTimeout(() => {
    agentsTimer = undefined;
    get('api/v1/agents')
      .then((a) => update({ agents: a.agents }))
      .catch(showError);
  }, 5000);
}

async function loadIncidents() {
  const { incidents } = await get('api/v1/incidents?limit=100');
  update({ incidents, incidentsVersion: (state.incidentsVersion ?? 0) + 1 });
}

function showError(err) {
  if (err instanceof AuthNeeded) {
    update({ connection: 'token', authMessage: err.message });
    restart();
  } else update({ error: err.message });
}

function onEvent(type, data) {
  state.lastEventMs = Date.now();
  switch (type) {
    case 'hello':
      hello = data;
      update({ bootId: data.bootId });
      // The small snapshots are read again now; the matrix only if the one in hand (or on
      // its way, see loadMatrix) is older than this stream.
      if (!matrixLoading && !fresh(state.matrix)) loadMatrix().catch(showError);
      return Promise.all([
        get('api/v1/diagnosis').then((diagnosis) => update({ diagnosis })),
        get('api/v1/agents').then((a) => update({ agents: a.agents })),
        loadIncidents(),
      ])
        .then(() => update({ connection: 'live', error: '' }))
        .catch(showError);
    case 'diagnosis':
      return update({ diagnosis: data });
    case 'paths':
      return applyChanges(data.changes);
    case 'matrix':
      return scheduleMatrix();
    case 'agents':
      return scheduleAgents();
    case 'incident':
      return loadIncidents().catch(showError);
  }
}

let controller;
let wake;

/** Ends the current stream and starts again (a new token was saved). */
export function restart() {
  controller?.abort();
  wake?.();
}

const sleep = (ms) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(t);
      resolve();
    };
  });

/** Runs for the life of the page. */
export async function run() {
  let backoffMs = 500;
  for (;;) {
    controller = new AbortController();
    try {
      // A stream that opens starts with `hello`; the snapshots are read then. The matrix,
      // the big one, is asked for at once beside the stream at page load.
      hello = undefined;
      const stream = follow('api/v1/events', onEvent, controller.signal);
      if (state.matrix === undefined && !matrixLoading) loadMatrix().catch(showError);
      await stream;
      backoffMs = 500;
    } catch (err) {
      if (err instanceof AuthNeeded) {
        update({ connection: 'token', authMessage: err.message });
        await sleep(1e9);
        continue;
      }
      if (err.name !== 'AbortError') update({ error: '' });
    }
    if (state.connection !== 'token') update({ connection: 'reconnecting' });
    await sleep(backoffMs);
    backoffMs = Math.min(backoffMs * 2, 5000);
  }
}
