/** Exit codes of every command: 0 success, 1 a probe or check failed, 2 bad input. */
export const exitCodes = { ok: 0, failed: 1, usage: 2, internal: 70 } as const;
