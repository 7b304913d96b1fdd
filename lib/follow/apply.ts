/**
 * Apply: reads transactions from the spool and applies them to the target,
 * exactly once. Complete ones, grouped; a large one still arriving, as it
 * comes (see addOpenTransaction).
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
import type { Change, Commit, Delete, Insert, TableName, Update } from "../decode/change.ts";
import { formatPgTimestamp } from "../decode/pg_timestamp.ts";
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import { CopyConnection, type PipelineStep, type QueryResult } from "../pg/copy_connection.ts";
import { RecordKind, type SpoolRecord } from "../spool/record.ts";
import { SpoolReader } from "../spool/reader.ts";
import { readCuts } from "../spool/segments.ts";
import {
  deleteSql,
  insertSql,
  type Statement,
  type TargetTable,
  truncateSql,
  updateSql,
} from "./sql.ts";
import { literal, quoteLiteral } from "../pg/quote.ts";
import { NetChanges } from "./net_changes.ts";
import { TargetTables } from "./target_tables.ts";
import { logger } from "../log.ts";
import type { StageCounters, Tally } from "./metrics.ts";
import { errorMessage } from "../errors.ts";

const log = logger("apply");

export interface ApplyOptions {
  dir: string;
  catalog: Catalog;
  target: string;
  origin: string;
  signal?: AbortSignal;
  /** Rows, transactions, latency and signs of life, for the supervisor. */
  counters: StageCounters;
  /** Bytes of SQL sent in one round trip (default 256 KiB). */
  batchBytes?: number;
}

/** How apply ended. */
export type ApplyEnd = "endpos" | "aborted";

const POLL_SENTINEL_MS = 200;
const REPORT_MS = 1000;
/** When apply has caught up: replay_lsn is written to the catalog at most this often. */
const IDLE_REPORT_MS = 100;
/**
 * The shortest sleep between polls of a spool with nothing new (growing to 20 ms). Under a
 * trickle of small transactions each poll ends in a commit round trip: polling every 10 ms
 * instead of 2 cut pgferry's CPU by 18% on a live pgbench load (3 pairs of runs).
 */
const IDLE_SLEEP_MS = 10;
const CANCEL_AFTER_STOP_MS = 1000;

/**
 * The origin's progress, once the target's WAL is flushed up to its last commit (apply commits
 * with synchronous_commit off): what survives a crash of the target.
 */
function flushedProgressSql(origin: string): string {
  return `select pg_replication_origin_progress(${quoteLiteral(origin)}, true)::text`;
}

/**
 * Sets up the origin session; returns the origin's progress. Apply's one
 * connection keeps this session state for every later statement; should the
 * connection drop, the next statement fails and the stage restarts from the
 * origin's progress.
 */
async function originSession(connection: CopyConnection, origin: string): Promise<Lsn> {
  const { rows } = await connection.query(
    `select pg_replication_origin_session_setup(${quoteLiteral(origin)}); ` +
      "set session_replication_role = replica; set synchronous_commit = off; " +
      "set standard_conforming_strings = on; set plan_cache_mode = force_generic_plan; " +
      flushedProgressSql(origin),
  );
  const lsn = rows[0]?.[0];
  // Rows updated at random after a checkpoint cost the target a full-page image each; lz4
  // makes its WAL about 4 times smaller (pgbench backlog: 228 MB → 53 MB) and spares the
  // CRC and writes of the rest. A server built without lz4 keeps its own setting.
  await connection.query("set wal_compression = lz4").catch((err) =>
    log.debug(`wal_compression stays as the target has it: ${errorMessage(err)}`)
  );
  return lsn ? parseLsn(lsn) : 0n;
}

