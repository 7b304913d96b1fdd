/**
 * Clone progress in the catalog: the plan (tables, their parts, indexes),
 * what is done, and the report `list progress` prints. Writers go through
 * `catalog.write`; readers (another process) need no lock.
 */
import type { DatabaseSync } from "node:sqlite";
import type { Catalog } from "../catalog/catalog.ts";

/** The steps of a clone, in order. */
export const CLONE_STEPS = [
  "dump-schema",
  "pre-data",
  "copy",
  "indexes",
  "vacuum",
  "large-objects",
  "sequences",
  "post-data",
  "clone",
] as const;

export type CloneStep = (typeof CLONE_STEPS)[number];

/** A table as planned: how it is copied and in how many parts. */
export interface PlannedTable {
  oid: number;
  schema: string;
  name: string;
  bytes: number;
  reltuples: number;
  splitKey: string | null;
  copyFormat: "text" | "binary";
  copyData: boolean;
  parts: { part: number; where: string | null }[];
}

/** A table's parts as recorded. */
export interface PartState {
  tableOid: number;
  part: number;
  parts: number;
  where: string | null;
  startedAt: string | null;
  doneAt: string | null;
  /** Rows copied, once done. */
  rows: number | null;
}

/** What the catalog says about one table. */
export interface TableState {
  oid: number;
  schema: string;
  name: string;
  bytes: number;
  splitKey: string | null;
  copyFormat: "text" | "binary";
  copyData: boolean;
  truncated: boolean;
  indexesDone: boolean;
  vacuumDone: boolean;
  parts: PartState[];
}

function now(): string {
  return new Date().toISOString();
}

/** True when the catalog holds any clone progress. */
export function hasCloneProgress(db: DatabaseSync): boolean {
  const row = db.prepare(
    "select (select count(*) from clone_step) + (select count(*) from clone_table) as n",
  ).get() as { n: number };
  return row.n > 0;
}

/** Forgets every clone step, table, part and index. */
export function clearCloneProgress(catalog: Catalog): Promise<void> {
  return catalog.write((db) => {
    db.exec(
      "delete from clone_step; delete from clone_table; delete from clone_table_part; delete from clone_index",
    );
  });
}

/** When a step finished, if it did. */
export function stepDone(db: DatabaseSync, step: CloneStep): boolean {
  const row = db.prepare("select done_at from clone_step where name = ?").get(step) as
    | { done_at: string | null }
    | undefined;
  return row?.done_at != null;
}

export function startStep(catalog: Catalog, step: CloneStep): Promise<void> {
  return catalog.write((db) => {
    db.prepare(
      `insert into clone_step (name, started_at) values (?, ?)
       on conflict (name) do update set started_at = excluded.started_at, done_at = null`,
    ).run(step, now());
  });
}

export function finishStep(
  catalog: Catalog,
  step: CloneStep,
  durationMs: number,
  detail?: string,
): Promise<void> {
  return catalog.write((db) => {
    db.prepare(
      `insert into clone_step (name, started_at, done_at, duration_ms, detail) values (?, ?, ?, ?, ?)
       on conflict (name) do update set done_at = excluded.done_at,
         duration_ms = excluded.duration_ms, detail = excluded.detail`,
    ).run(step, now(), now(), Math.round(durationMs), detail ?? null);
  });
}

