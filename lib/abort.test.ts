import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { abortAfter, childController, sharedController } from './abort.js';

/** What Node keeps on a signal for the composite signals made from it (AbortSignal.any). */
function dependants(signal: AbortSignal): number {
  const key = Object.getOwnPropertySymbols(signal).find(
    (s) => s.description === 'kDependantSignals',
  );
  const set = key === undefined ? undefined : (signal as unknown as Record<symbol, unknown>)[key];
  return set instanceof Set ? set.size : 0;
}

function until(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) =>
    signal.addEventListener('abort', () => resolve(), { once: true }),
  );
}

describe('abortAfter', () => {
  it('aborts with a TimeoutError after its time, as AbortSignal.timeout does', async () => {
    const parent = sharedController();
    const signal = abortAfter(parent.signal, 20);
    expect(signal.aborted).toBe(false);
    await until(signal);
    expect((signal.reason as DOMException).name).toBe('TimeoutError');
    expect(parent.signal.aborted).toBe(false);
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0);
  });

  it("aborts with its parent's reason when the parent aborts first, and at once when it already has", () => {
    const parent = sharedController();
    const signal = abortAfter(parent.signal, 60_000);
    parent.abort(new Error('stopping'));
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe('stopping');
    expect(abortAfter(parent.signal, 60_000).reason).toBe(parent.signal.reason);
  });

  it('leaves nothing on a long-lived parent once its requests are over (AbortSignal.any did: ~60 B each, for good)', async () => {
    const parent = sharedController();
    const signals: AbortSignal[] = [];
    for (let i = 0; i < 2000; i++) {
      const signal = abortAfter(parent.signal, 5);
      // What a request does with its signal.
      const onAbort = (): void => undefined;
      signal.addEventListener('abort', onAbort);
      signal.removeEventListener('abort', onAbort);
      signals.push(signal);
    }
    // While they run, one listener each (bounded by requests a second × timeout).
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(2000);
    await until(signals.at(-1)!);
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0);
    expect(dependants(parent.signal)).toBe(0);
  });
});

describe('childController', () => {
  it('follows its parent, and stops listening to it when aborted on its own', () => {
    const parent = new AbortController();
    const child = childController(parent.signal);
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(1);
    child.abort();
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0);
    expect(parent.signal.aborted).toBe(false);
    const other = childController(parent.signal);
    parent.abort('stop');
    expect(other.signal.reason).toBe('stop');
  });
});
