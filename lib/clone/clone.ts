/**
 * `pgferry clone`: the whole copy of a database, resumable step by step.
 *
 *  1. snapshot   exported here (or given), held until every row is read
 *  2. dump       pg_dump of pre-data and post-data as of the snapshot
 *  3. pre-data   pg_restore in one transaction, filtered by a --use-list
 *  4. data       --table-jobs COPY workers, largest tables first, big tables
 *                in parts; as soon as a table's rows are in, --index-jobs
 *                workers build its indexes and constraints, then it is vacuumed
 *  5. blobs      large-object contents, inside the snapshot
 *  6. sequences  setval from the source's state, once every row is in
 *  7. post-data  pg_restore of what is left (foreign keys, triggers, …), once
 *                every index is built
 *  Steps 6 and 7 run while the last tables are still indexed and vacuumed.
 *
 * Progress goes to the catalog as it happens; `--resume` skips what is done.
 */
import { join } from "node:path";
import type { Catalog } from "../catalog/catalog.ts";
import { errorMessage, OperatorError } from "../errors.ts";
import { logger } from "../log.ts";
import { CopyConnection } from "../pg/copy_connection.ts";
import { quoteLiteral } from "../pg/quote.ts";
import { stripPassword } from "../pg/uri.ts";
import { buildIndex, indexKind } from "./build_index.ts";
import { beginInSnapshot, copyTablePart, rollbackQuietly } from "./copy_table.ts";
import { exportSnapshot, type HeldSnapshot, snapshotUsable } from "./export_snapshot.ts";
import type { Filters } from "./filters.ts";
import {
  type Inventory,
  readInventory,
  type SourceIndex,
  type SourceTable,
  sqlName,
} from "./inventory.ts";
import { copyLargeObject } from "./large_objects.ts";
import { dumpSchema, listArchive, type RestoreOptions, restoreScript } from "./pg_tools.ts";
import {
  clearCloneProgress,
  type CloneStep,
  finishStep,
  formatBytes,
  formatDuration,
  hasCloneProgress,
  markConstraintDone,
  markIndexDone,
  markIndexesDone,
  markIndexStarted,
  markPartDone,
  markPartProgress,
  markPartStarted,
  markTruncated,
  markVacuumDone,
  type PartState,
  type PlannedTable,
  type ProgressReport,
  readPlan,
  readProgress,
  resetParts,
  saveIndexes,
  savePlan,
  startStep,
  stepDone,
  type TableState,
} from "./progress.ts";
import { copySequences } from "./sequences.ts";
import { planParts, type SplitOptions } from "./split.ts";
import {
  dependentClosure,
  parseToc,
  PG_CLASS,
  PG_CONSTRAINT,
  PG_NAMESPACE,
  type TocEntry,
  useList,
} from "./toc.ts";
import { WorkQueue } from "./work_queue.ts";

const log = logger("clone");

export interface CloneOptions {
  source: string;
  target: string;
  catalog: Catalog;
  /** Parallel COPY jobs (and vacuum and large-object jobs). */
  tableJobs: number;
  /** Parallel CREATE INDEX jobs. */
  indexJobs: number;
  split: SplitOptions;
  filters: Filters;
  /** "auto" uses binary COPY where it is safe; "text" never does. */
  copyFormat: "auto" | "text";
  noOwner: boolean;
  noAcl: boolean;
  noComments: boolean;
  /** Drop the target's objects of the same names before creating them. */
  dropIfExists: boolean;
  skipVacuum: boolean;
  skipLargeObjects: boolean;
  skipExtensions: boolean;
  /** Continue the clone recorded in the catalog. */
  resume: boolean;
  /** Forget the recorded clone and start over. */
  restart: boolean;
  /** Use this exported snapshot instead of exporting one. */
  snapshot?: string | undefined;
  /** `maintenance_work_mem` of the index builds. */
  maintenanceWorkMem: string;
  /**
   * Run only these steps (the building-block commands: `dump schema`, `copy
   * table-data`, …); the others must have been done by earlier runs in the
   * same work directory. Undefined runs the whole clone.
   */
  steps?: ReadonlySet<CloneStep> | undefined;
  signal?: AbortSignal | undefined;
}

export interface CloneResult {
  report: ProgressReport;
  durationMs: number;
}

