/**
 * One place that decides what an error from PostgreSQL or the network means
 * for the pipeline: retry, or stop and tell the operator.
 */

/** What to do about an error. */
export type ErrorClass = "retryable" | "conflict" | "permission" | "precondition" | "fatal";

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNABORTED",
  "EAI_AGAIN",
]);

/** The SQLSTATE or network code of an error, when it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Classifies by SQLSTATE class (and Node/Deno network codes). An error without
 * a code of its own that wraps another (`{ cause }`, as `describePgError` wraps a
 * refused connection into an operator message) is classified by what it wraps.
 */
export function classifyPgError(err: unknown): ErrorClass {
  for (let depth = 0; depth < 8; depth++) {
    const cause = (err as { cause?: unknown } | null)?.cause;
    if (errorCode(err) !== undefined || cause === undefined || isNetworkError(err)) break;
    err = cause;
  }
  return classifyOne(err);
}

function isNetworkError(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionRefused ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.UnexpectedEof;
}

function classifyOne(err: unknown): ErrorClass {
  if (isNetworkError(err)) return "retryable";
  const code = errorCode(err);
  if (code === undefined) return "fatal";
  if (NETWORK_CODES.has(code)) return "retryable";
  if (code === "08P01") return "fatal"; // protocol violation
  if (code.startsWith("08")) return "retryable"; // connection exception
  if (["57P01", "57P02", "57P03", "57014"].includes(code)) return "retryable"; // shutdown, cancel
  if (["40001", "40P01", "55P03", "55006"].includes(code)) return "retryable"; // serialization, deadlock, lock
  if (code.startsWith("53")) return "retryable"; // insufficient resources
  if (code.startsWith("23")) return "conflict"; // integrity constraint violation
  if (code.startsWith("42501") || code.startsWith("28")) return "permission";
  if (code.startsWith("42") || code.startsWith("55")) return "precondition"; // undefined object…
  return "fatal";
}
