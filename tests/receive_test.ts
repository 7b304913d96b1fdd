/**
 * `pgferry stream receive` as a separate process against the real source:
 * killed with SIGKILL in the middle of a stream and started again, a torn
 * spool tail, a transaction of a million rows in bounded memory, and the three
 * plugins spooling the same changes. Every check reads the spool back with
 * SpoolReader and compares it with what the source committed.
 */
import postgres from "postgres";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, type Spawned, spawnPgferry } from "./helpers/pgferry.ts";
import type { Change, Tuple, Value } from "../lib/decode/change.ts";
import { formatLsn, parseLsn } from "../lib/lsn.ts";
import { RecordKind } from "../lib/spool/record.ts";
import { RecordFile } from "../lib/spool/record_file.ts";
import { SpoolReader } from "../lib/spool/reader.ts";
import { listSegments, spoolDir } from "../lib/spool/segments.ts";
import { waitFor } from "./helpers/pg.ts";

type Sql = postgres.Sql<Record<string, never>>;

function connect(uri: string): Sql {
  return postgres(uri, { max: 1, onnotice: () => {} }) as unknown as Sql;
}

/** One spooled transaction: its BEGIN, its row changes, its COMMIT. */
interface SpooledTransaction {
  xid: number;
  endLsn: bigint;
  changes: Change[];
}

/** Everything the spool of `dir` holds, as complete transactions in spool order. */
function readSpool(dir: string): SpooledTransaction[] {
  const reader = new SpoolReader(dir);
  const transactions: SpooledTransaction[] = [];
  let open: SpooledTransaction | undefined;
  try {
    for (let record = reader.next(); record !== undefined; record = reader.next()) {
      if (record.kind === RecordKind.Keepalive) {
        assert(open === undefined, `keepalive inside transaction ${open?.xid}`);
        continue;
      }
      const change = record.change;
      if (change.tag === "Begin") {
        assert(open === undefined, `BEGIN ${change.xid} inside transaction ${open?.xid}`);
        assert(record.kind === RecordKind.Begin);
        open = { xid: change.xid, endLsn: record.endLsn, changes: [] };
      } else if (change.tag === "Commit") {
        assert(open !== undefined, "COMMIT outside a transaction");
        assertEquals(change.endLsn, open.endLsn, "BEGIN carries its COMMIT's end LSN");
        transactions.push(open);
        open = undefined;
      } else {
        assert(open !== undefined, `${change.tag} outside a transaction`);
        open.changes.push(change);
      }
    }
  } finally {
    reader.close();
  }
  return transactions;
}

/** A tuple's values by column name. */
function byName(tuple: Tuple): Record<string, Value> {
  return Object.fromEntries(tuple.columns.map((column, i) => [column.name, tuple.values[i]!]));
}

async function currentLsn(sql: Sql): Promise<string> {
  const [row] = await sql`select pg_current_wal_flush_lsn()::text as lsn`;
  return row!["lsn"] as string;
}

function spoolBytes(dir: string): number {
  return listSegments(spoolDir(dir)).reduce((sum, s) => sum + Deno.statSync(s.path).size, 0);
}

async function cleanupSlot(source: string, slot: string): Promise<void> {
  const run = await pgferry(["stream", "cleanup", "--source", source, "--slot-name", slot]);
  assertEquals(run.code, 0, run.stderr);
}

/** `stream receive` arguments for one slot and work directory. */
function receiveArgs(source: string, dir: string, slot: string, extra: string[] = []) {
  return ["stream", "receive", "--source", source, "--dir", dir, "--slot-name", slot, ...extra];
}

/** Creates the slot (and publication) with a first run that stops at once. */
async function setUpSlot(
  sql: Sql,
  source: string,
  dir: string,
  slot: string,
  extra: string[] = [],
) {
  const run = await pgferry(
    receiveArgs(source, dir, slot, [...extra, "--endpos", await currentLsn(sql)]),
  );
  assertEquals(run.code, 0, run.stderr);
}

