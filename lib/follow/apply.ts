/**
 * Apply: reads complete transactions from the spool and applies them to the
 * target, exactly once.
 *
 * One target session with the replication origin set up. The restart point is
 * `pg_replication_origin_progress(origin, true)`: every transaction that ends
 * at or before it is skipped. Each applied transaction calls
 * `pg_replication_origin_xact_setup(end_lsn, commit_time)` before COMMIT, so
 * the origin's progress moves atomically with the data.
 *
 * Endpos: every transaction ending at or before endpos is applied, none after
 * it. replay_lsn only ever names a position reached: the end of an applied
 * transaction, or a spooled keepalive with nothing unapplied before it.
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel, updateSentinel } from "../catalog/sentinel_store.ts";
import type { Change } from "../decode/change.ts";
import { formatPgTimestamp } from "../decode/pg_timestamp.ts";
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { RecordKind } from "../spool/record.ts";
import { SpoolReader } from "../spool/reader.ts";
import { deleteSql, insertSql, type Statement, truncateSql, updateSql } from "./sql.ts";
import { quoteLiteral } from "../pg/quote.ts";
import { TargetTables } from "./target_tables.ts";
import { logger } from "../log.ts";

const log = logger("apply");

export interface ApplyOptions {
  dir: string;
  catalog: Catalog;
  target: string;
  origin: string;
  signal?: AbortSignal;
  /** Bytes of SQL sent in one round trip (default 256 KiB). */
  batchBytes?: number;
}

/** How apply ended. */
export type ApplyEnd = "endpos" | "aborted";

const POLL_SENTINEL_MS = 200;
const REPORT_MS = 1000;

/**
 * Sets up the origin session. The client has one connection (max 1), so this
 * session state holds for every later statement; should the connection drop,
 * the next statement fails and the stage restarts from the origin's progress.
 */
async function originSession(sql: Sql, origin: string): Promise<void> {
  await sql`select pg_replication_origin_session_setup(${origin})`;
  await sql.unsafe(
    "set session_replication_role = replica; set synchronous_commit = off; set standard_conforming_strings = on",
  ).simple();
}

/** Runs apply until endpos is reached or the signal aborts. */
export async function runApply(options: ApplyOptions): Promise<ApplyEnd> {
  const { catalog, signal } = options;
  const batchBytes = options.batchBytes ?? 256 * 1024;
  const sql = connect(options.target, { role: "target" });
  const reader = new SpoolReader(options.dir);
  try {
    await originSession(sql, options.origin);
    const conn = sql;
    const tables = new TargetTables(sql);
    const [row] =
      await conn`select pg_replication_origin_progress(${options.origin}, true)::text as lsn`;
    const progress: Lsn = row?.["lsn"] ? parseLsn(row["lsn"] as string) : 0n;
    let sentinel = readSentinel(catalog.db);
    let replayed = progress > sentinel.replayLsn ? progress : sentinel.replayLsn;
    let reported = sentinel.replayLsn;
    let lastPoll = Date.now();
    let lastReport = 0;
    log.info(`origin "${options.origin}" progress ${formatLsn(progress)}`);
    reader.seek(progress);

    const report = async (force = false) => {
      if (replayed === reported || (!force && Date.now() - lastReport < REPORT_MS)) return;
      await updateSentinel(catalog, { replayLsn: replayed });
      reported = replayed;
      lastReport = Date.now();
    };
    const reachedEndpos = () => sentinel.endpos !== 0n && replayed >= sentinel.endpos;

    let idle = 0;
    while (!signal?.aborted) {
      if (Date.now() - lastPoll >= POLL_SENTINEL_MS) {
        sentinel = readSentinel(catalog.db);
        lastPoll = Date.now();
      }
      if (reachedEndpos()) break;
      await report();
      if (!sentinel.apply) {
        await sleep(50, signal);
        continue;
      }
      const record = reader.next();
      if (record === undefined) {
        idle = Math.min(idle + 1, 10);
        await report(true);
        await sleep(idle * 5, signal);
        continue;
      }
      idle = 0;
      if (record.kind === RecordKind.Keepalive) {
        const reach = sentinel.endpos !== 0n && record.lsn > sentinel.endpos
          ? sentinel.endpos
          : record.lsn;
        if (reach > replayed) replayed = reach;
        continue;
      }
      if (record.kind !== RecordKind.Begin) {
        throw new RangeError(
          `Spool out of step: ${record.change.tag} at ${
            formatLsn(record.lsn)
          } outside a transaction`,
        );
      }
      const end = record.endLsn;
      if (sentinel.endpos !== 0n && end > sentinel.endpos) {
        // The first transaction past endpos: everything up to endpos is applied.
        replayed = sentinel.endpos > replayed ? sentinel.endpos : replayed;
        break;
      }
      if (end <= progress) {
        skipTransaction(reader);
        continue;
      }
      await applyTransaction(
        conn as unknown as Sql,
        tables,
        reader,
        end,
        record.commitTime,
        batchBytes,
      );
      replayed = end;
    }
    await report(true);
    return signal?.aborted ? "aborted" : "endpos";
  } finally {
    reader.close();
    await sql.end({ timeout: 5 });
  }
}

/** Reads past the records of a transaction already applied. */
function skipTransaction(reader: SpoolReader): void {
  for (;;) {
    const record = reader.next();
    if (record === undefined) throw new RangeError("Spool ended inside a complete transaction");
    if (record.kind === RecordKind.Commit) return;
  }
}

/**
 * Applies one transaction: its statements go out in batches of up to
 * `batchBytes` as one multi-statement simple query each (one round trip per
 * batch), BEGIN in the first and the origin update and COMMIT in the last.
 */
async function applyTransaction(
  conn: Sql,
  tables: TargetTables,
  reader: SpoolReader,
  end: Lsn,
  commitTime: bigint,
  batchBytes: number,
): Promise<void> {
  let batch = "begin;";
  try {
    for (;;) {
      const record = reader.next();
      if (record === undefined) throw new RangeError("Spool ended inside a complete transaction");
      if (record.kind === RecordKind.Commit) break;
      if (record.kind !== RecordKind.Change) {
        throw new RangeError(`Spool out of step: record kind ${record.kind} inside a transaction`);
      }
      const statement = await statementFor(record.change, tables);
      if (statement === undefined) continue;
      batch += statement + ";";
      if (batch.length >= batchBytes) {
        await conn.unsafe(batch).simple();
        batch = "";
      }
    }
    batch += `select pg_replication_origin_xact_setup(${quoteLiteral(formatLsn(end))}, ${
      quoteLiteral(formatPgTimestamp(commitTime))
    });commit`;
    await conn.unsafe(batch).simple();
  } catch (err) {
    await conn.unsafe("rollback").catch(() => {});
    throw err;
  }
}

async function statementFor(change: Change, tables: TargetTables): Promise<Statement | undefined> {
  switch (change.tag) {
    case "Insert":
      return insertSql(
        change,
        tables.cached(change.relation) ?? await tables.load(change.relation),
      );
    case "Update":
      return updateSql(
        change,
        tables.cached(change.relation) ?? await tables.load(change.relation),
      );
    case "Delete":
      return deleteSql(
        change,
        tables.cached(change.relation) ?? await tables.load(change.relation),
      );
    case "Truncate":
      return truncateSql(change, await Promise.all(change.relations.map((r) => tables.load(r))));
    default:
      throw new RangeError(`Unexpected ${change.tag} inside a transaction`);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
