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
    "set session_replication_role = replica; set synchronous_commit = off; set standard_conforming_strings = on; set plan_cache_mode = force_generic_plan",
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

    const batch = new TargetBatch(conn, batchBytes);
    /** Commits the open group; with `wait`, until the server has, and replay_lsn moves there. */
    const commitGroup = async (wait = true) => {
      await batch.commit();
      if (!wait) return;
      const end = await batch.sync();
      if (end > replayed) replayed = end;
    };
    let idle = 0;
    while (!signal?.aborted) {
      if (Date.now() - lastPoll >= POLL_SENTINEL_MS) {
        await commitGroup();
        sentinel = readSentinel(catalog.db);
        lastPoll = Date.now();
      }
      if (reachedEndpos()) break;
      if (!sentinel.apply) {
        await commitGroup();
        await report();
        await sleep(50, signal);
        continue;
      }
      const record = reader.next();
      if (record === undefined) {
        await commitGroup();
        idle = Math.min(idle + 1, 10);
        await report(true);
        await sleep(idle * 2, signal);
        continue;
      }
      idle = 0;
      if (record.kind === RecordKind.Keepalive) {
        await commitGroup();
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
        await commitGroup();
        replayed = sentinel.endpos > replayed ? sentinel.endpos : replayed;
        break;
      }
      if (end <= progress) {
        await skipTransaction(reader, signal);
        continue;
      }
      await addTransaction(batch, tables, reader, end, record.commitTime, signal);
      if (batch.transactions >= GROUP_TRANSACTIONS) await commitGroup(false);
      await report();
    }
    await commitGroup().catch(async (err) => {
      await batch.rollback();
      throw err;
    });
    await report(true);
    return signal?.aborted ? "aborted" : "endpos";
  } finally {
    reader.close();
    await sql.end({ timeout: 5 });
  }
}

/** Reads past the records of a transaction already applied. */
async function skipTransaction(reader: SpoolReader, signal?: AbortSignal): Promise<void> {
  while ((await recordOfTransaction(reader, signal)).kind !== RecordKind.Commit) { /* skip */ }
}

/** How long a complete transaction's records may take to show in the file. */
const TRANSACTION_RECORDS_WAIT_MS = 30_000;

/**
 * The next record inside a complete transaction. The writer may still be
 * writing the bytes that follow a BEGIN it patched (one write is not atomic to a
 * reader of the file), so a short wait is normal; a long one is a broken spool.
 */
async function recordOfTransaction(reader: SpoolReader, signal?: AbortSignal) {
  const deadline = Date.now() + TRANSACTION_RECORDS_WAIT_MS;
  for (;;) {
    const record = reader.next();
    if (record !== undefined) return record;
    if (signal?.aborted) throw signal.reason;
    if (Date.now() > deadline) {
      throw new RangeError(
        `Spool ended inside a complete transaction for ${TRANSACTION_RECORDS_WAIT_MS} ms`,
      );
    }
    await sleep(5, signal);
  }
}

/** A value as an untyped literal (standard_conforming_strings is on). */
function literal(value: string | null): string {
  return value === null ? "null" : quoteLiteral(value);
}

/** Source transactions grouped into one target transaction, at most. */
const GROUP_TRANSACTIONS = 500;

/**
 * The open target transaction: statements go out as multi-statement simple
 * queries of up to `batchBytes` (one round trip each, the next one built while
 * the last is on the wire). Several small source transactions share one
 * target transaction; its COMMIT carries the origin progress of the last one,
 * so progress still moves atomically with the data.
 */
class TargetBatch {
  readonly #sql: Sql;
  readonly #batchBytes: number;
  readonly #prepared = new Map<string, string>();
  #text = "";
  #open = false;
  #inflight: Promise<void> | undefined;
  #failure: unknown;
  #end: Lsn = 0n;
  #commitTime = 0n;
  #committed: Lsn = 0n;
  transactions = 0;

  constructor(sql: Sql, batchBytes: number) {
    this.#sql = sql;
    this.#batchBytes = batchBytes;
  }

  /**
   * Adds a statement: prepared once per shape (PREPARE … AS, on this session),
   * then EXECUTE with untyped literals; the server parses only the short
   * EXECUTE and reuses the plan.
   */
  async add(statement: Statement): Promise<void> {
    if (!this.#open) {
      this.#text += "begin;";
      this.#open = true;
    }
    if (statement.values.length === 0) {
      this.#text += statement.text + ";";
    } else {
      let name = this.#prepared.get(statement.text);
      if (name === undefined) {
        name = `pgferry_${this.#prepared.size + 1}`;
        this.#prepared.set(statement.text, name);
        this.#text += `prepare ${name} as ${statement.text};`;
      }
      this.#text += `execute ${name}(${statement.values.map(literal).join(",")});`;
    }
    if (this.#text.length >= this.#batchBytes) await this.#send();
  }

  /** Marks the end of one source transaction. */
  endTransaction(end: Lsn, commitTime: bigint): void {
    if (!this.#open) {
      this.#text += "begin;";
      this.#open = true;
    }
    this.#end = end;
    this.#commitTime = commitTime;
    this.transactions++;
  }

  /**
   * Sends the COMMIT, with the last transaction's origin progress, without
   * waiting for it: the next group is built while the server commits this one.
   * `committed` moves once the server has answered (see `sync`).
   */
  async commit(): Promise<void> {
    if (!this.#open) return;
    this.#text += `select pg_replication_origin_xact_setup(${quoteLiteral(formatLsn(this.#end))}, ${
      quoteLiteral(formatPgTimestamp(this.#commitTime))
    });commit`;
    this.#open = false;
    this.transactions = 0;
    await this.#send(this.#end);
  }

  /** Waits for everything sent; returns the end of the last committed transaction (0 when none). */
  async sync(): Promise<Lsn> {
    await this.#settle();
    return this.#committed;
  }

  async rollback(): Promise<void> {
    // Statements prepared inside the failed transaction are gone with it.
    this.#prepared.clear();
    await this.#sql.unsafe("deallocate all").catch(() => {});
    this.#text = "";
    this.#open = false;
    this.transactions = 0;
    await this.#inflight?.catch(() => {});
    this.#inflight = undefined;
    this.#failure = undefined;
    await this.#sql.unsafe("rollback").catch(() => {});
  }

  async #send(commits?: Lsn): Promise<void> {
    await this.#settle();
    const text = this.#text;
    this.#text = "";
    this.#inflight = this.#sql.unsafe(text).simple().then(
      () => {
        if (commits !== undefined) this.#committed = commits;
      },
      (err) => {
        this.#failure = err;
      },
    );
  }

  async #settle(): Promise<void> {
    await this.#inflight;
    this.#inflight = undefined;
    if (this.#failure !== undefined) {
      const failure = this.#failure;
      this.#failure = undefined;
      throw failure;
    }
  }
}

/** Adds one complete source transaction from the spool to the batch. */
async function addTransaction(
  batch: TargetBatch,
  tables: TargetTables,
  reader: SpoolReader,
  end: Lsn,
  commitTime: bigint,
  signal?: AbortSignal,
): Promise<void> {
  for (;;) {
    const record = await recordOfTransaction(reader, signal);
    if (record.kind === RecordKind.Commit) break;
    if (record.kind !== RecordKind.Change) {
      throw new RangeError(`Spool out of step: record kind ${record.kind} inside a transaction`);
    }
    const statement = await statementFor(record.change, tables);
    if (statement !== undefined) await batch.add(statement);
  }
  batch.endTransaction(end, commitTime);
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
