/**
 * Spool retention: pruneSpool on a spool written by the real writer, then on a
 * live follow with tiny segments under load — apply off and on, automatic,
 * by `stream prune` in the directory and over TCP (CLEANUP), and with the
 * follow process killed at random moments while it prunes.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { freePort, freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { assertSameData, withSql } from "./helpers/tables.ts";
import { SpoolWriter } from "../lib/spool/writer.ts";
import { SpoolReader } from "../lib/spool/reader.ts";
import { RecordKind, type SpoolRecord } from "../lib/spool/record.ts";
import { listSegments, spoolDir } from "../lib/spool/segments.ts";
import { pruneSpool } from "../lib/spool/prune.ts";
import type { Change, Column } from "../lib/decode/change.ts";
import { parseLsn } from "../lib/lsn.ts";
import {
  cleanupStream,
  psql,
  setEndposCurrent,
  sourceLsn,
  streamArgs,
  waitFor,
} from "./helpers/pg.ts";

// ---------------------------------------------------------------------------
// pruneSpool on a spool made by SpoolWriter

const columns: Column[] = [
  { name: "id", typeOid: 23, typeName: "integer", key: true },
  { name: "v", typeOid: 25, typeName: "text", key: false },
];

/** Transaction `n`: BEGIN, `rows` inserts, COMMIT ending at (n + 1) * 0x1000. */
function txn(n: number, rows = 3): Change[] {
  const base = BigInt(n) * 0x1000n;
  const out: Change[] = [{ tag: "Begin", lsn: base + 1n, xid: 700 + n }];
  for (let r = 0; r < rows; r++) {
    out.push({
      tag: "Insert",
      lsn: base + 2n + BigInt(r),
      relation: { schema: "public", table: "t" },
      new: { columns, values: [String(n * 1000 + r), "x".repeat(200)] },
    });
  }
  out.push({
    tag: "Commit",
    lsn: base + 0x1000n,
    endLsn: base + 0x1000n,
    commitTime: 1234n + BigInt(n),
  });
  return out;
}

function commitsAfter(reader: SpoolReader): bigint[] {
  const out: bigint[] = [];
  for (let r: SpoolRecord | undefined = reader.next(); r !== undefined; r = reader.next()) {
    if (r.kind === RecordKind.Commit && r.change.tag === "Commit") out.push(r.change.endLsn);
  }
  return out;
}

async function spoolOf(transactions: number, segmentSize = 1500): Promise<string> {
  const dir = await tempDir("prune-unit");
  const writer = SpoolWriter.open(dir, { segmentSize });
  for (let n = 0; n < transactions; n++) for (const c of txn(n)) writer.append(c);
  writer.close();
  return dir;
}

Deno.test("pruneSpool() keeps every transaction ending after replay_lsn, at every replay_lsn, and never the last segment", async () => {
  const dir = await spoolOf(30);
  const total = listSegments(spoolDir(dir)).length;
  assert(total >= 10, `${total} segments`);
  for (let r = 0n; r <= 0x20000n; r += 0x800n) {
    const before = listSegments(spoolDir(dir));
    const pruned = await pruneSpool(dir, r);
    const after = listSegments(spoolDir(dir));
    assertEquals(pruned.safeLsn, r);
    assertEquals(Number(pruned.filesDeleted), before.length - after.length);
    assert(after.length >= 1, "the segment being written is kept");
    assert(after[0]!.after <= r || after[0]!.after === before[0]!.after, "a suffix is kept");
    // Apply restarting at r finds every transaction that ends after r.
    const reader = new SpoolReader(dir);
    reader.seek(r);
    const ends = commitsAfter(reader).filter((end) => end > r);
    reader.close();
    const expected = Array.from({ length: 30 }, (_, n) => BigInt(n + 1) * 0x1000n)
      .filter((end) => end > r);
    assertEquals(ends, expected, `after pruning at ${r.toString(16)}`);
  }
  assertEquals(listSegments(spoolDir(dir)).length, 1, "past the last commit, one segment is left");
});