Deno.test("receive killed with SIGKILL mid-stream and resumed spools every committed change exactly once, in commit order", async () => {
  const { source } = await freshDatabases("receive_kill");
  const slot = "receive_kill";
  const dir = await tempDir("receive-kill");
  const sql = connect(source);
  const args = receiveArgs(source, dir, slot);
  await sql`create table kill_t (
    id bigserial primary key, x xid8 not null default pg_current_xact_id(), v text not null)`;
  let child = spawnPgferry(args);
  let killed = 0;
  let logs = "";
  try {
    await waitFor(
      "the slot",
      async () =>
        (await sql`select 1 from pg_replication_slots where slot_name = ${slot}`).length === 1,
    );

    // One session commits 600 transactions of 1 to 300 rows, and of 2000 rows every tenth
    // (about 200,000 rows); some more roll back. Receive lags behind it.
    let rows = 0;
    let loaded = false;
    const workload = (async () => {
      for (let i = 0; i < 600; i++) {
        const n = i % 10 === 0 ? 2000 : 1 + Math.floor(Math.random() * 300);
        const insert = (tx: Sql) =>
          tx`insert into kill_t (v) select md5(random()::text) || ${i} from generate_series(1, ${n})`;
        if (i % 25 === 7) {
          await sql.begin(async (tx) => {
            await insert(tx as unknown as Sql);
            throw new Error("roll back");
          }).catch(() => {});
        }
        await insert(sql);
        rows += n;
      }
      loaded = true;
    })();

    // Kill the receiver a few times in the middle of the stream, each time once the restarted
    // one has spooled more (it starts with recovering the spool's tail).
    for (; killed < 5; killed++) {
      const before = spoolBytes(dir);
      await waitFor(
        "the spool to grow",
        () => loaded || spoolBytes(dir) > before + 250_000,
        120_000,
      );
      if (loaded && killed > 0) break; // the load is in: kill no more mid-stream
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 300));
      child.kill("SIGKILL");
      logs += (await child.exit(300_000)).stderr;
      child = spawnPgferry([...args, "--resume"]);
    }
    await workload;
    const endpos = await currentLsn(sql);
    child.kill("SIGKILL");
    logs += (await child.exit(300_000)).stderr;
    child = spawnPgferry([...args, "--resume", "--endpos", endpos]);
    const last = await child.exit(300_000);
    assertEquals(last.code, 0, last.stderr);
    logs += last.stderr;
    assert(rows >= 100_000, `only ${rows} rows`);

    const committed = await sql`
      select id::text as id, (x::text::int8 % 4294967296)::text as xid, v from kill_t order by kill_t.id`;
    const spooled = readSpool(dir);
    // Commit order: one session, so ids grow with commits; commit LSNs grow too.
    const inserts: { id: string; xid: string; v: Value }[] = [];
    let previousEnd = 0n;
    const xids = new Set<number>();
    for (const txn of spooled) {
      assert(txn.endLsn > previousEnd, `commit ${formatLsn(txn.endLsn)} out of order`);
      previousEnd = txn.endLsn;
      assert(!xids.has(txn.xid), `transaction ${txn.xid} spooled twice`);
      xids.add(txn.xid);
      for (const change of txn.changes) {
        assert(change.tag === "Insert", `unexpected ${change.tag}`);
        const row = byName(change.new);
        const xid = String(BigInt(row["x"] as string) % 2n ** 32n);
        assertEquals(xid, String(txn.xid), "a row belongs to its transaction");
        inserts.push({ id: row["id"] as string, xid: String(txn.xid), v: row["v"]! });
      }
    }
    // Compared row by row: a failing deepStrictEqual of 100,000s of rows never ends its diff.
    for (let i = 0; i < Math.max(inserts.length, committed.length); i++) {
      const want = committed[i] &&
        { id: committed[i]!["id"], xid: committed[i]!["xid"], v: committed[i]!["v"] };
      assertEquals(inserts[i], want, `row ${i} of ${committed.length} (spooled ${inserts.length})`);
    }
    const cuts = logs.match(/cut \d+ bytes of an unfinished transaction/g)?.length ?? 0;
    console.log(
      `${
        killed + 1
      } kills (${cuts} inside a transaction), ${committed.length} rows in ${spooled.length} transactions spooled once`,
    );
  } finally {
    try {
      child.kill("SIGKILL");
      await child.exit(300_000);
    } catch { /* exited */ }
    await sql.end();
    await cleanupSlot(source, slot);
  }
});