/** Session settings that make COPY text the same on both sides. */
const SESSION: Record<string, string> = {
  application_name: "pgferry clone",
  DateStyle: "ISO",
  IntervalStyle: "postgres",
  TimeZone: "UTC",
  extra_float_digits: "3",
  bytea_output: "hex",
  standard_conforming_strings: "on",
  statement_timeout: "0",
  lock_timeout: "0",
  idle_in_transaction_session_timeout: "0",
};

/** Runs (or resumes) a clone. */
export async function runClone(options: CloneOptions): Promise<CloneResult> {
  const started = performance.now();
  const run = new CloneRun(options);
  try {
    await run.run();
  } finally {
    await run.closeAll();
  }
  return { report: readProgress(options.catalog.db), durationMs: performance.now() - started };
}

interface ServerInfo {
  major: number;
  encoding: string;
}

class CloneRun {
  readonly o: CloneOptions;
  readonly catalog: Catalog;
  readonly schemaDir: string;
  #connections = new Set<CopyConnection>();
  #sessions: Record<"source" | "target", Record<string, string>> = {
    source: SESSION,
    target: SESSION,
  };
  #snapshot: string | undefined;
  #held: HeldSnapshot | undefined;
  #resuming = false;
  #source!: ServerInfo;
  #target!: ServerInfo;
  #queues: WorkQueue<unknown>[] = [];

  constructor(options: CloneOptions) {
    this.o = options;
    this.catalog = options.catalog;
    this.schemaDir = join(options.catalog.dir, "schema");
    options.signal?.addEventListener("abort", () => this.#abort(), { once: true });
  }

  /** Whether this run does `step` (all of them unless `steps` says otherwise). */
  #wants(step: CloneStep): boolean {
    return this.o.steps === undefined || this.o.steps.has(step);
  }

  async run(): Promise<void> {
    await this.#checkEarlierWork();
    if (this.o.steps === undefined && stepDone(this.catalog.db, "clone")) {
      log.info("the clone recorded in this catalog is done: nothing to do");
      return;
    }
    // Only steps that read rows (or dump the schema) need the snapshot; it is
    // taken while the servers' versions and encodings are read.
    const needsSnapshot = ["dump-schema", "copy", "large-objects"].some((s) =>
      this.#wants(s as CloneStep)
    );
    const setup = await Promise.allSettled([
      this.#serverInfo(),
      needsSnapshot ? this.#takeSnapshot() : Promise.resolve(),
    ]);
    const failed = setup.find((r) => r.status === "rejected");
    if (failed !== undefined) {
      await this.#releaseSnapshot();
      throw (failed as PromiseRejectedResult).reason;
    }
    try {
      await Deno.mkdir(this.schemaDir, { recursive: true });
      const dumpFile = join(this.schemaDir, "schema.dump");
      // The catalog queries run while pg_dump works: both only read the snapshot.
      const [, inventory] = await Promise.all([
        this.#step("dump-schema", async () => {
          await dumpSchema(this.o.source, dumpFile, {
            snapshot: this.#snapshot,
            major: this.#source.major,
          });
        }, { skipIfDone: await exists(dumpFile) }),
        readInventory(this.o.source, this.o.filters, this.#snapshot),
      ]);
      if (!(await exists(dumpFile))) {
        throw new OperatorError(`No schema dump in "${this.schemaDir}"`, {
          hint: 'run "pgferry dump schema" (or "pgferry clone") with this --dir first',
        });
      }
      const toc = parseToc(await listArchive(dumpFile, this.#source.major), inventory.schemas);
      const lists = await this.#writeLists(toc, inventory);
      await this.#step("pre-data", async () => {
        const clean = this.o.dropIfExists || this.o.restart || this.#resuming;
        if (clean) await this.#dropForeignKeysTo(inventory);
        await this.#restore(dumpFile, { section: "pre-data", list: lists.pre, clean });
      });
      // Sequences once the rows are in, and post-data once the indexes are: both
      // while the last tables are still being indexed or vacuumed.
      await this.#copyData(inventory, lists.tables, lists.indexes, {
        afterCopy: () =>
          this.#step("sequences", async () => {
            const source = await this.#connect("source");
            const target = await this.#connect("target");
            try {
              return `${await copySequences(source, target, lists.sequences)} sequences`;
            } finally {
              await this.#closeQuietly(source, target);
            }
          }),
        afterIndexes: () =>
          this.#step("post-data", async () => {
            await this.#restore(dumpFile, { section: "post-data", list: lists.post });
          }),
      });
      if (this.o.steps === undefined) await finishStep(this.catalog, "clone", 0);
    } finally {
      await this.#releaseSnapshot();
    }
  }

  // --- setup -----------------------------------------------------------------

  async #checkEarlierWork(): Promise<void> {
    const db = this.catalog.db;
    const earlier = hasCloneProgress(db);
    const filters = JSON.stringify(this.o.filters);
    if (earlier && !this.o.resume && !this.o.restart) {
      const report = readProgress(db);
      const steps = report.steps.filter((s) => s.state === "done").map((s) => s.step);
      const t = report.totals;
      throw new OperatorError(
        `"${this.catalog.dir}" holds an earlier clone (steps done: ${
          steps.join(", ") || "none"
        }; ${t.partsDone} of ${t.parts} table parts, ${t.indexesDone} of ${t.indexes} indexes)`,
        { hint: "pass --resume to continue it, or --restart to start over" },
      );
    }
    if (earlier && this.o.resume) {
      const row = db.prepare(
        "select source_pguri, target_pguri, filters from setup where id = 1",
      ).get() as Record<string, string | null> | undefined;
      if (row?.["filters"] != null && row["filters"] !== filters) {
        throw new OperatorError(`The filters differ from those of the clone being resumed`, {
          hint: "resume with the same --filters, or pass --restart to start over",
        });
      }
      for (const role of ["source", "target"] as const) {
        const recorded = row?.[`${role}_pguri`];
        const given = stripPassword(role === "source" ? this.o.source : this.o.target);
        if (recorded != null && recorded !== given) {
          throw new OperatorError(
            `The clone being resumed copies ${role} "${recorded}", not "${given}"`,
            { hint: `resume with the same --${role}, or pass --restart to start over` },
          );
        }
      }
      this.#resuming = true;
      log.info("resuming the clone recorded in the catalog");
    }
    if (this.o.restart) {
      await clearCloneProgress(this.catalog);
      await Deno.remove(this.schemaDir, { recursive: true }).catch(() => {});
    }
    await this.catalog.write((db) => {
      db.prepare(
        `insert into setup (id, source_pguri, target_pguri, filters) values (1, ?, ?, ?)
         on conflict (id) do update set source_pguri = excluded.source_pguri,
           target_pguri = excluded.target_pguri, filters = excluded.filters`,
      ).run(stripPassword(this.o.source), stripPassword(this.o.target), filters);
    });
    await this.catalog.log(
      "clone",
      this.#resuming ? "resume" : this.o.restart ? "restart" : "start",
    );
  }

  async #serverInfo(): Promise<void> {
    const [source, target] = await Promise.all([this.#connect("source"), this.#connect("target")]);
    await this.#closeQuietly(source, target);
    this.#source = {
      major: source.serverMajor,
      encoding: source.serverParameters.get("server_encoding") ?? "UTF8",
    };
    this.#target = {
      major: target.serverMajor,
      encoding: target.serverParameters.get("server_encoding") ?? "UTF8",
    };
    for (const role of ["source", "target"] as const) {
      const settings = { ...SESSION };
      // Bytes that are not UTF-8 must pass unconverted (pgcopydb #874).
      if (this.#source.encoding === "SQL_ASCII") settings.client_encoding = "SQL_ASCII";
      // A killed pgferry must not leave a COPY or CREATE INDEX running on its own.
      const major = role === "source" ? this.#source.major : this.#target.major;
      if (major >= 14) settings.client_connection_check_interval = "1s";
      this.#sessions[role] = settings;
    }
  }

  async #takeSnapshot(): Promise<void> {
    if (this.o.snapshot !== undefined) {
      this.#snapshot = this.o.snapshot;
      log.info(`using snapshot "${this.#snapshot}"`);
      return;
    }
    const row = this.catalog.db.prepare("select snapshot from setup where id = 1").get() as
      | { snapshot: string | null }
      | undefined;
    if (row?.snapshot && await snapshotUsable(this.o.source, row.snapshot)) {
      this.#snapshot = row.snapshot;
      log.info(`using snapshot "${this.#snapshot}" held by "pgferry snapshot"`);
      return;
    }
    this.#held = await exportSnapshot(this.o.source);
    this.#snapshot = this.#held.snapshot;
    if (this.#resuming) {
      log.warn(
        `resuming with a new snapshot "${this.#snapshot}": tables copied before and after it may not be consistent with each other`,
      );
    } else {
      log.info(`exported snapshot "${this.#snapshot}"`);
    }
  }

  async #releaseSnapshot(): Promise<void> {
    const held = this.#held;
    this.#held = undefined;
    await held?.release().catch(() => {});
  }

  /**
   * Writes the --use-list files and works out what this run builds itself:
   * everything the filters (and what depends on it) leave out goes, and the
   * post-data list loses the indexes and constraints the index jobs make.
   */
  async #writeLists(toc: TocEntry[], inventory: Inventory) {
    const schemaOids = new Set<number>();
    // SCHEMA entries name their schema in the tag: "SCHEMA - name owner".
    for (const entry of toc) {
      if (entry.catalogOid !== PG_NAMESPACE) continue;
      const schema = inventory.schemas.find((s) => entry.rest.startsWith(`${s} `));
      if (schema !== undefined && inventory.excludedSchemas.has(schema)) {
        schemaOids.add(entry.objectOid);
      }
    }
    const excluded = dependentClosure(toc, (e) =>
      (e.catalogOid === PG_CLASS &&
        (inventory.excludedRelations.has(e.objectOid) ||
          inventory.excludedIndexes.has(e.objectOid))) ||
      (e.catalogOid === PG_CONSTRAINT && inventory.excludedConstraints.has(e.objectOid)) ||
      (e.catalogOid === PG_NAMESPACE && schemaOids.has(e.objectOid)) ||
      (e.namespace !== "" && inventory.excludedSchemas.has(e.namespace)) ||
      (this.o.skipExtensions && e.desc === "EXTENSION") ||
      e.desc === "DATABASE PROPERTIES" ||
      (["COMMENT", "SECURITY LABEL", "ACL"].includes(e.desc) && e.rest.startsWith("DATABASE ")));
    const kept = toc.filter((e) => !excluded.has(e.dumpId));
    const keptRelations = new Set(
      kept.filter((e) => e.catalogOid === PG_CLASS).map((e) => e.objectOid),
    );
    const keptConstraints = new Set(
      kept.filter((e) => e.catalogOid === PG_CONSTRAINT).map((e) => e.objectOid),
    );
    const tables: SourceTable[] = [];
    for (const table of inventory.tables) {
      if (keptRelations.has(table.oid)) tables.push(table);
      else log.warn(`skipping ${sqlName(table)}: its definition depends on a filtered object`);
    }
    // Build what the archive has an entry for; the rest is not ours to create.
    const indexes = inventory.indexes.filter((i) =>
      tables.some((t) => t.oid === i.tableOid) &&
      (i.constraint === null ? keptRelations.has(i.oid) : keptConstraints.has(i.constraint.oid))
    );
    const builtIndexes = new Set(indexes.filter((i) => i.constraint === null).map((i) => i.oid));
    const builtConstraints = new Set(
      indexes.filter((i) => i.constraint !== null).map((i) => i.constraint!.oid),
    );
    const sequences = inventory.sequences.filter((s) => keptRelations.has(s.oid));
    const pre = join(this.schemaDir, "pre.list");
    const post = join(this.schemaDir, "post.list");
    await Deno.writeTextFile(pre, useList(kept, () => true));
    await Deno.writeTextFile(
      post,
      useList(kept, (e) =>
        !(e.catalogOid === PG_CLASS && builtIndexes.has(e.objectOid)) &&
        !(e.catalogOid === PG_CONSTRAINT && builtConstraints.has(e.objectOid))),
    );
    return { pre, post, tables, indexes, sequences };
  }

  /**
   * Before a clean pre-data restore: foreign keys that point at the tables about
   * to be dropped would stop the DROP (they are post-data, not in the list).
   */
  async #dropForeignKeysTo(inventory: Inventory): Promise<void> {
    const names = [...inventory.tables, ...inventory.partitioned];
    if (names.length === 0) return;
    const target = await this.#connect("target");
    const values = names.map((t) => `(${quoteLiteral(t.schema)}, ${quoteLiteral(t.name)})`);
    const result = await target.query(
      `set search_path = '';
       select format('alter table %s drop constraint if exists %I', c.conrelid::regclass, c.conname)
         from pg_catalog.pg_constraint c
         join pg_catalog.pg_class r on r.oid = c.confrelid
         join pg_catalog.pg_namespace n on n.oid = r.relnamespace
        where c.contype = 'f' and (n.nspname, r.relname) in (values ${values.join(", ")})`,
    );
    try {
      for (const [statement] of result.rows) await target.query(statement!);
    } finally {
      await this.#closeQuietly(target);
    }
  }

  // --- data ------------------------------------------------------------------

  /** Plans the tables on the first run; reads the plan back on a resumed one. */
  async #plan(tables: SourceTable[]): Promise<TableState[]> {
    const recorded = readPlan(this.catalog.db);
    if (recorded.length > 0) return recorded;
    const source = await this.#connect("source");
    await beginInSnapshot(source, this.#snapshot);
    const planned: PlannedTable[] = [];
    try {
      for (const table of tables) {
        const parts = await planParts(source, table, this.o.split);
        const binary = this.o.copyFormat === "auto" && table.binarySafe &&
          table.columns.length > 0 && this.#source.major === this.#target.major;
        planned.push({
          oid: table.oid,
          schema: table.schema,
          name: table.name,
          bytes: table.bytes,
          reltuples: table.reltuples,
          splitKey: parts.length > 1 ? (table.splitKey ?? "ctid") : null,
          copyFormat: binary ? "binary" : "text",
          copyData: table.copyData,
          parts,
        });
      }
    } finally {
      await rollbackQuietly(source);
      await this.#closeQuietly(source);
    }
    await savePlan(this.catalog, planned);
    return readPlan(this.catalog.db);
  }

  async #copyData(
    inventory: Inventory,
    tables: SourceTable[],
    indexes: SourceIndex[],
    then: { afterCopy: () => Promise<void>; afterIndexes: () => Promise<void> },
  ) {
    const plan = await this.#plan(tables);
    const byOid = new Map(tables.map((t) => [t.oid, t]));
    for (const state of plan) {
      if (!byOid.has(state.oid)) {
        throw new OperatorError(
          `Table ${state.schema}.${state.name} of the clone being resumed is gone from the source`,
          { hint: "pass --restart to start over" },
        );
      }
    }
    const indexState = await saveIndexes(
      this.catalog,
      indexes.map((i) => ({
        oid: i.oid,
        tableOid: i.tableOid,
        schema: i.schema,
        name: i.name,
        constraintName: i.constraint?.name ?? null,
        kind: indexKind(i),
      })),
    );
    const indexesOf = new Map<number, SourceIndex[]>();
    for (const index of indexes) {
      const state = indexState.get(index.oid);
      const done = state?.doneAt != null &&
        (index.constraint === null || state.constraintDoneAt != null);
      if (done) continue;
      const list = indexesOf.get(index.tableOid) ?? [];
      list.push(index);
      indexesOf.set(index.tableOid, list);
    }

    type PartJob = { table: TableState; part: PartState; deleteFirst: boolean };
    const copyQueue = new WorkQueue<PartJob>();
    const indexQueue = new WorkQueue<{ table: TableState; index: SourceIndex }>();
    const vacuumQueue = new WorkQueue<TableState>();
    this.#queues = [copyQueue, indexQueue, vacuumQueue] as WorkQueue<unknown>[];

    const partsLeft = new Map<number, number>();
    const indexesLeft = new Map<number, { count: number; started: number }>();
    const truncations = new Map<number, Promise<void>>();

    const wantsIndexes = this.#wants("indexes");
    const wantsVacuum = this.#wants("vacuum") && !this.o.skipVacuum;
    const queueVacuum = (table: TableState) => {
      if (wantsVacuum && !table.vacuumDone) vacuumQueue.push(table);
    };
    const tableCopied = async (table: TableState) => {
      if (!wantsIndexes) return;
      const pending = indexesOf.get(table.oid) ?? [];
      if (pending.length === 0) {
        if (!table.indexesDone) await markIndexesDone(this.catalog, table.oid, 0);
        queueVacuum(table);
        return;
      }
      indexesLeft.set(table.oid, { count: pending.length, started: performance.now() });
      for (const index of pending) indexQueue.push({ table, index });
    };

    const jobs: PartJob[] = [];
    const copiedAlready: TableState[] = [];
    for (let table of plan) {
      const undone = table.parts.filter((p) => p.doneAt === null);
      const interrupted = undone.some((p) => p.startedAt !== null);
      if (table.parts.length > 1 && table.splitKey === "ctid" && interrupted) {
        // The rows of a CTID part cannot be told apart on the target. An interrupted
        // COPY was rolled back, unless it committed just before the crash: then the
        // target has more rows than the finished parts, and all parts are redone.
        const target = await this.#connect("target");
        const counted = Number(
          (await target.query(`select count(*) from only ${sqlName(table)}`)).rows[0]?.[0],
        );
        await this.#closeQuietly(target);
        const expected = table.parts.reduce((sum, p) => sum + (p.doneAt ? p.rows ?? 0 : 0), 0);
        if (counted !== expected) {
          log.info(`${table.schema}.${table.name}: copying all its CTID parts again`);
          await resetParts(this.catalog, table.oid);
          table = readPlan(this.catalog.db).find((t) => t.oid === table.oid)!;
          undone.splice(0, undone.length, ...table.parts);
        }
      }
      if (undone.length === 0) {
        copiedAlready.push(table);
        continue;
      }
      partsLeft.set(table.oid, undone.length);
      for (const part of undone) {
        jobs.push({
          table,
          part,
          deleteFirst: part.startedAt !== null && table.parts.length > 1 &&
            table.splitKey !== "ctid",
        });
      }
    }
    if (this.#wants("copy")) copyQueue.push(...jobs);
    copyQueue.close();
    for (const table of copiedAlready) {
      if (!table.indexesDone) await tableCopied(table);
      else queueVacuum(table);
    }

    const copyStarted = performance.now();
    // A step done before, or not this run's to do, is neither started nor finished again.
    const wasDone = (step: CloneStep) => stepDone(this.catalog.db, step) || !this.#wants(step);
    const copyDone = wasDone("copy");
    const indexesDone = wasDone("indexes");
    const vacuumDone = wasDone("vacuum");
    if (!copyDone) await startStep(this.catalog, "copy");
    const truncateOnce = (target: CopyConnection, table: TableState): Promise<void> => {
      let promise = truncations.get(table.oid);
      if (promise === undefined) {
        promise = (async () => {
          if (table.truncated || table.parts.some((p) => p.doneAt !== null)) return;
          await target.query(`truncate only ${sqlName(table)}`);
          await markTruncated(this.catalog, table.oid);
        })();
        truncations.set(table.oid, promise);
      }
      return promise;
    };

    const copyPhase = async () => {
      await copyQueue.run(
        this.o.tableJobs,
        () => ({} as { source?: CopyConnection; target?: CopyConnection }),
        async (job, conns) => {
          const table = byOid.get(job.table.oid)!;
          const label = `${sqlName(table)}${
            job.table.parts.length > 1 ? ` part ${job.part.part + 1}/${job.table.parts.length}` : ""
          }`;
          const started = performance.now();
          let count = { rows: 0, bytes: 0 };
          if (job.table.copyData) {
            conns.source = await this.#reuse(conns.source, "source");
            conns.target = await this.#reuse(conns.target, "target");
            await markPartStarted(this.catalog, job.table.oid, job.part.part);
            const split = job.table.parts.length > 1;
            if (split) await truncateOnce(conns.target, job.table);
            // The catalog hears how far a long COPY got, every 2 s at most.
            let reported = performance.now();
            let pending: Promise<void> = Promise.resolve();
            const onProgress = (bytes: number) => {
              const now = performance.now();
              if (now - reported < 2000) return;
              reported = now;
              pending = pending.then(() =>
                markPartProgress(this.catalog, job.table.oid, job.part.part, bytes)
              ).catch(() => {});
            };
            try {
              count = await copyTablePart(conns.source, conns.target, {
                table,
                where: job.part.where,
                format: job.table.copyFormat,
                truncate: !split,
                deleteFirst: job.deleteFirst,
                snapshot: this.#snapshot,
                onProgress,
              });
              await pending;
            } catch (err) {
              throw new OperatorError(`Cannot copy ${label}: ${errorMessage(err)}`, { cause: err });
            }
          }
          const ms = performance.now() - started;
          await markPartDone(this.catalog, job.table.oid, job.part.part, {
            ...count,
            durationMs: ms,
          });
          log.info(
            `copied ${label}: ${count.rows} rows, ${formatBytes(count.bytes)} in ${
              formatDuration(ms)
            }${job.table.copyData ? "" : " (data excluded by filters)"}`,
          );
          const left = partsLeft.get(job.table.oid)! - 1;
          partsLeft.set(job.table.oid, left);
          if (left === 0) await tableCopied(job.table);
        },
        (conns) => this.#closeQuietly(conns.source, conns.target),
      );
      if (!copyDone) await finishStep(this.catalog, "copy", performance.now() - copyStarted);
      // Every table is queued for its indexes by now.
      indexQueue.close();
      await this.#step("large-objects", async () => {
        if (this.o.skipLargeObjects) return "skipped";
        return await this.#copyLargeObjects(inventory.largeObjects);
      });
      await this.#releaseSnapshot();
      await then.afterCopy();
    };

    const indexPhase = async () => {
      const indexStarted = performance.now();
      if (!indexesDone) await startStep(this.catalog, "indexes");
      await indexQueue.run(
        this.o.indexJobs,
        () => ({} as { target?: CopyConnection }),
        async ({ table, index }, conns) => {
          conns.target = await this.#reuse(conns.target, "target", {
            maintenance_work_mem: this.o.maintenanceWorkMem,
          });
          const state = indexState.get(index.oid);
          const started = performance.now();
          await markIndexStarted(this.catalog, index.oid);
          let indexDone = state?.doneAt != null;
          try {
            await buildIndex(conns.target, index, {
              indexDone,
              constraintDone: state?.constraintDoneAt != null,
            }, async () => {
              if (!indexDone) {
                await markIndexDone(this.catalog, index.oid, performance.now() - started);
                indexDone = true;
              }
            });
          } catch (err) {
            throw new OperatorError(
              `Cannot build ${indexKind(index)} ${sqlName(index)}: ${errorMessage(err)}`,
              { cause: err },
            );
          }
          const ms = performance.now() - started;
          if (!indexDone) await markIndexDone(this.catalog, index.oid, ms);
          if (index.constraint !== null) await markConstraintDone(this.catalog, index.oid);
          log.info(`built ${indexKind(index)} ${sqlName(index)} in ${formatDuration(ms)}`);
          const left = indexesLeft.get(table.oid)!;
          left.count--;
          if (left.count === 0) {
            await markIndexesDone(this.catalog, table.oid, performance.now() - left.started);
            queueVacuum(table);
          }
        },
        (conns) => this.#closeQuietly(conns.target),
      );
      if (!indexesDone) {
        await finishStep(this.catalog, "indexes", performance.now() - indexStarted);
      }
      vacuumQueue.close();
      await then.afterIndexes();
    };

    const vacuumPhase = async () => {
      const vacuumStarted = performance.now();
      if (!vacuumDone) await startStep(this.catalog, "vacuum");
      await vacuumQueue.run(
        this.o.tableJobs,
        () => ({} as { target?: CopyConnection }),
        async (table, conns) => {
          conns.target = await this.#reuse(conns.target, "target");
          const started = performance.now();
          await conns.target.query(`vacuum (analyze) ${sqlName(table)}`);
          const ms = performance.now() - started;
          await markVacuumDone(this.catalog, table.oid, ms);
          log.info(`vacuumed ${table.schema}.${table.name} in ${formatDuration(ms)}`);
        },
        (conns) => this.#closeQuietly(conns.target),
      );
      if (!this.o.skipVacuum && !vacuumDone && inventory.partitioned.length > 0) {
        const target = await this.#connect("target");
        try {
          for (const table of inventory.partitioned) {
            await target.query(`analyze ${sqlName(table)}`);
          }
        } finally {
          await this.#closeQuietly(target);
        }
      }
      if (!vacuumDone) {
        await finishStep(
          this.catalog,
          "vacuum",
          performance.now() - vacuumStarted,
          this.o.skipVacuum ? "skipped" : undefined,
        );
      }
    };

    const phases = [copyPhase(), indexPhase(), vacuumPhase()].map((p) =>
      p.catch((err) => {
        for (const queue of this.#queues) queue.fail(err);
        throw err;
      })
    );
    const results = await Promise.allSettled(phases);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  async #copyLargeObjects(oids: number[]): Promise<string> {
    if (oids.length === 0) return "none";
    const queue = new WorkQueue<number>();
    this.#queues.push(queue as WorkQueue<unknown>);
    queue.push(...oids);
    queue.close();
    let bytes = 0;
    await queue.run(
      this.o.tableJobs,
      () => ({} as { source?: CopyConnection; target?: CopyConnection }),
      async (oid, conns) => {
        if (conns.source === undefined) {
          conns.source = await this.#connect("source");
          await beginInSnapshot(conns.source, this.#snapshot);
        }
        conns.target = await this.#reuse(conns.target, "target");
        try {
          bytes += await copyLargeObject(conns.source, conns.target, oid);
        } catch (err) {
          await rollbackQuietly(conns.target);
          throw new OperatorError(`Cannot copy large object ${oid}: ${errorMessage(err)}`, {
            cause: err,
          });
        }
      },
      (conns) => this.#closeQuietly(conns.source, conns.target),
    );
    return `${oids.length} large objects, ${formatBytes(bytes)}`;
  }

  // --- helpers ---------------------------------------------------------------

  /** Restores one section of the archive on the target, in one transaction. */
  async #restore(
    dumpFile: string,
    options: Pick<RestoreOptions, "section" | "list" | "clean">,
  ): Promise<void> {
    const script = await restoreScript(dumpFile, {
      ...options,
      major: this.#source.major,
      noOwner: this.o.noOwner,
      noAcl: this.o.noAcl,
      noComments: this.o.noComments,
    });
    const target = await this.#connect("target");
    try {
      await target.query(script);
    } catch (err) {
      await rollbackQuietly(target);
      const code = (err as { code?: string }).code ?? "";
      const duplicate = ["42P07", "42710", "42P06", "42723"].includes(code);
      throw new OperatorError(
        `Cannot restore the ${options.section} section: ${errorMessage(err)}`,
        {
          cause: err,
          hint: duplicate && options.section === "pre-data"
            ? "the target already has objects of these names: pass --drop-if-exists to replace them"
            : `the script is "pg_restore --section=${options.section} --use-list ${options.list} --file=- ${dumpFile}"`,
        },
      );
    } finally {
      await this.#closeQuietly(target);
    }
  }

  /** Runs a step unless the catalog says it is done; records and logs it. */
  async #step(
    name: CloneStep,
    fn: () => Promise<string | void>,
    options: { skipIfDone?: boolean } = {},
  ): Promise<void> {
    if (!this.#wants(name)) return;
    if (stepDone(this.catalog.db, name) && (options.skipIfDone ?? true)) {
      log.info(`step ${name}: done in an earlier run`);
      return;
    }
    this.o.signal?.throwIfAborted();
    const started = performance.now();
    await startStep(this.catalog, name);
    const detail = await fn();
    const ms = performance.now() - started;
    await finishStep(this.catalog, name, ms, detail ?? undefined);
    log.info(`step ${name} done in ${formatDuration(ms)}${detail ? `: ${detail}` : ""}`);
  }

  async #connect(
    role: "source" | "target",
    extra: Record<string, string> = {},
  ): Promise<CopyConnection> {
    this.o.signal?.throwIfAborted();
    const connection = await CopyConnection.connect(
      role === "source" ? this.o.source : this.o.target,
      { role, parameters: { ...this.#sessions[role], ...extra } },
    );
    this.#connections.add(connection);
    return connection;
  }

  /** The worker's connection, or a new one when it has none or it broke. */
  async #reuse(
    connection: CopyConnection | undefined,
    role: "source" | "target",
    extra: Record<string, string> = {},
  ): Promise<CopyConnection> {
    if (connection?.usable) return connection;
    if (connection) this.#connections.delete(connection);
    return await this.#connect(role, extra);
  }

  async #closeQuietly(...connections: (CopyConnection | undefined)[]): Promise<void> {
    for (const connection of connections) {
      if (connection === undefined) continue;
      this.#connections.delete(connection);
      await connection.close().catch(() => {});
    }
  }

  #abort(): void {
    const reason = this.o.signal?.reason ?? new Error("Interrupted");
    for (const queue of this.#queues) queue.fail(reason);
    for (const connection of this.#connections) connection.close().catch(() => {});
  }

  async closeAll(): Promise<void> {
    await this.#releaseSnapshot();
    await this.#closeQuietly(...this.#connections);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