Deno.test("pruneSpool() boundaries: a segment goes only once the next one's name is ≤ replay_lsn; --dry-run deletes nothing", async () => {
  const dir = await spoolOf(12);
  const segments = listSegments(spoolDir(dir));
  const second = segments[1]!.after;
  const dry = await pruneSpool(dir, second, { dryRun: true });
  assertEquals(dry.files, [segments[0]!.name]);
  assert(dry.bytesFreed > 0n);
  assertEquals(listSegments(spoolDir(dir)).length, segments.length, "a dry run deletes nothing");
  assertEquals((await pruneSpool(dir, second - 1n)).filesDeleted, 0n);
  const real = await pruneSpool(dir, second);
  assertEquals([real.files, real.bytesFreed], [dry.files, dry.bytesFreed]);
});

Deno.test("pruneSpool() under a live reader and writer, and two pruners at once", async () => {
  const dir = await tempDir("prune-live");
  const writer = SpoolWriter.open(dir, { segmentSize: 1500 });
  const reader = new SpoolReader(dir);
  const seen: bigint[] = [];
  let n = 0;
  for (let round = 0; round < 10; round++) {
    for (let k = 0; k < 4; k++, n++) for (const c of txn(n)) writer.append(c);
    writer.flush();
    seen.push(...commitsAfter(reader)); // the reader holds its current segment open
    const replay = seen.at(-1)!;
    const [a, b] = await Promise.all([pruneSpool(dir, replay), pruneSpool(dir, replay)]);
    assert(a.filesDeleted + b.filesDeleted <= BigInt(listSegments(spoolDir(dir)).length + 40));
  }
  writer.close();
  assertEquals(seen, Array.from({ length: n }, (_, i) => BigInt(i + 1) * 0x1000n));
  // The writer reopens on what is left and carries on.
  const again = SpoolWriter.open(dir, { segmentSize: 1500 });
  assertEquals(again.lastCommit, BigInt(n) * 0x1000n);
  for (const c of txn(n)) again.append(c);
  again.close();
  assertEquals(commitsAfter(reader), [BigInt(n + 1) * 0x1000n]);
  reader.close();
});

// ---------------------------------------------------------------------------
// A live follow

const SCHEMA = `
create table acc (id integer primary key, v bigint not null, note text);
create table hist (id bigserial, acc integer, delta integer, at timestamptz default now());
`;
const WORKLOAD = `
\\set id random(1, 2000)
\\set d random(-5, 5)
begin;
insert into acc (id, v) values (:id, :d) on conflict (id) do update set v = acc.v + excluded.v;
insert into hist (acc, delta) values (:id, :d);
commit;
`;