/** Records the plan: tables and their parts. */
export function savePlan(catalog: Catalog, tables: PlannedTable[]): Promise<void> {
  return catalog.write((db) => {
    const table = db.prepare(
      `insert into clone_table (oid, nspname, relname, bytes, reltuples, parts, split_key, copy_format, copy_data)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const part = db.prepare(
      "insert into clone_table_part (table_oid, part, parts, where_clause) values (?, ?, ?, ?)",
    );
    for (const t of tables) {
      table.run(
        t.oid,
        t.schema,
        t.name,
        t.bytes,
        t.reltuples,
        t.parts.length,
        t.splitKey,
        t.copyFormat,
        t.copyData ? 1 : 0,
      );
      for (const p of t.parts) part.run(t.oid, p.part, t.parts.length, p.where);
    }
  });
}

/** The recorded plan with its progress, largest tables first. */
export function readPlan(db: DatabaseSync): TableState[] {
  const tables = db.prepare("select * from clone_table order by bytes desc, oid").all() as Record<
    string,
    unknown
  >[];
  const parts = db.prepare("select * from clone_table_part order by table_oid, part")
    .all() as Record<
      string,
      unknown
    >[];
  const partsOf = new Map<number, PartState[]>();
  for (const p of parts) {
    const oid = Number(p["table_oid"]);
    const list = partsOf.get(oid) ?? [];
    list.push({
      tableOid: oid,
      part: Number(p["part"]),
      parts: Number(p["parts"]),
      where: (p["where_clause"] as string | null) ?? null,
      startedAt: (p["started_at"] as string | null) ?? null,
      doneAt: (p["done_at"] as string | null) ?? null,
      rows: p["rows"] == null ? null : Number(p["rows"]),
    });
    partsOf.set(oid, list);
  }
  return tables.map((t) => ({
    oid: Number(t["oid"]),
    schema: t["nspname"] as string,
    name: t["relname"] as string,
    bytes: Number(t["bytes"]),
    splitKey: (t["split_key"] as string | null) ?? null,
    copyFormat: t["copy_format"] as "text" | "binary",
    copyData: Number(t["copy_data"]) === 1,
    truncated: Number(t["truncated"]) === 1,
    indexesDone: t["indexes_done_at"] != null,
    vacuumDone: t["vacuum_done_at"] != null,
    parts: partsOf.get(Number(t["oid"])) ?? [],
  }));
}

export function markTruncated(catalog: Catalog, tableOid: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare("update clone_table set truncated = 1 where oid = ?").run(tableOid);
  });
}

/** Forgets that the parts of a table were copied (a CTID-split table starts over). */
export function resetParts(catalog: Catalog, tableOid: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare(
      "update clone_table_part set started_at = null, done_at = null, rows = null, bytes = null, duration_ms = null where table_oid = ?",
    ).run(tableOid);
    db.prepare("update clone_table set truncated = 0 where oid = ?").run(tableOid);
  });
}

export function markPartStarted(catalog: Catalog, tableOid: number, part: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare(
      "update clone_table_part set started_at = ?, done_at = null, pid = ? where table_oid = ? and part = ?",
    ).run(now(), Deno.pid, tableOid, part);
  });
}

/** The bytes a running part has passed so far, for `list progress`. */
export function markPartProgress(
  catalog: Catalog,
  tableOid: number,
  part: number,
  bytes: number,
): Promise<void> {
  return catalog.write((db) => {
    db.prepare(
      "update clone_table_part set bytes = ? where table_oid = ? and part = ? and done_at is null",
    ).run(bytes, tableOid, part);
  });
}

export function markPartDone(
  catalog: Catalog,
  tableOid: number,
  part: number,
  result: { rows: number; bytes: number; durationMs: number },
): Promise<void> {
  return catalog.write((db) => {
    db.prepare(
      "update clone_table_part set done_at = ?, rows = ?, bytes = ?, duration_ms = ? where table_oid = ? and part = ?",
    ).run(now(), result.rows, result.bytes, Math.round(result.durationMs), tableOid, part);
  });
}

/** An index (or constraint) as recorded. */
export interface IndexState {
  oid: number;
  doneAt: string | null;
  constraintDoneAt: string | null;
}

/** Records the indexes to build, keeping the progress of those already known. */
export function saveIndexes(
  catalog: Catalog,
  indexes: {
    oid: number;
    tableOid: number;
    schema: string;
    name: string;
    constraintName: string | null;
    kind: string;
  }[],
): Promise<Map<number, IndexState>> {
  return catalog.write((db) => {
    const insert = db.prepare(
      `insert into clone_index (oid, table_oid, nspname, relname, constraint_name, kind)
       values (?, ?, ?, ?, ?, ?) on conflict (oid) do nothing`,
    );
    for (const i of indexes) {
      insert.run(i.oid, i.tableOid, i.schema, i.name, i.constraintName, i.kind);
    }
    const rows = db.prepare("select oid, done_at, constraint_done_at from clone_index").all() as {
      oid: number;
      done_at: string | null;
      constraint_done_at: string | null;
    }[];
    return new Map(rows.map((r) => [Number(r.oid), {
      oid: Number(r.oid),
      doneAt: r.done_at,
      constraintDoneAt: r.constraint_done_at,
    }]));
  });
}

export function markIndexStarted(catalog: Catalog, oid: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare("update clone_index set started_at = ?, pid = ? where oid = ?").run(
      now(),
      Deno.pid,
      oid,
    );
  });
}

export function markIndexDone(catalog: Catalog, oid: number, durationMs: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare("update clone_index set done_at = ?, duration_ms = ? where oid = ?").run(
      now(),
      Math.round(durationMs),
      oid,
    );
  });
}

export function markConstraintDone(catalog: Catalog, oid: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare("update clone_index set constraint_done_at = ? where oid = ?").run(now(), oid);
  });
}

export function markIndexesDone(catalog: Catalog, tableOid: number, ms: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare("update clone_table set indexes_done_at = ?, index_ms = ? where oid = ?").run(
      now(),
      Math.round(ms),
      tableOid,
    );
  });
}

export function markVacuumDone(catalog: Catalog, tableOid: number, ms: number): Promise<void> {
  return catalog.write((db) => {
    db.prepare("update clone_table set vacuum_done_at = ?, vacuum_ms = ? where oid = ?").run(
      now(),
      Math.round(ms),
      tableOid,
    );
  });
}

// ---------------------------------------------------------------------------
// The report

/** One row of the per-table summary. */
export interface TableReport {
  table: string;
  /** Size on the source (pg_table_size) when planned. */
  size: number;
  /** COPY bytes of the parts still running. */
  inflight: number;
  parts: number;
  partsDone: number;
  rows: number;
  bytes: number;
  copyMs: number;
  indexes: number;
  indexesDone: number;
  indexMs: number;
  vacuumMs: number | null;
  state: "pending" | "copying" | "indexing" | "done";
}

/** One step. */
export interface StepReport {
  step: string;
  state: "pending" | "running" | "done";
  startedAt: string | null;
  doneAt: string | null;
  durationMs: number | null;
  detail: string | null;
}

/** Work started and not finished: a COPY part or an index build. */
export interface RunningReport {
  kind: "copy" | "index";
  name: string;
  startedAt: string;
  pid: number | null;
}

/** Everything `list progress` shows. */
export interface ProgressReport {
  steps: StepReport[];
  tables: TableReport[];
  running: RunningReport[];
  totals: {
    tables: number;
    tablesDone: number;
    parts: number;
    partsDone: number;
    indexes: number;
    indexesDone: number;
    rows: number;
    bytes: number;
  };
}

/** Reads the progress of the clone in this catalog. */
export function readProgress(db: DatabaseSync): ProgressReport {
  const stepRows = db.prepare("select * from clone_step").all() as Record<string, unknown>[];
  const stepMap = new Map(stepRows.map((r) => [r["name"] as string, r]));
  const steps: StepReport[] = CLONE_STEPS.map((step) => {
    const r = stepMap.get(step);
    return {
      step,
      state: r === undefined ? "pending" : r["done_at"] != null ? "done" : "running",
      startedAt: (r?.["started_at"] as string | null) ?? null,
      doneAt: (r?.["done_at"] as string | null) ?? null,
      durationMs: r?.["duration_ms"] == null ? null : Number(r["duration_ms"]),
      detail: (r?.["detail"] as string | null) ?? null,
    };
  });
  const tables = db.prepare(
    `select t.oid, t.nspname, t.relname, t.parts, t.copy_data, t.bytes as size,
            t.indexes_done_at, t.index_ms, t.vacuum_ms,
            (select count(*) from clone_table_part p where p.table_oid = t.oid and p.done_at is not null) as parts_done,
            (select coalesce(sum(rows), 0) from clone_table_part p where p.table_oid = t.oid) as rows,
            (select coalesce(sum(bytes), 0) from clone_table_part p where p.table_oid = t.oid) as bytes,
            (select coalesce(max(duration_ms), 0) from clone_table_part p where p.table_oid = t.oid) as copy_ms,
            (select coalesce(sum(bytes), 0) from clone_table_part p where p.table_oid = t.oid and p.done_at is null) as inflight,
            (select count(*) from clone_index i where i.table_oid = t.oid) as indexes,
            (select count(*) from clone_index i where i.table_oid = t.oid and i.done_at is not null) as indexes_done
       from clone_table t order by t.bytes desc, t.oid`,
  ).all() as Record<string, unknown>[];
  const tableReports: TableReport[] = tables.map((t) => {
    const parts = Number(t["parts"]);
    const partsDone = Number(t["parts_done"]);
    const indexes = Number(t["indexes"]);
    const indexesDone = Number(t["indexes_done"]);
    const started = partsDone > 0;
    return {
      table: `${t["nspname"]}.${t["relname"]}`,
      size: Number(t["size"]),
      inflight: Number(t["inflight"]),
      parts,
      partsDone,
      rows: Number(t["rows"]),
      bytes: Number(t["bytes"]),
      copyMs: Number(t["copy_ms"]),
      indexes,
      indexesDone,
      indexMs: Number(t["index_ms"] ?? 0),
      vacuumMs: t["vacuum_ms"] == null ? null : Number(t["vacuum_ms"]),
      state: partsDone < parts
        ? (started ? "copying" : "pending")
        : t["indexes_done_at"] == null
        ? "indexing"
        : "done",
    };
  });
  const running: RunningReport[] = [
    ...(db.prepare(
      `select t.nspname, t.relname, p.part, p.parts, p.started_at, p.pid
         from clone_table_part p join clone_table t on t.oid = p.table_oid
        where p.started_at is not null and p.done_at is null order by p.started_at`,
    ).all() as Record<string, unknown>[]).map((r) => ({
      kind: "copy" as const,
      name: `${r["nspname"]}.${r["relname"]}${
        Number(r["parts"]) > 1 ? ` part ${Number(r["part"]) + 1}/${r["parts"]}` : ""
      }`,
      startedAt: r["started_at"] as string,
      pid: r["pid"] == null ? null : Number(r["pid"]),
    })),
    ...(db.prepare(
      `select nspname, relname, started_at, pid from clone_index
        where started_at is not null and done_at is null order by started_at`,
    ).all() as Record<string, unknown>[]).map((r) => ({
      kind: "index" as const,
      name: `${r["nspname"]}.${r["relname"]}`,
      startedAt: r["started_at"] as string,
      pid: r["pid"] == null ? null : Number(r["pid"]),
    })),
  ];
  const sum = (f: (t: TableReport) => number) => tableReports.reduce((s, t) => s + f(t), 0);
  return {
    steps,
    tables: tableReports,
    running,
    totals: {
      tables: tableReports.length,
      tablesDone: tableReports.filter((t) => t.state === "done").length,
      parts: sum((t) => t.parts),
      partsDone: sum((t) => t.partsDone),
      indexes: sum((t) => t.indexes),
      indexesDone: sum((t) => t.indexesDone),
      rows: sum((t) => t.rows),
      bytes: sum((t) => t.bytes),
    },
  };
}

/**
 * One line for a live display: the current step, tables and bytes done (by
 * source size, parts counted as they finish), the mean rate since the start,
 * the time left, and what runs now.
 */
export function statusLine(
  report: ProgressReport,
  elapsedMs: number,
): { line: string; doneBytes: number } {
  const step = report.steps.find((s) => s.state === "running")?.step ??
    (report.steps.every((s) => s.state === "done") ? "done" : "starting");
  const total = report.tables.reduce((sum, t) => sum + t.size, 0);
  // Finished parts count by size; running ones by the COPY bytes passed so far.
  const done = report.tables.reduce((sum, t) => {
    if (t.parts === 0) return sum;
    const part = t.size / t.parts;
    return sum + part * t.partsDone + Math.min(t.inflight, part * (t.parts - t.partsDone));
  }, 0);
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  const eta = rate > 0 && done < total
    ? ` · ETA ${formatDuration((total - done) / rate * 1000)}`
    : "";
  const t = report.totals;
  const running = report.running.map((r) => `${r.kind} ${r.name}`);
  return {
    line: `[${step}] tables ${t.tablesDone}/${t.tables} · indexes ${t.indexesDone}/${t.indexes} · ${
      formatBytes(done)
    } of ${formatBytes(total)} · ${formatBytes(rate)}/s${eta}${
      running.length > 0 ? ` · ${running.join(", ")}` : ""
    }`,
    doneBytes: done,
  };
}

/** `1.5 GB`, `312 kB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** `850 ms`, `12.3 s`, `4 min 05 s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return `${minutes} min ${String(seconds).padStart(2, "0")} s`;
}

/** A text table with right-aligned numbers. */
export function formatTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = header.map((_, i) =>
    rows.length > 0 && rows.every((r) => /^[\d.,]+( [a-zA-Z]+)?$|^-$/.test(r[i] ?? ""))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)];
}

/** The human form of a report: steps, then tables, then what runs now. */
export function formatProgress(report: ProgressReport): string[] {
  const lines: string[] = [];
  lines.push(
    ...formatTable(
      ["step", "state", "duration", "detail"],
      report.steps.map((s) => [
        s.step,
        s.state,
        s.durationMs === null ? "-" : formatDuration(s.durationMs),
        s.detail ?? "",
      ]),
    ),
  );
  lines.push("");
  lines.push(
    ...formatTable(
      ["table", "parts", "rows", "bytes", "copy", "indexes", "index time", "vacuum", "state"],
      report.tables.map((t) => [
        t.table,
        `${t.partsDone}/${t.parts}`,
        String(t.rows),
        formatBytes(t.bytes),
        formatDuration(t.copyMs),
        `${t.indexesDone}/${t.indexes}`,
        formatDuration(t.indexMs),
        t.vacuumMs === null ? "-" : formatDuration(t.vacuumMs),
        t.state,
      ]),
    ),
  );
  const totals = report.totals;
  lines.push(
    "",
    `tables ${totals.tablesDone}/${totals.tables} done, parts ${totals.partsDone}/${totals.parts}, indexes ${totals.indexesDone}/${totals.indexes}, ${totals.rows} rows, ${
      formatBytes(totals.bytes)
    }`,
  );
  for (const r of report.running) {
    lines.push(
      `running: ${r.kind} ${r.name} since ${r.startedAt}${r.pid ? ` (pid ${r.pid})` : ""}`,
    );
  }
  return lines;
}
