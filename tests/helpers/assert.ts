/**
 * The few assertions the tests use, on top of `node:assert/strict` (the JSR
 * registry that hosts `@std/assert` is not reachable from our machines).
 */
import assert from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

export function assert_(condition: unknown, message?: string): asserts condition {
  assert.ok(condition, message);
}
export { assert_ as assert };

export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  assert.match(actual, pattern, message);
}

export function assertStringIncludes(actual: string, expected: string, message?: string): void {
  if (!actual.includes(expected)) {
    assert.fail(
      message ?? `Expected ${JSON.stringify(actual)} to include ${JSON.stringify(expected)}`,
    );
  }
}

/** Any error class. */
type ErrorClass = new (...args: never[]) => Error;

/** Asserts that `fn` throws an instance of `errorClass` whose message contains `includes`. */
export function assertThrows(
  fn: () => unknown,
  errorClass: ErrorClass,
  includes?: string,
): Error {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof errorClass, `Expected ${errorClass.name}, got ${String(err)}`);
    if (includes !== undefined) assertStringIncludes(err.message, includes);
    return err;
  }
  assert.fail(`Expected ${errorClass.name} to be thrown`);
}

/** Async twin of `assertThrows`. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  errorClass: ErrorClass,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof errorClass, `Expected ${errorClass.name}, got ${String(err)}`);
    if (includes !== undefined) assertStringIncludes(err.message, includes);
    return err;
  }
  assert.fail(`Expected ${errorClass.name} to be rejected`);
}