/** pgbench with the workload: `-t` transactions per client, or `-T` seconds. */
async function pgbench(uri: string, dir: string, limit: string[]): Promise<void> {
  const script = `${dir}.pgbench`;
  await Deno.writeTextFile(script, WORKLOAD);
  const out = await new Deno.Command("/usr/lib/postgresql/15/bin/pgbench", {
    args: ["-n", "-c", "2", ...limit, "-f", script, uri],
    stdout: "null",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
}

interface Positions {
  write: bigint;
  flush: bigint;
  replay: bigint;
}

async function positions(where: string[]): Promise<Positions> {
  const got = await pgferry(["stream", "sentinel", "get", "--json", ...where]);
  assertEquals(got.code, 0, got.stderr);
  const s = JSON.parse(got.stdout);
  return {
    write: parseLsn(s.write_lsn),
    flush: parseLsn(s.flush_lsn),
    replay: parseLsn(s.replay_lsn),
  };
}

/** The spool's first segment: the writer starts one after 0/0. */
const INITIAL = "0000000000000000.spool";

/**
 * The invariant, checked from outside: the oldest segment left is the first
 * one ever written or starts at or before replay_lsn (read after listing), so
 * every transaction ending after replay_lsn is still there.
 */
async function assertNothingUnappliedPruned(dir: string): Promise<void> {
  const segments = listSegments(spoolDir(dir));
  const { replay } = await positions(["--dir", dir]);
  const first = segments[0];
  if (first === undefined) return;
  assert(
    first.name === INITIAL || first.after <= replay,
    `the oldest segment left, ${first.name}, starts after replay_lsn ${replay.toString(16)}`,
  );
}

function followArgs(name: string, source: string, target: string, dir: string): string[] {
  return [
    "follow",
    ...streamArgs(source, target, dir, name),
    "--spool-segment-size",
    "4096",
  ];
}

function countRows(uri: string): Promise<number> {
  return withSql(uri, async (sql) => Number((await sql`select count(*) as n from hist`)[0]!["n"]));
}

Deno.test("prune with apply off deletes nothing unapplied; with apply on it frees applied segments as apply goes; spool and slot size warnings; the target equals the source", async () => {
  const name = "prune_apply";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const port = freePort();
  const tcp = ["--host", "127.0.0.1", "--port", String(port)];
  const follow = spawnPgferry([
    ...followArgs(name, source, target, dir),
    "--prune-interval",
    "1",
    "--spool-warn-size",
    "16KiB",
    "--slot-warn-size",
    "1",
    "--port",
    String(port),
  ]);
  try {
    assertEquals((await pgferry(["stream", "sentinel", "ping", ...tcp, "--wait", "30"])).code, 0);
    assertEquals((await pgferry(["stream", "sentinel", "set", "prefetch", ...tcp])).code, 0);
    await new Promise((resolve) => setTimeout(resolve, 500)); // apply sees it within its poll
    await pgbench(source, dir, ["-t", "300"]);
    const received = parseLsn(await sourceLsn(source));
    await waitFor(async () => (await positions(["--dir", dir])).flush >= received);
    const spooled = listSegments(spoolDir(dir));
    assert(spooled.length > 20, `${spooled.length} segments`);
    const held = await positions(["--dir", dir]);
    // Apply off: automatic pruning, a local prune and CLEANUP over TCP all keep every segment
    // that holds a transaction ending after replay_lsn.
    await new Promise((resolve) => setTimeout(resolve, 2500)); // two automatic rounds
    const local = await pgferry(["stream", "prune", "--dir", dir, "--json"]);
    assertEquals(local.code, 0, local.stderr);
    const remote = await pgferry(["stream", "prune", ...tcp, "--json"]);
    assertEquals(remote.code, 0, remote.stderr);
    const unapplied = spooled.filter((_, i) =>
      i + 1 === spooled.length || spooled[i + 1]!.after > held.replay
    );
    for (const segment of unapplied) {
      assert(
        listSegments(spoolDir(dir)).some((s) => s.name === segment.name),
        `${segment.name} holds changes after replay_lsn and must stay`,
      );
    }
    await assertNothingUnappliedPruned(dir);
    const applied = spooled.filter((_, i) =>
      i + 1 < spooled.length && spooled[i + 1]!.after <= held.replay
    );
    assertEquals(
      listSegments(spoolDir(dir)).length,
      spooled.length - applied.length,
      "only segments that end at or before replay_lsn are pruned",
    );
    assertEquals(await countRows(target), 0, "nothing applied while apply is off");

    // Apply on, with load still coming: pruning runs beside the reader.
    assertEquals((await pgferry(["stream", "sentinel", "set", "apply", ...tcp])).code, 0);
    const load = pgbench(source, dir, ["-T", "8"]);
    for (let i = 0; i < 10; i++) {
      await assertNothingUnappliedPruned(dir);
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    await load;
    const end = await sourceLsn(source);
    await waitFor(async () => (await positions(["--dir", dir])).replay >= parseLsn(end));
    await new Promise((resolve) => setTimeout(resolve, 1500)); // one more automatic round
    const left = listSegments(spoolDir(dir));
    assert(left.length <= 2, `applied segments are pruned: ${left.length} left`);
    assertEquals(
      (await pgferry([
        "stream",
        "sentinel",
        "set",
        "endpos",
        "--current",
        "--source",
        source,
        ...tcp,
      ]))
        .code,
      0,
    );
    const { code, stderr } = await follow.exit(60_000);
    assertEquals(code, 0, stderr);
    assert(stderr.includes("pruned"), "the follow process logs what it pruned");
    assertMatch(stderr, /WARN .*the spool holds \d+ bytes in \d+ files, more than 16384/);
    assertMatch(stderr, new RegExp(`WARN .*slot "${name}" retains \\d+ bytes of WAL`));
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, ["public"]);
});

Deno.test("stream prune over TCP (CLEANUP): --dry-run deletes nothing and says what a real run then frees", async () => {
  const name = "prune_tcp";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const port = freePort();
  const tcp = ["--host", "127.0.0.1", "--port", String(port)];
  const follow = spawnPgferry([
    ...followArgs(name, source, target, dir),
    "--prune-interval",
    "0",
    "--port",
    String(port),
  ]);
  try {
    assertEquals((await pgferry(["stream", "sentinel", "ping", ...tcp, "--wait", "30"])).code, 0);
    await pgbench(source, dir, ["-t", "150"]);
    const end = parseLsn(await sourceLsn(source));
    await waitFor(async () => (await positions(["--dir", dir])).replay >= end);
    const before = listSegments(spoolDir(dir));
    assert(before.length > 10, `${before.length} segments`);
    const other = await tempDir(`${name}-client`); // the client never sees the follow's --dir
    const dry = await pgferry(["stream", "prune", "--dry-run", "--json", "--dir", other, ...tcp]);
    assertEquals(dry.code, 0, dry.stderr);
    const dryResult = JSON.parse(dry.stdout);
    assertEquals(dryResult.dry_run, true);
    assert(dryResult.files_deleted >= before.length - 2, dry.stdout);
    assertEquals(listSegments(spoolDir(dir)).length, before.length, "a dry run deletes nothing");
    const text = await pgferry(["stream", "prune", "--dry-run", ...tcp]);
    assertEquals(text.code, 0, text.stderr);
    assert(text.stdout.includes(`would free ${dryResult.bytes_freed} bytes in`), text.stdout);

    const real = await pgferry(["stream", "prune", "--json", "--dir", other, ...tcp]);
    assertEquals(real.code, 0, real.stderr);
    const realResult = JSON.parse(real.stdout);
    assertEquals(
      [realResult.files_deleted, realResult.bytes_freed],
      [dryResult.files_deleted, dryResult.bytes_freed],
    );
    const after = listSegments(spoolDir(dir));
    assertEquals(after.length, before.length - dryResult.files_deleted);
    assertEquals(after.at(-1)!.name, before.at(-1)!.name, "the segment being written stays");
    const again = JSON.parse((await pgferry(["stream", "prune", "--json", ...tcp])).stdout);
    assertEquals(again.files_deleted, 0);

    // The pipeline carries on over the pruned spool.
    await pgbench(source, dir, ["-t", "50"]);
    assertEquals(
      (await pgferry([
        "stream",
        "sentinel",
        "set",
        "endpos",
        "--current",
        "--source",
        source,
        ...tcp,
      ]))
        .code,
      0,
    );
    const { code, stderr } = await follow.exit(60_000);
    assertEquals(code, 0, stderr);
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, ["public"]);
});

Deno.test("the follow process killed at random moments while it prunes, then resumed: the target equals the source", async () => {
  const name = "prune_kill";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const args = [...followArgs(name, source, target, dir), "--prune-interval", "1"];
  // A spool of many small segments, received with apply off, so that apply and
  // pruning then have a lot to get through when the kills come.
  const setup = await pgferry([
    "stream",
    "setup",
    ...streamArgs(source, target, dir, name),
  ]);
  assertEquals(setup.code, 0, setup.stderr);
  let follow = spawnPgferry([...args, "--resume"]);
  const logs: string[] = [];
  try {
    await pgbench(source, dir, ["-t", "1500"]);
    const received = parseLsn(await sourceLsn(source));
    await waitFor(async () => (await positions(["--dir", dir])).flush >= received);
    assert(listSegments(spoolDir(dir)).length > 100, "many segments to prune");
    assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
    const load = pgbench(source, dir, ["-T", "15"]);
    for (let kill = 0; kill < 8; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 700 + Math.random() * 1500));
      follow.kill("SIGKILL");
      logs.push((await follow.output()).stderr);
      follow = spawnPgferry([...args, "--resume"]);
    }
    await load;
    assertEquals(
      (await setEndposCurrent(source, dir))
        .code,
      0,
    );
    const { code, stderr } = await follow.exit(120_000);
    assertEquals(code, 0, stderr);
    logs.push(stderr);
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await cleanupStream(source, target, name);
  }
  assert(logs.some((log) => log.includes("pruned")), "pruning happened between the kills");
  assert((await countRows(source)) > 3000);
  await assertSameData(source, target, ["public"]);
});
