/**
 * `pgferry status` against a live follow: from the work directory and over
 * TCP, with apply off and after endpos, and after the follow process died.
 */
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freePort, freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { withSql } from "./helpers/tables.ts";
import { listSegments, spoolDir } from "../lib/spool/segments.ts";
import { parseLsn } from "../lib/lsn.ts";
import { psql, setEndposCurrent, streamArgs, waitFor } from "./helpers/pg.ts";

const SCHEMA = "create table hist (id bigserial primary key, delta integer)";

async function sourceLsn(source: string): Promise<bigint> {
  return await withSql(
    source,
    async (sql) =>
      parseLsn((await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string),
  );
}

// deno-lint-ignore no-explicit-any
async function status(args: string[]): Promise<any> {
  const run = await pgferry(["status", "--json", ...args]);
  assertEquals(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

async function spoolBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const segment of listSegments(spoolDir(dir))) bytes += (await Deno.stat(segment.path)).size;
  return bytes;
}

Deno.test("status shows each stage's position, the lags between them, the spool and the follow process, from --dir and over TCP", async () => {
  const name = "status_live";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const port = freePort();
  const tcp = ["--host", "127.0.0.1", "--port", String(port)];
  const args = [
    "follow",
    ...streamArgs(source, target, dir, name),
    "--spool-segment-size",
    "4096",
    "--prune-interval",
    "0",
  ];
  let follow = spawnPgferry([...args, "--port", String(port)]);
  try {
    assertEquals((await pgferry(["stream", "sentinel", "ping", ...tcp, "--wait", "30"])).code, 0);
    assertEquals((await pgferry(["stream", "sentinel", "set", "prefetch", ...tcp])).code, 0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await psql(
      source,
      "do $$ begin for i in 1..300 loop insert into hist (delta) select g from generate_series(1, 10) g; commit; end loop; end $$",
    );
    const lsn = await sourceLsn(source);
    await waitFor(async () => parseLsn((await status(["--dir", dir])).sentinel.flush_lsn) >= lsn);

    // From the work directory, with the source.
    const local = await status(["--dir", dir, "--source", source]);
    assertEquals([local.via, local.where, local.state, local.pid], [
      "catalog",
      dir,
      "running",
      follow.pid,
    ]);
    assertEquals(local.stages, {
      receive: { running: true, pid: follow.pid },
      apply: { running: true, pid: follow.pid },
    });
    const s = local.sentinel;
    assertEquals(s.apply, false);
    const write = parseLsn(s.write_lsn);
    const flush = parseLsn(s.flush_lsn);
    const replay = parseLsn(s.replay_lsn);
    assert(flush >= lsn && replay < lsn, JSON.stringify(s));
    assertEquals(local.lag_bytes.write_to_flush, Number(write - flush));
    assertEquals(local.lag_bytes.flush_to_replay, Number(flush - replay));
    assert(local.lag_bytes.flush_to_replay > 100_000, "3000 rows not applied: apply is off");
    const current = parseLsn(local.source.current_lsn);
    assert(current >= lsn);
    assertEquals(local.lag_bytes.source_to_replay, Number(current - replay));
    assertEquals(local.lag_bytes.source_to_write, current > write ? Number(current - write) : 0);
    assertEquals(local.source.slot.name, name);
    assertEquals(local.source.slot.active, true);
    assert(local.source.slot.retained_bytes > 0, JSON.stringify(local.source.slot));
    const segments = listSegments(spoolDir(dir));
    assert(segments.length > 5, `${segments.length} segments`);
    assertEquals(local.spool.files, segments.length);
    assertEquals(local.spool.first, "0/0");
    assert(local.spool.bytes > 0 && local.spool.bytes <= await spoolBytes(dir));
    assertEquals(local.endpos_reached, false);

    const text = await pgferry(["status", "--dir", dir]);
    assertEquals(text.code, 0, text.stderr);
    assertStringIncludes(text.stdout, `follow    running (pid ${follow.pid})`);
    assertStringIncludes(text.stdout, "apply     off (prefetch), replay_lsn ");
    assertStringIncludes(text.stdout, `spool     ${segments.length} files, `);
    assertStringIncludes(text.stdout, "endpos    0/0 (none)");

    // Over TCP, from a directory of its own: the coordinator's state, no spool.
    const other = await tempDir(`${name}-client`);
    const remote = await status([...tcp, "--dir", other, "--source", source, "--slot-name", name]);
    assertEquals([remote.via, remote.state, remote.pid, remote.spool], [
      "tcp",
      "streaming",
      null,
      null,
    ]);
    assertEquals(remote.sentinel.apply, false);
    assertEquals(remote.sentinel.flush_lsn, s.flush_lsn);
    assertEquals(remote.source.slot.name, name);

    // A second follow on the same directory is refused while this one runs.
    const second = await pgferry([...args, "--resume"]);
    assertEquals(second.code, 1, second.stderr);
    assertStringIncludes(
      second.stderr,
      `Another pgferry process (pid ${follow.pid}) runs the receive stage on`,
    );
    assertEquals((await status(["--dir", dir])).pid, follow.pid, "the refused one changed nothing");

    // Apply on, endpos: the process exits, status says stopped and endpos reached.
    assertEquals((await pgferry(["stream", "sentinel", "set", "apply", ...tcp])).code, 0);
    const endpos = await pgferry([
      "stream",
      "sentinel",
      "set",
      "endpos",
      "--current",
      "--source",
      source,
      ...tcp,
    ]);
    assertEquals(endpos.code, 0, endpos.stderr);
    assertEquals((await follow.exit(60_000)).code, 0);
    const done = await status(["--dir", dir]);
    assertEquals([done.state, done.pid, done.endpos_reached], ["stopped", null, true]);
    assertEquals(done.sentinel.replay_lsn, endpos.stdout.trim());
    assertStringIncludes((await pgferry(["status", "--dir", dir])).stdout, " (reached)");

    // Killed: the pid file stays behind, but nothing holds it.
    assertEquals(
      (await pgferry(["stream", "sentinel", "set", "endpos", "0/0", "--dir", dir])).code,
      0,
    );
    follow = spawnPgferry([...args, "--resume"]);
    await waitFor(async () => (await status(["--dir", dir])).state === "running");
    follow.kill("SIGKILL");
    await follow.output();
    const killed = await status(["--dir", dir]);
    assertEquals([killed.state, killed.pid], ["stopped", follow.pid]);
    assertStringIncludes(
      (await pgferry(["status", "--dir", dir])).stdout,
      `stopped (last pid ${follow.pid})`,
    );
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await pgferry([
      "stream",
      "cleanup",
      "--source",
      source,
      "--target",
      target,
      "--slot-name",
      name,
      "--origin",
      name,
    ]);
  }
});

Deno.test("stream receive and stream apply in two processes on one --dir: status shows each stage's pid", async () => {
  const name = "status_stages";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const common = [
    ...streamArgs(source, target, dir, name),
  ];
  const setup = await pgferry(["stream", "setup", ...common]);
  assertEquals(setup.code, 0, setup.stderr);
  assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
  const receive = spawnPgferry(["stream", "receive", ...common, "--resume"]);
  const apply = spawnPgferry(["stream", "apply", ...common, "--resume"]);
  try {
    await waitFor(async () => {
      const { stages } = await status(["--dir", dir]);
      return stages.receive.running && stages.apply.running;
    });
    const both = await status(["--dir", dir]);
    assertEquals(both.stages, {
      receive: { running: true, pid: receive.pid },
      apply: { running: true, pid: apply.pid },
    });
    const text = await pgferry(["status", "--dir", dir]);
    assertStringIncludes(
      text.stdout,
      `follow    running (receive pid ${receive.pid}, apply pid ${apply.pid})`,
    );
    await psql(source, "insert into hist (delta) select g from generate_series(1, 100) g");
    const set = await setEndposCurrent(source, dir);
    assertEquals(set.code, 0, set.stderr);
    assertEquals((await receive.exit(60_000)).code, 0);
    assertEquals((await apply.exit(60_000)).code, 0);
    const rows = await withSql(
      target,
      async (sql) => Number((await sql`select count(*) as n from hist`)[0]!["n"]),
    );
    assertEquals(rows, 100);
    assertEquals((await status(["--dir", dir])).state, "stopped");
  } finally {
    for (const child of [receive, apply]) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }
    await pgferry(["stream", "cleanup", ...common]);
  }
});

Deno.test("status without a catalog fails with a hint; over TCP without a coordinator it fails, not falls back", async () => {
  const dir = await tempDir("status_none");
  const local = await pgferry(["status", "--dir", dir]);
  assertEquals(local.code, 1);
  assertStringIncludes(local.stderr, "No catalog in");
  assertStringIncludes(local.stderr, "hint:");
  const remote = await pgferry(["status", "--host", "127.0.0.1", "--port", String(freePort())]);
  assertEquals(remote.code, 1);
  assertStringIncludes(remote.stderr, "cannot reach the coordinator");
});
