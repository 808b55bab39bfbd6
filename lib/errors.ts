/**
 * Faults of Faultline itself (never evidence about the network: that is a FailureClass).
 * Callers branch on `code`, never on the message. The original error stays in `cause`.
 */
export const errorCodes = {
  FL_ERR_CONFIG: 'invalid configuration',
  FL_ERR_TARGET: 'invalid probe target',
  FL_ERR_OPTIONS: 'invalid probe options',
  FL_ERR_USAGE: 'invalid command-line usage',
  FL_ERR_UNKNOWN_KIND: 'unknown probe kind',
  FL_ERR_ENGINE: 'probe engine unavailable',
  FL_ERR_STORE: 'collector store unavailable',
  FL_ERR_INTERNAL: 'internal error',
} as const;

export type ErrorCode = keyof typeof errorCodes;

export class FaultlineError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FaultlineError';
    this.code = code;
  }
}

/** Bad user input: config files, CLI flags, targets. The message names what was wrong. */
export class ConfigError extends FaultlineError {
  constructor(message: string, options?: { cause?: unknown; code?: ErrorCode }) {
    super(options?.code ?? 'FL_ERR_CONFIG', message, options);
    this.name = 'ConfigError';
  }
}

export function isFaultlineError(err: unknown): err is FaultlineError {
  return err instanceof FaultlineError;
}
