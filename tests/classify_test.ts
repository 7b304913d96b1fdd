/**
 * classifyPgError(): what the follow supervisor does about an error — retry,
 * or stop and tell the operator — from SQLSTATEs, network codes, and the
 * errors they are wrapped in.
 */
import { assertEquals } from "./helpers/assert.ts";
import { classifyPgError } from "../lib/pg/classify.ts";
import { describePgError } from "../lib/pg/connect.ts";
import { PgConnectionError } from "../lib/pg/replication.ts";
import { OperatorError } from "../lib/errors.ts";

function coded(code: string): Error {
  return Object.assign(new Error(`failed with ${code}`), { code });
}

Deno.test("classifyPgError() retries lost connections, shutdowns, serialization failures and locks", () => {
  for (
    const code of [
      "ECONNREFUSED",
      "ECONNRESET",
      "CONNECTION_CLOSED",
      "CONNECTION_ENDED",
      "CONNECTION_DESTROYED",
      "08006",
      "08001",
      "57P01",
      "57P03",
      "40001",
      "40P01",
      "55P03",
      "55006",
      "53300",
    ]
  ) {
    assertEquals(classifyPgError(coded(code)), "retryable", code);
  }
  assertEquals(classifyPgError(new Deno.errors.ConnectionReset("reset")), "retryable");
  assertEquals(
    classifyPgError(new PgConnectionError("08006", "Lost the replication connection")),
    "retryable",
  );
});

Deno.test("classifyPgError() stops on data, permission, undefined objects and protocol violations", () => {
  assertEquals(classifyPgError(coded("23505")), "conflict");
  assertEquals(classifyPgError(coded("42501")), "permission");
  assertEquals(classifyPgError(coded("42P01")), "precondition");
  assertEquals(classifyPgError(coded("08P01")), "fatal");
  assertEquals(classifyPgError(coded("26000")), "fatal");
  assertEquals(classifyPgError(new TypeError("a bug")), "fatal");
  assertEquals(classifyPgError("a string"), "fatal");
  assertEquals(classifyPgError(undefined), "fatal");
});

Deno.test("classifyPgError() classifies a wrapper without a code of its own by its cause", () => {
  // What receive throws when the source refuses connections while it restarts.
  const refused = describePgError(
    coded("ECONNREFUSED"),
    "postgres://u:secret@127.0.0.1:1/db",
    "source",
  );
  assertEquals(refused instanceof OperatorError, true);
  assertEquals(classifyPgError(refused), "retryable");
  const deep = new OperatorError("outer", {
    cause: new SyntaxError("middle", { cause: coded("40P01") }),
  });
  assertEquals(classifyPgError(deep), "retryable");
  assertEquals(classifyPgError(new OperatorError("no cause")), "fatal");
  assertEquals(
    classifyPgError(new OperatorError("a conflict", { cause: coded("23505") })),
    "conflict",
  );
  // The wrapper's own code wins over its cause's.
  assertEquals(
    classifyPgError(Object.assign(new Error("x", { cause: coded("08006") }), { code: "08P01" })),
    "fatal",
  );
  // A cycle ends.
  const a: Error & { cause?: unknown } = new Error("a");
  a.cause = new Error("b", { cause: a });
  assertEquals(classifyPgError(a), "fatal");
});
