/**
 * Errors that callers catch. Everything else uses the built-in classes
 * (`TypeError`, `RangeError`, `SyntaxError`) and is wrapped with `{ cause }`.
 */

/** A bad command line: `main.ts` prints the command's help and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * A runtime failure the operator can act on: `main.ts` prints `error: …`, then
 * `hint: …` on its own line, and exits 1.
 */
export class OperatorError extends Error {
  override name = "OperatorError";
  readonly hint: string | undefined;

  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.hint = options.hint;
  }
}

/** The message of any thrown value, for logs and error lines. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
