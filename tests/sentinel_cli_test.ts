import postgres from "postgres";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./helpers/assert.ts";
import { sourceUri, tempDir } from "./helpers/env.ts";
import { pgferry } from "./helpers/pgferry.ts";
import { parseLsn } from "../lib/lsn.ts";

async function setUp(...args: string[]): Promise<string> {
  const dir = await tempDir("sentinel");
  const run = await pgferry(["stream", "sentinel", "setup", "--dir", dir, ...args]);
  assertEquals(run.code, 0, run.stderr);
  return dir;
}

Deno.test("sentinel setup then get prints six aligned lines like pgcopydb", async () => {
  const dir = await setUp("--startpos", "0/1A2B3C", "--endpos", "16/B374D848");
  const run = await pgferry(["stream", "sentinel", "get", "--dir", dir]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(
    run.stdout,
    [
      "startpos        0/1A2B3C",
      "endpos          16/B374D848",
      "apply           disabled",
      "write_lsn       0/0",
      "flush_lsn       0/0",
      "replay_lsn      0/0",
      "",
    ].join("\n"),
  );
});

Deno.test("sentinel setup takes pgcopydb's positional STARTPOS ENDPOS too", async () => {
  const dir = await setUp("1/10", "2/20");
  const run = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--endpos"]);
  assertEquals(run.stdout, "2/20\n");
});

Deno.test("sentinel get --json puts each value under its own key", async () => {
  const dir = await setUp("--startpos", "0/100", "--endpos", "0/200");
  const run = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--json"]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(JSON.parse(run.stdout), {
    startpos: "0/100",
    endpos: "0/200",
    apply: false,
    write_lsn: "0/0",
    flush_lsn: "0/0",
    replay_lsn: "0/0",
  });
});

Deno.test("sentinel set startpos, endpos, apply and prefetch change exactly their value", async () => {
  const dir = await setUp();
  const get = async (flag: string) =>
    (await pgferry(["stream", "sentinel", "get", "--dir", dir, flag])).stdout.trim();

  let run = await pgferry(["stream", "sentinel", "set", "startpos", "0/3000060", "--dir", dir]);
  assertEquals([run.code, run.stdout], [0, "0/3000060\n"], run.stderr);
  run = await pgferry(["stream", "sentinel", "set", "endpos", "A/B", "--dir", dir]);
  assertEquals([run.code, run.stdout], [0, "A/B\n"], run.stderr);
  assertEquals(await get("--startpos"), "0/3000060");
  assertEquals(await get("--endpos"), "A/B");
  assertEquals(await get("--apply"), "disabled");

  run = await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(await get("--apply"), "enabled");
  run = await pgferry(["stream", "sentinel", "set", "prefetch", "--dir", dir]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(await get("--apply"), "disabled");
  for (const flag of ["--write-lsn", "--flush-lsn", "--replay-lsn"]) {
    assertEquals(await get(flag), "0/0");
  }
});

Deno.test("sentinel set endpos --current reads pg_current_wal_flush_lsn() on the source", async () => {
  const dir = await setUp();
  const sql = postgres(sourceUri(), { max: 1, onnotice: () => {} });
  try {
    const lsnNow = async () =>
      parseLsn((await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"]);
    await sql`select pg_switch_wal()`; // a position that is surely not 0/0
    const before = await lsnNow();
    const run = await pgferry([
      "stream",
      "sentinel",
      "set",
      "endpos",
      "--current",
      "--source",
      sourceUri(),
      "--dir",
      dir,
    ]);
    const after = await lsnNow();
    assertEquals(run.code, 0, run.stderr);
    const printed = parseLsn(run.stdout.trim());
    assert(before <= printed && printed <= after, `${run.stdout} not within the source's range`);
    const got = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--endpos"]);
    assertEquals(got.stdout, run.stdout);
  } finally {
    await sql.end();
  }
});

Deno.test("sentinel set endpos --current takes the source from PGCOPYDB_SOURCE_PGURI", async () => {
  const dir = await setUp();
  const run = await pgferry(
    ["stream", "sentinel", "set", "endpos", "--current", "--dir", dir],
    { PGCOPYDB_SOURCE_PGURI: sourceUri() },
  );
  assertEquals(run.code, 0, run.stderr);
  assertMatch(run.stdout, /^[0-9A-F]+\/[0-9A-F]+\n$/);
});

Deno.test("a bad LSN is a usage error: exit 2, the value quoted, the command's help", async () => {
  const dir = await setUp();
  const run = await pgferry(["stream", "sentinel", "set", "endpos", "0/XYZ", "--dir", dir]);
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, 'error: Invalid endpos "0/XYZ"');
  assertStringIncludes(run.stderr, "usage: pgferry stream sentinel set endpos");
  const setup = await pgferry(["stream", "sentinel", "setup", "--dir", dir, "--startpos", "12"]);
  assertEquals(setup.code, 2);
  assertStringIncludes(setup.stderr, 'Invalid startpos "12"');
});

Deno.test("usage errors: unknown option, two values asked, --current without a source", async () => {
  const dir = await setUp();
  let run = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--bogus"]);
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, "--bogus");
  run = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--endpos", "--apply"]);
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, "--endpos and --apply");
  run = await pgferry(["stream", "sentinel", "set", "endpos", "--current", "--dir", dir], {
    PGFERRY_SOURCE_PGURI: "",
    PGCOPYDB_SOURCE_PGURI: "",
  });
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, "Missing --source");
  run = await pgferry(["stream", "sentinel", "set", "startpos", "--dir", dir]);
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, "missing argument LSN");
  run = await pgferry(["stream", "sentinel", "frobnicate"]);
  assertEquals(run.code, 2);
  assertStringIncludes(run.stderr, 'unknown command "stream sentinel frobnicate"');
});