Deno.test("a spool tail torn mid-record is cut back on restart and the slot sends it again", async () => {
  const { source } = await freshDatabases("receive_torn");
  const slot = "receive_torn";
  const dir = await tempDir("receive-torn");
  const sql = connect(source);
  await sql`create table torn_t (id int primary key, v text)`;
  const insert = (from: number, rows: number) =>
    sql`insert into torn_t select g, md5(g::text) from generate_series(${from}::int, ${
      from + rows - 1
    }::int) g`;
  try {
    await setUpSlot(sql, source, dir, slot);
    for (let i = 0; i < 20; i++) await insert(1 + i * 100, 100);
    const endpos1 = await currentLsn(sql);
    for (let i = 0; i < 60; i++) await insert(100_001 + i * 3000, 3000);
    const endpos2 = await currentLsn(sql);

    // A clean run stops at endpos1, before the end: everything it spooled is confirmed.
    const first = await pgferry(receiveArgs(source, dir, slot, ["--resume", "--endpos", endpos1]));
    assertEquals(first.code, 0, first.stderr);
    assertEquals(readSpool(dir).length, 20);

    // The next run writes past what it has confirmed to the slot (its flush position moves
    // once a second, after fsync) until the process dies. A torn tail can only be there.
    const segment = () => listSegments(spoolDir(dir)).at(-1)!.path;
    let tail: { at: number; length: number }[] = [];
    for (let attempt = 0; attempt < 5 && tail.length < 10; attempt++) {
      const child = spawnPgferry(receiveArgs(source, dir, slot, ["--resume", "--endpos", endpos2]));
      const size = Deno.statSync(segment()).size;
      await waitFor("the spool to grow", () => Deno.statSync(segment()).size > size + 3_000_000);
      try {
        child.kill("SIGKILL");
      } catch { /* it got to endpos2 first: try again */ }
      await child.exit(300_000);
      const [row] = await sql`
        select confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = ${slot}`;
      tail = unconfirmedRecords(segment(), parseLsn(row!["lsn"] as string));
    }
    assert(tail.length >= 10, "the killed run left records the slot has not confirmed");
    const victim = tail[Math.floor(tail.length / 2)]!;
    await Deno.truncate(segment(), victim.at + Math.floor(victim.length / 2));
    console.log(`cut record ${Math.floor(tail.length / 2)} of ${tail.length} unconfirmed in half`);

    const last = await pgferry(receiveArgs(source, dir, slot, ["--resume", "--endpos", endpos2]));
    assertEquals(last.code, 0, last.stderr);
    assertStringIncludes(last.stderr, "bytes of an unfinished transaction off the spool's tail");
    const ids = readSpool(dir).flatMap((t) =>
      t.changes.map((c) => (c.tag === "Insert" ? Number(byName(c.new)["id"]) : -1))
    );
    const committed = await sql`select id from torn_t order by id`;
    assertEquals(ids.length, committed.length);
    assertEquals(ids, committed.map((r) => r["id"] as number));
  } finally {
    await sql.end();
    await cleanupSlot(source, slot);
  }
});

/**
 * The records of a segment that come after `confirmed`: from the first BEGIN of a
 * transaction that is unfinished or ends past it.
 */
function unconfirmedRecords(path: string, confirmed: bigint): { at: number; length: number }[] {
  const file = new RecordFile(path);
  const records: { at: number; length: number }[] = [];
  let past = false;
  try {
    for (let next = file.peekHeader(); next !== undefined; next = file.peekHeader()) {
      const { kind, endLsn } = next.header;
      if (kind === RecordKind.Begin && (endLsn === 0n || endLsn > confirmed)) past = true;
      if (past) records.push({ at: file.offset, length: next.length });
      file.offset += next.length;
    }
  } finally {
    file.close();
  }
  return records;
}