/** Runs apply until endpos is reached or the signal aborts. */
export async function runApply(options: ApplyOptions): Promise<ApplyEnd> {
  const { catalog, signal, counters } = options;
  const batchBytes = options.batchBytes ?? 256 * 1024;
  const reader = new SpoolReader(options.dir);
  const connection = await CopyConnection.connect(options.target, {
    role: "target",
    parameters: { application_name: "pgferry apply" },
  }).catch((err) => {
    reader.close();
    throw err;
  });
  const batch = new TargetBatch(connection, batchBytes, counters);
  // A statement waiting on a lock never sees the signal: a round trip still
  // under way a moment after the stop is cancelled on the server.
  let canceller: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => canceller = setTimeout(() => batch.cancel(), CANCEL_AFTER_STOP_MS);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const progress = await originSession(connection, options.origin);
    const tables = new TargetTables((text) => batch.query(text));
    let sentinel = readSentinel(catalog.db);
    let replayed = progress > sentinel.replayLsn ? progress : sentinel.replayLsn;
    let reported = sentinel.replayLsn;
    let lastPoll = Date.now();
    let lastReport = 0;
    log.info(`origin "${options.origin}" progress ${formatLsn(progress)}`);
    reader.seek(progress);
    batch.appliedUpTo(progress);

    /**
     * Writes replay_lsn to the catalog when it moved and `every` ms passed since the last time.
     * Spool files up to replay_lsn get deleted: the target's WAL is flushed first, so that
     * replay_lsn never says more than what survives a crash of the target.
     */
    const report = async (every = REPORT_MS) => {
      if (replayed === reported || Date.now() - lastReport < every) return;
      const durable = replayed;
      await batch.query(flushedProgressSql(options.origin));
      await updateSentinel(catalog, { replayLsn: durable });
      reported = durable;
      lastReport = Date.now();
    };
    const reachedEndpos = () => sentinel.endpos !== 0n && replayed >= sentinel.endpos;

    const rows = new RowTallies(counters);
    const context = { batch, tables, rows, reader, counters, signal };
    let openSince: number | undefined;
    /**
     * Commits the open group. With `wait`, until the server has, and replay_lsn moves there;
     * without, the COMMIT goes out with the next group's first round trip.
     */
    const commitGroup = async (wait = true) => {
      await batch.commit(wait);
      if (!wait) return;
      const end = await batch.sync();
      if (end > replayed) replayed = end;
    };
    let idle = 0;
    /** The last keepalive read (0: none yet). */
    let keepalive: Lsn = 0n;
    while (!signal?.aborted) {
      counters.alive();
      if (Date.now() - lastPoll >= POLL_SENTINEL_MS) {
        // No commit and wait here: the server would sit idle while the next statements are built.
        if (batch.committed > replayed) replayed = batch.committed;
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
      if (record === undefined && reader.atOpenTransaction) {
        // A large transaction still arriving: apply it as it comes, not once it is all in.
        openSince ??= performance.now();
        if (performance.now() - openSince >= OPEN_AFTER_MS) {
          openSince = undefined;
          await commitGroup();
          await addOpenTransaction(context, sentinel.endpos);
          if (batch.committed > replayed) replayed = batch.committed;
          continue;
        }
      } else openSince = undefined;
      if (record === undefined) {
        await commitGroup();
        if (keepalive > replayed) {
          // Everything read is committed: the last keepalive read is reached. Never report
          // past an endpos set since the last poll.
          sentinel = readSentinel(catalog.db);
          const reach = sentinel.endpos !== 0n && keepalive > sentinel.endpos
            ? sentinel.endpos
            : keepalive;
          if (reach > replayed) replayed = reach;
        }
        idle = Math.min(idle + 1, 10);
        // Caught up: say so soon, but not on every poll of a trickle (a catalog write each).
        await report(IDLE_REPORT_MS);
        await sleep(Math.max(IDLE_SLEEP_MS, idle * 2), signal);
        continue;
      }
      idle = 0;
      if (record.kind === RecordKind.Keepalive) {
        // Reached once what was read before it is committed: taken at the next idle poll. On a
        // live stream a keepalive can follow nearly every source transaction; a commit round
        // trip and a catalog read for each cost more than the transactions themselves.
        if (record.lsn > keepalive) keepalive = record.lsn;
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
      if (end <= batch.committed) {
        await skipTransaction(reader, counters, signal);
        continue;
      }
      batch.adding(end);
      await addTransaction(context, () => recordOfTransaction(reader, counters, signal));
      batch.endTransaction(end, record.commitTime);
      if (batch.transactions >= GROUP_TRANSACTIONS || batch.groupAge >= GROUP_MS) {
        await commitGroup(false);
      }
      await report();
    }
    await commitGroup().catch(async (err) => {
      await batch.rollback();
      throw err;
    });
    if (
      sentinel.endpos !== 0n && replayed > sentinel.endpos && batch.committed <= sentinel.endpos
    ) {
      // Only keepalives lie past endpos (one read before endpos was set): stop exactly there.
      replayed = sentinel.endpos;
    }
    await report(0);
    return signal?.aborted ? "aborted" : "endpos";
  } catch (err) {
    if (signal?.aborted) return "aborted"; // the statement cancelled on stop
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    clearTimeout(canceller);
    reader.close();
    await connection.close();
  }
}

/** Reads past the records of a transaction already applied. */
async function skipTransaction(
  reader: SpoolReader,
  counters: StageCounters,
  signal?: AbortSignal,
): Promise<void> {
  while ((await recordOfTransaction(reader, counters, signal)).kind !== RecordKind.Commit) {
    /* skip */
  }
}

/** How long a complete transaction's records may take to show in the file. */
const TRANSACTION_RECORDS_WAIT_MS = 30_000;

/**
 * The next record inside a transaction, waiting for it. Of a complete
 * transaction, the writer may still be writing the bytes that follow a BEGIN it
 * patched (one write is not atomic to a reader of the file), so a short wait is
 * normal; a long one is a broken spool. `waiting` runs before each wait, and
 * throws to stop it; by default it gives up that long after the first wait (set
 * up only then: most records are there at once).
 */
async function recordOfTransaction(
  reader: SpoolReader,
  counters: StageCounters,
  signal?: AbortSignal,
  waiting?: () => void,
): Promise<SpoolRecord> {
  for (;;) {
    const record = reader.next();
    if (record !== undefined) return record;
    counters.alive(); // waiting for input, not stuck on the target
    if (signal?.aborted) throw signal.reason;
    (waiting ??= giveUpAfter(TRANSACTION_RECORDS_WAIT_MS))();
    await sleep(5, signal);
  }
}

function giveUpAfter(ms: number): () => void {
  const deadline = Date.now() + ms;
  return () => {
    if (Date.now() > deadline) {
      throw new RangeError(`Spool ended inside a complete transaction for ${ms} ms`);
    }
  };
}

/**
 * A target error with what the operator needs to find the change: the table
 * (when the server names one) and the source transactions of the round trip.
 * The SQLSTATE stays, so the error is classified as before.
 */
function inContext(err: unknown, committed: Lsn, adding: Lsn): unknown {
  const { code, fields } = err as { code?: string; fields?: { table?: string; schema?: string } };
  const table = fields?.table ? ` on table "${fields.schema ?? ""}"."${fields.table}"` : "";
  const where = adding > committed
    ? ` while applying the source transactions ending after ${
      formatLsn(committed)
    } and at or before ${formatLsn(adding)}`
    : "";
  if (table === "" && where === "") return err;
  const wrapped = new Error(`${errorMessage(err)}${table}${where}`, { cause: err });
  return Object.assign(wrapped, { code });
}

/** Source transactions grouped into one target transaction, at most. */
const GROUP_TRANSACTIONS = 5000;
/** A group is committed once it is this old (ms), at the end of a source transaction. */
const GROUP_MS = 200;
/** Merged changes held before they are written out (inside the open target transaction). */
const NET_ROWS = 5_000;
const NET_BYTES = 16 * 1024 * 1024;

/** One target transaction on its way: what to count once the server has committed it. */
interface Group {
  end: Lsn;
  commitTime: bigint;
  transactions: number;
  rows: Map<Tally, number>;
  /** performance.now() at its BEGIN. */
  began: number;
}

/** PostgreSQL's epoch, 2000-01-01 00:00 UTC, in Unix seconds. */
const PG_EPOCH_UNIX_SECONDS = 946_684_800;

/**
 * The open target transaction: statements go out as multi-statement simple
 * queries, and merged inserts as COPY, in pipelines of up to `batchBytes` (one
 * round trip each, the next one built while the last is on the wire). Several
 * small source transactions share one target transaction; its COMMIT carries
 * the origin progress of the last one, so progress still moves atomically with
 * the data. Rows and transactions are
 * counted when the server has committed them.
 */
class TargetBatch {
  readonly #connection: CopyConnection;
  readonly #batchBytes: number;
  readonly #counters: StageCounters;
  readonly #transactionsApplied: Tally;
  readonly #roundTrips: Tally;
  readonly #prepared = new Map<string, string>();
  #text = "";
  /** Queries ready to go before `#text`, and their bytes. */
  #steps: PipelineStep[] = [];
  #stepBytes = 0;
  /** Row changes merged by table and key, written out before anything that must follow them. */
  readonly #net = new NetChanges({ rows: NET_ROWS, bytes: NET_BYTES });
  /** INSERT rows of one shape held back to go as one multi-row INSERT. */
  #pending: { statement: Statement; tuples: string[]; bytes: number } | undefined;
  #group: Group | undefined;
  /** Groups whose COMMIT is in `#text`, not yet sent. */
  #commits: Group[] = [];
  #inflight: Promise<void> | undefined;
  #failure: unknown;
  #committed: Lsn = 0n;
  #adding: Lsn = 0n;

  constructor(connection: CopyConnection, batchBytes: number, counters: StageCounters) {
    this.#connection = connection;
    this.#batchBytes = batchBytes;
    this.#counters = counters;
    this.#transactionsApplied = counters.counter("pgferry_transactions_applied_total");
    this.#roundTrips = counters.counter("pgferry_apply_round_trips_total");
  }

  /** Source transactions in the open target transaction. */
  get transactions(): number {
    return this.#group?.transactions ?? 0;
  }

  /** Milliseconds since the open target transaction began (0: none is open). */
  get groupAge(): number {
    return this.#group === undefined ? 0 : performance.now() - this.#group.began;
  }

  /**
   * Adds a statement: prepared once per shape (PREPARE … AS, on this session),
   * then EXECUTE with untyped literals; the server parses only the short
   * EXECUTE and reuses the plan. `rows` counts it once committed.
   */
  async add(statement: Statement, rows: Tally): Promise<void> {
    this.count(rows);
    if (statement.head !== undefined && statement.values.length > 0) {
      // Consecutive INSERTs of one shape (also across the source transactions
      // of the group) become one multi-row INSERT: the server parses and plans
      // it once instead of once per row.
      if (this.#pending !== undefined && this.#pending.statement.text !== statement.text) {
        this.#flushPending();
      }
      const tuple = `(${statement.values.map(literal).join(",")})`;
      if (this.#pending === undefined) this.#pending = { statement, tuples: [], bytes: 0 };
      this.#pending.tuples.push(tuple);
      this.#pending.bytes += tuple.length + 1;
    } else {
      this.#flushPending();
      this.#append(statement);
    }
    if (this.#bytes + (this.#pending?.bytes ?? 0) >= this.#batchBytes) await this.#send();
  }

  /** Bytes ready to send, about. */
  get #bytes(): number {
    return this.#text.length + this.#stepBytes;
  }

  /** Runs a query of its own once what is on the wire has answered (held statements wait). */
  async query(text: string): Promise<QueryResult> {
    await this.#settle();
    return await this.#connection.query(text);
  }

  /**
   * Adds a row change: merged with the others held for its table when it can
   * be (see net_changes.ts), else written after them, on its own.
   */
  async change(change: Insert | Update | Delete, target: TargetTable, rows: Tally): Promise<void> {
    if (this.#net.add(change, target)) {
      this.count(rows);
      if (this.#net.full) await this.#writeNet();
      return;
    }
    await this.#writeNet(target);
    const statement = change.tag === "Insert"
      ? insertSql(change, target)
      : change.tag === "Update"
      ? updateSql(change, target)
      : deleteSql(change, target);
    if (statement === undefined) this.count(rows);
    else await this.add(statement, rows);
  }

  /** Adds a TRUNCATE: after every change held, since it may cascade to other tables. */
  async truncate(statement: Statement, tallies: Tally[]): Promise<void> {
    await this.#writeNet();
    const [first, ...others] = tallies;
    await this.add(statement, first!);
    for (const tally of others) this.count(tally);
  }

  /** Writes out the merged changes held (of one table, or all). */
  async #writeNet(target?: TargetTable): Promise<void> {
    if (this.#net.empty) return;
    for (const statement of this.#net.take(target)) {
      this.#flushPending();
      if (statement instanceof Uint8Array) this.#push({ sql: statement });
      else this.#push({ sql: statement.copy, copyData: statement.data });
      if (this.#bytes >= this.#batchBytes) await this.#send();
    }
  }

  /** Adds a query of its own (a COPY with its rows, say), after the statements before it. */
  #push(step: PipelineStep): void {
    this.#endText();
    this.#steps.push(step);
    this.#stepBytes += step.copyData?.length ?? step.sql.length;
  }

  /** Closes the statements so far into one query of the pipeline. */
  #endText(): void {
    if (this.#text === "") return;
    this.#steps.push({ sql: this.#text });
    this.#stepBytes += this.#text.length;
    this.#text = "";
  }

  /** Appends one statement: prepared once per shape, then EXECUTE with literals. */
  #append(statement: Statement): void {
    if (statement.values.length === 0) {
      this.#text += statement.text + ";";
      return;
    }
    let name = this.#prepared.get(statement.text);
    if (name === undefined) {
      name = `pgferry_${this.#prepared.size + 1}`;
      this.#prepared.set(statement.text, name);
      this.#text += `prepare ${name} as ${statement.text};`;
    }
    this.#text += `execute ${name}(${statement.values.map(literal).join(",")});`;
  }

  /**
   * Writes out the INSERT rows held back. In INSERT … VALUES every row's
   * untyped literals are coerced to the target columns' types, as with EXECUTE.
   */
  #flushPending(): void {
    const pending = this.#pending;
    if (pending === undefined) return;
    this.#pending = undefined;
    if (pending.tuples.length === 1) this.#append(pending.statement);
    else this.#text += `${pending.statement.head} values ${pending.tuples.join(",")};`;
  }

  /** Counts one more row of the open transaction (for TRUNCATE: one more table). */
  count(rows: Tally): void {
    const group = this.#begin();
    group.rows.set(rows, (group.rows.get(rows) ?? 0) + 1);
  }

  /** Marks the end of one source transaction. */
  endTransaction(end: Lsn, commitTime: bigint): void {
    const group = this.#begin();
    group.end = end;
    group.commitTime = commitTime;
    group.transactions++;
  }

  /**
   * Ends the open group with a COMMIT that carries the last transaction's origin
   * progress. With `send`, it goes out at once, without waiting for the answer;
   * else with the next round trip, so that the server never waits for the next
   * group's first statements with nothing to do: at a full group, the round trip
   * before it is still under way. `committed` moves once the server has answered
   * (see `sync`).
   */
  async commit(send = true): Promise<void> {
    const group = this.#group;
    if (group !== undefined) {
      await this.#writeNet();
      this.#flushPending();
      this.#text += `select pg_replication_origin_xact_setup(${
        quoteLiteral(formatLsn(group.end))
      }, ${quoteLiteral(formatPgTimestamp(group.commitTime))});commit;`;
      this.#group = undefined;
      this.#commits.push(group);
    }
    if (send && this.#commits.length > 0) await this.#send();
  }

  /** The end of the last source transaction the server has committed (as of the last answer). */
  get committed(): Lsn {
    return this.#committed;
  }

  /** Waits for everything sent; returns the end of the last committed transaction (0 when none). */
  async sync(): Promise<Lsn> {
    await this.#settle();
    return this.#committed;
  }

  async rollback(): Promise<void> {
    // Statements prepared inside the failed transaction are gone with it.
    this.#prepared.clear();
    this.#text = "";
    this.#steps = [];
    this.#stepBytes = 0;
    this.#pending = undefined;
    this.#net.clear();
    this.#group = undefined;
    this.#commits = [];
    await this.#inflight?.catch(() => {});
    this.#inflight = undefined;
    this.#failure = undefined;
    await this.#connection.query("rollback; deallocate all").catch(() => {});
  }

  /** Cancels the round trip under way, if any, on the server (a lock wait, a long statement). */
  cancel(): void {
    if (this.#inflight !== undefined) {
      this.#connection.cancel().catch((err) => log.debug(`cancel failed: ${errorMessage(err)}`));
    }
  }

  #begin(): Group {
    if (this.#group === undefined) {
      this.#text += "begin;";
      this.#group = {
        end: 0n,
        commitTime: 0n,
        transactions: 0,
        rows: new Map(),
        began: performance.now(),
      };
    }
    return this.#group;
  }

  async #send(): Promise<void> {
    await this.#settle();
    this.#flushPending();
    this.#endText();
    const steps = this.#steps;
    const commits = this.#commits;
    this.#steps = [];
    this.#stepBytes = 0;
    this.#commits = [];
    this.#inflight = this.#connection.pipeline(steps).then(
      () => {
        this.#roundTrips.value++;
        this.#counters.alive();
        for (const group of commits) this.#committed = this.#counted(group);
      },
      (err) => {
        this.#failure = inContext(err, this.#committed, this.#adding);
      },
    );
  }

  /** Where the origin's progress is when apply starts. */
  appliedUpTo(progress: Lsn): void {
    this.#committed = progress;
  }

  /** The end LSN of the source transaction being added (for error messages). */
  adding(end: Lsn): void {
    this.#adding = end;
  }

  /** Counts a committed group; returns its end. */
  #counted(group: Group): Lsn {
    for (const [tally, n] of group.rows) tally.value += n;
    this.#transactionsApplied.value += group.transactions;
    this.#counters.observe(
      "pgferry_apply_latency_seconds",
      (performance.now() - group.began) / 1000,
    );
    this.#counters.set(
      "pgferry_apply_last_commit_timestamp_seconds",
      Number(group.commitTime) / 1e6 + PG_EPOCH_UNIX_SECONDS,
    );
    return group.end;
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

type Operation = "insert" | "update" | "delete" | "truncate";

/** The rows-applied counters of each table and operation, looked up once per table. */
class RowTallies {
  readonly #counters: StageCounters;
  readonly #tallies = new Map<string, Record<Operation, Tally>>();

  constructor(counters: StageCounters) {
    this.#counters = counters;
  }

  /** The last table asked for, and its tallies. */
  #last: { name: TableName; tallies: Record<Operation, Tally> } | undefined;

  of(name: TableName, operation: Operation): Tally {
    const last = this.#last;
    if (last !== undefined && last.name.table === name.table && last.name.schema === name.schema) {
      return last.tallies[operation];
    }
    const table = `${name.schema}.${name.table}`;
    let tallies = this.#tallies.get(table);
    if (tallies === undefined) {
      const tally = (operation: Operation) =>
        this.#counters.counter("pgferry_rows_applied_total", { table, operation });
      tallies = {
        insert: tally("insert"),
        update: tally("update"),
        delete: tally("delete"),
        truncate: tally("truncate"),
      };
      this.#tallies.set(table, tallies);
    }
    this.#last = { name, tallies };
    return tallies[operation];
  }
}

/** Where addTransaction reads, what it writes to, and what it counts. */
interface TransactionContext {
  batch: TargetBatch;
  tables: TargetTables;
  rows: RowTallies;
  reader: SpoolReader;
  counters: StageCounters;
  signal: AbortSignal | undefined;
}

/**
 * Adds the changes of one source transaction to the batch, from the record
 * after its BEGIN up to its COMMIT; returns the COMMIT record (its change is
 * parsed only when asked for).
 */
async function addTransaction(
  { batch, tables, rows }: TransactionContext,
  next: () => Promise<SpoolRecord>,
): Promise<{ readonly change: Change }> {
  for (;;) {
    const record = await next();
    if (record.kind === RecordKind.Commit) return record;
    if (record.kind !== RecordKind.Change) {
      throw new RangeError(`Spool out of step: record kind ${record.kind} inside a transaction`);
    }
    const change = record.change;
    if (change.tag === "Begin" || change.tag === "Commit") {
      throw new RangeError(`Unexpected ${change.tag} inside a transaction`);
    }
    if (change.tag === "Truncate") {
      await batch.truncate(
        truncateSql(change, await Promise.all(change.relations.map((r) => tables.load(r)))),
        change.relations.map((r) => rows.of(r, "truncate")),
      );
    } else {
      await batch.change(
        change,
        tables.cached(change.relation) ?? await tables.load(change.relation),
        rows.of(change.relation, OPERATIONS[change.tag]),
      );
    }
  }
}

/**
 * A transaction still arriving waits this long at its BEGIN before apply starts on it
 * (most are complete long before).
 */
const OPEN_AFTER_MS = 20;

/** The writer cut the open transaction out of the spool (see readCuts). */
class SpoolCut extends Error {}

/**
 * Applies a transaction whose COMMIT is not in the spool yet, in a target
 * transaction of its own, as its records come: the target works while the
 * source still sends. It commits only once its COMMIT is read and the writer
 * has cut nothing since its BEGIN; else (cut, re-sent, or past endpos) it is
 * rolled back and the reader starts again from what the target has committed.
 */
async function addOpenTransaction(context: TransactionContext, endpos: Lsn): Promise<void> {
  const { batch, reader, counters, signal } = context;
  const cuts = readCuts(reader.cdcDir);
  const cut = () => readCuts(reader.cdcDir) !== cuts;
  reader.next(true); // its BEGIN
  batch.adding(0n);
  let commit: Commit | undefined;
  try {
    // No deadline: the rest comes as fast as the source sends it.
    const record = await addTransaction(
      context,
      () =>
        recordOfTransaction(reader, counters, signal, () => {
          if (cut()) throw new SpoolCut();
        }),
    );
    commit = record.change as Commit;
  } catch (err) {
    // What a cut left in the file may read as anything.
    if (!(err instanceof SpoolCut) && !cut()) throw err;
  }
  const why = commit === undefined || cut()
    ? "was cut from the spool (receive started over)"
    : commit.endLsn <= batch.committed
    ? "was applied before"
    : endpos !== 0n && commit.endLsn > endpos
    ? "ends past endpos"
    : undefined;
  if (why !== undefined || commit === undefined) {
    await batch.rollback();
    log.info(
      `the transaction applied as it arrived ${why}: rolled back; reading the spool again after ${
        formatLsn(batch.committed)
      }`,
    );
    reader.seek(batch.committed);
    return;
  }
  batch.endTransaction(commit.endLsn, commit.commitTime);
  await batch.commit();
  await batch.sync();
}

const OPERATIONS = { Insert: "insert", Update: "update", Delete: "delete" } as const;

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
