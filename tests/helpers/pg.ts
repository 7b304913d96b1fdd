/** Small PostgreSQL chores the tests share: psql, waiting, stream cleanup, positions. */
import { assertEquals } from "./assert.ts";
import { pgferry, type Run } from "./pgferry.ts";
import { withSql } from "./tables.ts";

/** Runs SQL text or a file in a separate psql process, stopping at the first error. */
export async function psql(
  uri: string,
  input: string | { sql: string } | { file: string },
): Promise<void> {
  const args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri];
  if (typeof input === "string") args.push("-c", input);
  else if ("file" in input) args.push("-f", input.file);
  else args.push("-c", input.sql);
  const out = await new Deno.Command("psql", { args, stdout: "piped", stderr: "piped" }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
}

type Check = () => Promise<boolean> | boolean;

/** Polls `check` until it holds; fails after `ms` (naming `what`, when given). */
export async function waitFor(check: Check, ms?: number): Promise<void>;
export async function waitFor(what: string, check: Check, ms?: number): Promise<void>;
export async function waitFor(
  first: string | Check,
  second?: Check | number,
  third?: number,
): Promise<void> {
  const what = typeof first === "string" ? first : "the condition";
  const check = typeof first === "string" ? second as Check : first;
  const ms = (typeof first === "string" ? third : second as number | undefined) ?? 60_000;
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The options naming a test's stream: source, target, work directory, and slot and origin `name`. */
export function streamArgs(source: string, target: string, dir: string, name: string): string[] {
  return [
    "--source",
    source,
    "--target",
    target,
    "--dir",
    dir,
    "--slot-name",
    name,
    "--origin",
    name,
  ];
}

/** `stream sentinel set endpos --current` through the catalog of `dir`. */
export function setEndposCurrent(source: string, dir: string): Promise<Run> {
  return pgferry([
    "stream",
    "sentinel",
    "set",
    "endpos",
    "--current",
    "--source",
    source,
    "--dir",
    dir,
  ]);
}

/** Drops the slot, publication and origin a test made under `name` (missing ones are fine). */
export async function cleanupStream(source: string, target: string, name: string): Promise<void> {
  const names = ["--slot-name", name, "--origin", name];
  await pgferry(["stream", "cleanup", "--source", source, "--target", target, ...names]);
}

/** The source's current flush LSN, as text. */
export async function sourceLsn(source: string): Promise<string> {
  return await withSql(
    source,
    async (sql) => (await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string,
  );
}
