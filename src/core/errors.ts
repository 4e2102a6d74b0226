/** Exit codes, documented in docs/exit-codes.md. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  partial: 3,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface NixpoolErrorOptions {
  hint?: string;
  cause?: unknown;
  exitCode?: ExitCode;
  /** Extra structured data for --json output (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The one error type users see: a string code, a one-sentence message naming the object,
 * and a hint with the next command to run.
 */
export class NixpoolError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: NixpoolErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "NixpoolError";
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.failed;
    this.details = options.details;
  }
}

/** Configuration or usage errors exit with 2. */
export function configError(
  code: string,
  message: string,
  options: Omit<NixpoolErrorOptions, "exitCode"> = {},
) {
  return new NixpoolError(code, message, { ...options, exitCode: ExitCode.usage });
}

export function isNixpoolError(e: unknown): e is NixpoolError {
  return e instanceof NixpoolError;
}
