// The read API as the dashboard uses it: a viewer token (kept in localStorage) on every
// request, 401 turned into a prompt, and the live feed read with fetch() so that the token
// travels in the Authorization header (EventSource cannot send one).

const tokenKey = 'faultline.viewerToken';

/** The viewer token kept by this browser, or null. */
export function savedToken() {
  try {
    return localStorage.getItem(tokenKey);
  } catch {
    return null;
  }
}

export function saveToken(token) {
  if (token === null || token === '') localStorage.removeItem(tokenKey);
  else localStorage.setItem(tokenKey, token);
}

/** A read answered 401 (no token, unknown token) or 403 (an agent's or a revoked token). */
export class AuthNeeded extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'AuthNeeded';
    this.status = status;
  }
}

/** Any other failed read: the API's error code and message. */
export class ApiFailure extends Error {
  constructor(message, status, code) {
    super(message);
    this.name = 'ApiFailure';
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const token = savedToken();
  return token === null ? extra : { ...extra, authorization: `Bearer ${token}` };
}

async function failure(res) {
  let code = '';
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    code = body?.error?.code ?? '';
    message = body?.error?.message ?? message;
  } catch {
    // Not the API's JSON (a proxy's page): the status says enough.
  }
  if (res.status === 401 || (res.status === 403 && code !== 'FL_ERR_NOT_FOUND')) {
    return new AuthNeeded(message, res.status);
  }
  return new ApiFailure(message, res.status, code);
}

/** GET a read endpoint (path relative to the page, e.g. `api/v1/diagnosis`): JSON or text. */
export async function get(path, { text = false, signal } = {}) {
  const res = await fetch(path, { headers: headers(), signal, cache: 'no-store' });
  if (!res.ok) throw await failure(res);
  return text ? res.text() : res.json();
}

/**
 * Reads the live feed until it ends (the collector went away, or `signal` aborted), calling
 * `onEvent(type, data)` for each event. Resolves when the stream ends; throws AuthNeeded.
 */
export async function follow(path, onEvent, signal) {
  const res = await fetch(path, {
    headers: headers({ accept: 'text/event-stream' }),
    signal,
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length > 0) onEvent(type, JSON.parse(data.join('\n')));
    }
  }
}
