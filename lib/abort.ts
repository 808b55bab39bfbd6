import { setMaxListeners } from 'node:events';

/*
 * Signals derived from a long-lived one (a daemon's stop), without AbortSignal.any. On Node
 * 20, every composite signal AbortSignal.any makes that ever had an 'abort' listener (any
 * request made with it has one) stays for good as a WeakRef in its sources' sets: ~60 bytes
 * per request on a signal as old as the process (6 MB per 100,000, measured), which grew a
 * managed agent's RSS by ~18 MB an hour. Here a derived signal's listener leaves its parent
 * when the derived signal aborts, whichever way it ends.
 */

/**
 * A controller whose signal many operations in flight listen to at once (every run of a
 * scheduler, every request of a channel): aborted only by a stop, so Node's listener limit of
 * 10, meant to catch leaks, would only warn on a busy host.
 */
export function sharedController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

/**
 * A controller that is aborted when `parent` is (with its reason), or by its own abort();
 * either way it stops listening to `parent`.
 */
export function childController(parent: AbortSignal): AbortController {
  const child = new AbortController();
  if (parent.aborted) {
    child.abort(parent.reason);
    return child;
  }
  const onParentAbort = (): void => child.abort(parent.reason);
  parent.addEventListener('abort', onParentAbort, { once: true });
  child.signal.addEventListener('abort', () => parent.removeEventListener('abort', onParentAbort), {
    once: true,
  });
  return child;
}

/**
 * A signal aborted when `parent` is, or after `ms` with a TimeoutError as AbortSignal.timeout
 * (whose timer, like this one, keeps no process alive). `parent` holds its listener until
 * one of the two happens: at most (requests a second × ms) listeners at a time.
 */
export function abortAfter(parent: AbortSignal, ms: number): AbortSignal {
  const child = childController(parent);
  if (child.signal.aborted) return child.signal;
  const timer = setTimeout(() => {
    child.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  timer.unref();
  child.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  return child.signal;
}