Deno.test("receive refuses to resume when the spool lost transactions the slot already confirmed", async () => {
  const { source } = await freshDatabases("receive_gap");
  const slot = "receive_gap";
  const dir = await tempDir("receive-gap");
  const sql = connect(source);
  await sql`create table gap_t (id int primary key)`;
  try {
    await setUpSlot(sql, source, dir, slot);
    for (let i = 1; i <= 10; i++) await sql`insert into gap_t values (${i})`;
    const endpos = await currentLsn(sql);
    const first = await pgferry(receiveArgs(source, dir, slot, ["--resume", "--endpos", endpos]));
    assertEquals(first.code, 0, first.stderr);
    assertEquals(readSpool(dir).length, 10);
    // Lose the last, confirmed, transactions: the slot will not send them again.
    const segment = listSegments(spoolDir(dir)).at(-1)!;
    await Deno.truncate(segment.path, Math.floor(Deno.statSync(segment.path).size / 2));
    await sql`insert into gap_t values (11)`;
    const again = await pgferry(
      receiveArgs(source, dir, slot, ["--resume", "--endpos", await currentLsn(sql)]),
    );
    assertEquals(again.code, 1, again.stderr);
    assertStringIncludes(again.stderr, "not in the spool");
  } finally {
    await sql.end();
    await cleanupSlot(source, slot);
  }
});

