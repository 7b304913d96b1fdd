/**
 * `pgferry snapshot [--follow]` as an operator runs it: a separate process that
 * prints a snapshot id, records it in the catalog and holds it until SIGTERM,
 * while other sessions import it with SET TRANSACTION SNAPSHOT.
 */
import postgres from "postgres";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import { freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, type Spawned, spawnPgferry } from "./helpers/pgferry.ts";
import { SpoolReader } from "../lib/spool/reader.ts";

/** Reads the child's stdout up to its first line; the rest of the output is kept for later. */
async function firstLine(child: Spawned, timeoutMs = 30_000) {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    clearTimeout(timer);
  }
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += value;
    }
  })();
  return { line: text.split("\n")[0]!, rest };
}

/** Sends SIGTERM and returns the exit code and stderr. */
async function terminate(child: Spawned, stdout: Promise<string>) {
  child.kill("SIGTERM");
  const [{ code, stderr }] = await Promise.all([child.exit(60_000), stdout]);
  return { code, stderr };
}

function recordedSnapshot(dir: string): Record<string, unknown> {
  const db = new DatabaseSync(join(dir, "catalog.db"), { readOnly: true });
  try {
    return db.prepare("select * from setup where id = 1").get() as Record<string, unknown>;
  } finally {
    db.close();
  }
}

/** Counts the table's rows as of `snapshot`, from a session of its own. */
async function countInSnapshot(uri: string, snapshot: string): Promise<number> {
  const sql = postgres(uri, { max: 1, onnotice: () => {} });
  try {
    return await sql.begin("isolation level repeatable read", async (tx) => {
      await tx.unsafe(`set transaction snapshot '${snapshot}'`);
      const [row] = await tx`select count(*)::int as n from snap_t`;
      return row!["n"] as number;
    });
  } finally {
    await sql.end();
  }
}

Deno.test("snapshot prints an id that other sessions import until SIGTERM, then exits 0", async () => {
  const { source } = await freshDatabases("snapshot_plain");
  const sql = postgres(source, { max: 1, onnotice: () => {} });
  const dir = await tempDir("snapshot-plain");
  try {
    await sql`create table snap_t (id int primary key)`;
    await sql`insert into snap_t select generate_series(1, 3)`;
    const child = spawnPgferry(["snapshot", "--source", source, "--dir", dir]);
    const { line: snapshot, rest } = await firstLine(child);
    assertMatch(snapshot, /^[0-9A-F]+-[0-9A-F]+-[0-9]+$/);
    await sql`insert into snap_t values (4)`;
    // Twice, a while apart: the snapshot stays held, and it does not see row 4.
    assertEquals(await countInSnapshot(source, snapshot), 3);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assertEquals(await countInSnapshot(source, snapshot), 3);
    assertEquals(recordedSnapshot(dir)["snapshot"], snapshot);

    const { code, stderr } = await terminate(child, rest);
    assertEquals(code, 0, stderr);
    await assertRejects(() => countInSnapshot(source, snapshot), Error, "invalid snapshot");
  } finally {
    await sql.end();
  }
});

Deno.test("snapshot --follow holds the slot's snapshot, and stream receive in that dir continues from it", async () => {
  const { source } = await freshDatabases("snapshot_follow");
  const slot = "snapshot_follow";
  const sql = postgres(source, { max: 1, onnotice: () => {} });
  const dir = await tempDir("snapshot-follow");
  await sql`create table snap_t (id int primary key)`;
  await sql`insert into snap_t select generate_series(1, 3)`;
  const child = spawnPgferry([
    "snapshot",
    "--follow",
    "--source",
    source,
    "--dir",
    dir,
    "--slot-name",
    slot,
  ]);
  try {
    const { line: snapshot, rest } = await firstLine(child);
    assertMatch(snapshot, /^[0-9A-F]+-[0-9A-F]+-[0-9]+$/);
    await sql`insert into snap_t select generate_series(4, 10)`;
    assertEquals(await countInSnapshot(source, snapshot), 3);
    const recorded = recordedSnapshot(dir);
    assertEquals(recorded["snapshot"], snapshot);
    assertEquals(recorded["slot_name"], slot);
    const [made] = await sql`
      select plugin, confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = ${slot}`;
    assertEquals(made?.["plugin"], "pgoutput");
    assertEquals(recorded["consistent_point"], made?.["lsn"]);

    // What the snapshot does not see is exactly what the slot streams: rows 4 to 10.
    const [{ lsn: endpos }] = await sql`select pg_current_wal_flush_lsn()::text as lsn` as [
      { lsn: string },
    ];
    const receive = await pgferry([
      "stream",
      "receive",
      "--source",
      source,
      "--dir",
      dir,
      "--slot-name",
      slot,
      "--endpos",
      endpos,
    ]);
    assertEquals(receive.code, 0, receive.stderr);
    const ids: number[] = [];
    const reader = new SpoolReader(dir);
    for (let record = reader.next(); record !== undefined; record = reader.next()) {
      if ("change" in record && record.change.tag === "Insert") {
        ids.push(Number(record.change.new.values[0]));
      }
    }
    reader.close();
    assertEquals(ids, [4, 5, 6, 7, 8, 9, 10]);

    const { code, stderr } = await terminate(child, rest);
    assertEquals(code, 0, stderr);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await sql.end();
    const cleanup = await pgferry(["stream", "cleanup", "--source", source, "--slot-name", slot]);
    assert(cleanup.code === 0, cleanup.stderr);
  }
});
