/**
 * Exit codes of every command: 0 success, 1 a probe or check failed (for `status`: the
 * diagnosis is not healthy), 2 bad input, 3 no answer to judge (`status`: the collector could
 * not be asked, or its answer not read).
 */
export const exitCodes = { ok: 0, failed: 1, usage: 2, unavailable: 3, internal: 70 } as const;