Deno.test("a --dir without a catalog fails with exit 1 and a hint", async () => {
  const dir = await tempDir("empty");
  const run = await pgferry(["stream", "sentinel", "get", "--dir", dir]);
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, `error: No catalog in "${dir}"`);
  assertMatch(run.stderr, /\nhint: run "pgferry stream sentinel setup"/);
  assertEquals(run.stdout, "");
});

Deno.test("--dir comes from PGFERRY_DIR, else pgcopydb's PGCOPYDB_DIR", async () => {
  const dir = await setUp("--endpos", "0/42");
  for (const name of ["PGFERRY_DIR", "PGCOPYDB_DIR"]) {
    const run = await pgferry(["stream", "sentinel", "get", "--endpos"], { [name]: dir });
    assertEquals([run.code, run.stdout], [0, "0/42\n"], run.stderr);
  }
});

Deno.test("an unreachable source is an error that hides the password", async () => {
  const dir = await setUp();
  const run = await pgferry([
    "stream",
    "sentinel",
    "set",
    "endpos",
    "--current",
    "--dir",
    dir,
    "--source",
    "postgres://someone:s3cr3tpw@127.0.0.1:1/db",
  ]);
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, "Cannot connect to the source database");
  assertStringIncludes(run.stderr, "someone:****@127.0.0.1:1");
  assert(!run.stderr.includes("s3cr3tpw"), run.stderr);
  assertStringIncludes(run.stderr, "hint:");
});

Deno.test("help reads like pgcopydb's: the command tree and each option's environment twin", async () => {
  const top = await pgferry(["help"]);
  assertEquals(top.code, 0);
  assertStringIncludes(top.stdout, "stream sentinel set endpos");
  const set = await pgferry(["stream", "sentinel", "set", "--help"]);
  assertEquals(set.code, 0);
  for (const word of ["startpos LSN", "endpos (LSN | --current)", "apply", "prefetch"]) {
    assertStringIncludes(set.stdout, word);
  }
  const endpos = await pgferry(["help", "stream", "sentinel", "set", "endpos"]);
  assertEquals(endpos.code, 0);
  assertStringIncludes(endpos.stdout, "env PGFERRY_SOURCE_PGURI, PGCOPYDB_SOURCE_PGURI");
  const version = await pgferry(["version"]);
  assertMatch(version.stdout, /^pgferry \d+\.\d+\.\d+\n$/);
});