/** Peak resident set (VmHWM, kB) of a running child, polled until it exits. */
async function peakRssKb(child: Spawned): Promise<{ peakKb: number; code: number }> {
  let peakKb = 0;
  let exited = false;
  child.status.then(() => exited = true);
  while (!exited) {
    try {
      const text = await Deno.readTextFile(`/proc/${child.pid}/status`);
      const kb = Number(/VmHWM:\s+(\d+) kB/.exec(text)?.[1] ?? 0);
      if (kb > peakKb) peakKb = kb;
    } catch { /* gone */ }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { peakKb, code: (await child.output()).code };
}

Deno.test("a transaction of 1,000,000 rows passes through receive with peak RSS no larger than for 100,000", async () => {
  const { source } = await freshDatabases("receive_rss");
  const sql = connect(source);
  await sql`create table rss_t (id bigserial primary key, n int, v text)`;
  const peaks: Record<number, number> = {};
  try {
    for (const rows of [100_000, 1_000_000]) {
      const slot = `receive_rss_${rows}`;
      const dir = await tempDir(`receive-rss-${rows}`);
      try {
        await setUpSlot(sql, source, dir, slot);
        await sql`insert into rss_t (n, v) select g, repeat('v', 40) || g from generate_series(1, ${rows}) g`;
        const endpos = await currentLsn(sql);
        const child = spawnPgferry(
          receiveArgs(source, dir, slot, ["--resume", "--endpos", endpos]),
        );
        const { peakKb, code } = await peakRssKb(child);
        assertEquals(code, 0);
        peaks[rows] = peakKb;
        // The whole transaction is in the spool, in one piece.
        const file = new RecordFile(listSegments(spoolDir(dir)).at(-1)!.path);
        let changes = 0;
        let commits = 0;
        for (let next = file.peekHeader(); next !== undefined; next = file.peekHeader()) {
          if (next.header.kind === RecordKind.Change) changes++;
          if (next.header.kind === RecordKind.Commit) commits++;
          file.offset += next.length;
        }
        file.close();
        assertEquals({ changes, commits }, { changes: rows, commits: 1 });
      } finally {
        await cleanupSlot(source, slot);
      }
    }
  } finally {
    await sql.end();
  }
  const small = peaks[100_000]!;
  const large = peaks[1_000_000]!;
  console.log(
    `peak RSS: 100,000 rows ${Math.round(small / 1024)} MB, 1,000,000 rows ${
      Math.round(large / 1024)
    } MB`,
  );
  assert(large < small * 1.5, `peak RSS grew with the transaction: ${small} kB → ${large} kB`);
  assert(large < 300 * 1024, `peak RSS ${large} kB is over 300 MB`);
});

/** What must be equal whichever plugin decoded the stream. */
function comparable(transactions: SpooledTransaction[]): unknown[] {
  const tuple = (t: Tuple | null) => (t === null ? null : byName(t));
  return transactions.map((txn) => ({
    xid: txn.xid,
    endLsn: formatLsn(txn.endLsn),
    changes: txn.changes.map((c) => {
      switch (c.tag) {
        case "Insert":
          return { tag: c.tag, lsn: formatLsn(c.lsn), relation: c.relation, new: tuple(c.new) };
        case "Update":
          return {
            tag: c.tag,
            lsn: formatLsn(c.lsn),
            relation: c.relation,
            old: c.old && { kind: c.old.kind, ...tuple(c.old) },
            new: tuple(c.new),
          };
        case "Delete":
          return {
            tag: c.tag,
            lsn: formatLsn(c.lsn),
            relation: c.relation,
            old: c.old && { kind: c.old.kind, ...tuple(c.old) },
          };
        case "Truncate":
          return { tag: c.tag, lsn: formatLsn(c.lsn), relations: c.relations };
        default:
          throw new TypeError(`Unexpected ${c.tag} inside a transaction`);
      }
    }),
  }));
}

Deno.test("pgoutput, test_decoding and wal2json spool the same changes through receive", async () => {
  const { source } = await freshDatabases("receive_plugins");
  const sql = connect(source);
  const plugins = ["pgoutput", "test_decoding", "wal2json"];
  const dirs: Record<string, string> = {};
  await sql.unsafe(`
    create table plug_t (id int primary key, t text, n numeric, j jsonb, a int[], at timestamptz);
    create table plug_full (k text, v float8);
    alter table plug_full replica identity full;`);
  try {
    for (const plugin of plugins) {
      dirs[plugin] = await tempDir(`receive-${plugin}`);
      await setUpSlot(sql, source, dirs[plugin]!, `receive_${plugin}`, ["--plugin", plugin]);
    }
    await sql`insert into plug_t select g, 'it''s "' || g || E'"\\n\\\\', g / 3.0, '{"k": [1, null]}',
                                          array[g, null], '2024-02-29 12:00:00.123456+02'
                                     from generate_series(1, 50) g`;
    await sql`insert into plug_t values (0, null, null, 'null', '{}', null)`;
    await sql`insert into plug_full values ('a', 0.1), ('b', 1e308), ('c', null)`;
    await sql.begin(async (tx) => {
      await tx`update plug_t set t = 'null', n = n * 2 where id % 7 = 0`;
      await tx`update plug_t set id = id + 1000 where id = 3`;
      await tx`delete from plug_t where id between 10 and 14`;
      await tx`update plug_full set v = -0.0 where k = 'a'`;
      await tx`delete from plug_full where k = 'b'`;
    });
    await sql`truncate plug_full`;
    const endpos = await currentLsn(sql);
    const spools: Record<string, unknown[]> = {};
    for (const plugin of plugins) {
      const run = await pgferry(receiveArgs(source, dirs[plugin]!, `receive_${plugin}`, [
        "--plugin",
        plugin,
        "--resume",
        "--endpos",
        endpos,
      ]));
      assertEquals(run.code, 0, run.stderr);
      spools[plugin] = comparable(readSpool(dirs[plugin]!));
    }
    assertEquals(spools["pgoutput"]!.length, 5);
    assertEquals(spools["test_decoding"], spools["pgoutput"]);
    assertEquals(spools["wal2json"], spools["pgoutput"]);
  } finally {
    await sql.end();
    for (const plugin of plugins) await cleanupSlot(source, `receive_${plugin}`);
  }
});
