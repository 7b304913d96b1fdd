/**
 * `compare data`: for every table of the source, the row count and an MD5 of
 * all its rows in key order — `COPY (SELECT … ORDER BY key) TO STDOUT` in text
 * with the same session settings on both sides, hashed as the bytes arrive —
 * computed on source and target at the same time. Tables without a key sort
 * by the text of the whole row. Sequences compare `last_value` and `is_called`.
 */
import { CopyConnection } from "../pg/copy_connection.ts";
import { quoteIdent } from "../pg/quote.ts";
import {
  type Filters,
  noFilters,
  type QualifiedName,
  tableDataExcluded,
  tableExcluded,
} from "./filters.ts";
import { sqlName } from "./inventory.ts";
import { COMPARED_SEQUENCES, COMPARED_TABLES } from "./queries.ts";
import { WorkQueue } from "./work_queue.ts";

/** One side's view of a table (or a sequence). */
export interface DataChecksum {
  rows: number;
  /** MD5 of the rows in key order; for a sequence, `last_value/is_called`. */
  checksum: string;
}

/** The comparison of one table or sequence. */
export interface DataDifference {
  /** `schema.name` (unquoted), `sequence schema.name` for sequences. */
  table: string;
  source: DataChecksum | null;
  target: DataChecksum | null;
  /** Why one side has no checksum (the table is missing, a column differs, …). */
  error: string | null;
  equal: boolean;
}

/** What `compareData` found. */
export interface DataComparison {
  tables: DataDifference[];
  equal: boolean;
  /** Names of the tables (and sequences) that differ. */
  differing: string[];
}

export interface CompareDataOptions {
  /** Compare only what these filters keep (tables under exclude-table-data are skipped). */
  filters?: Filters;
  /** Tables compared at once (each on both sides). Default 4. */
  jobs?: number;
  /** Also compare sequences (default true). */
  sequences?: boolean;
}

/** Session settings that make the text of every value the same on both sides. */
const SESSION = {
  application_name: "pgferry compare",
  DateStyle: "ISO",
  IntervalStyle: "postgres",
  TimeZone: "UTC",
  extra_float_digits: "3",
  bytea_output: "hex",
  statement_timeout: "0",
};

interface ComparedTable {
  name: QualifiedName;
  columns: string[];
  /** `[column, collatable]`, or null when the table has no usable key. */
  key: [string, boolean][] | null;
}

function orderBy(table: ComparedTable): string {
  if (table.key === null || table.key.length === 0) {
    return `(t.*)::text collate "C"`;
  }
  return table.key.map(([column, collatable]) =>
    `t.${quoteIdent(column)}${collatable ? ` collate "C"` : ""}`
  ).join(", ");
}

/** The query whose COPY output is hashed. */
export function checksumSql(table: ComparedTable): string {
  const columns = table.columns.map((c) => `t.${quoteIdent(c)}`).join(", ");
  return `copy (select ${columns} from only ${sqlName(table.name)} t order by ${
    orderBy(table)
  }) to stdout`;
}

async function checksum(connection: CopyConnection, sql: string): Promise<DataChecksum> {
  const { createHash } = await import("node:crypto");
  const hash = createHash("md5");
  const count = await connection.copyOut(sql, (frames) => {
    hash.update(frames);
  });
  return { rows: count.rows, checksum: hash.digest("hex") };
}

/**
 * Compares the data of `source` and `target` table by table. Resolves with
 * the per-table result; it never throws for a difference, only when a server
 * cannot be reached.
 */
export async function compareData(
  source: string,
  target: string,
  options: CompareDataOptions = {},
): Promise<DataComparison> {
  const filters = options.filters ?? noFilters();
  const jobs = Math.max(1, options.jobs ?? 4);
  const tables: ComparedTable[] = [];
  const results: DataDifference[] = [];
  {
    await using src = await CopyConnection.connect(source, { role: "source", parameters: SESSION });
    await src.query("set search_path = ''");
    const rows = (await src.query(COMPARED_TABLES)).rows;
    for (const [, schema, name, ancestorsJson, columnsJson, keyJson] of rows) {
      const qualified = { schema: schema!, name: name! };
      const ancestors = (JSON.parse(ancestorsJson!) as [string, string][]).map(([s, n]) => ({
        schema: s,
        name: n,
      }));
      if (tableExcluded(filters, qualified, ancestors)) continue;
      if (tableDataExcluded(filters, qualified, ancestors)) continue;
      tables.push({
        name: qualified,
        columns: JSON.parse(columnsJson!) as string[],
        key: keyJson === null ? null : JSON.parse(keyJson!) as [string, boolean][],
      });
    }
    if (options.sequences ?? true) {
      results.push(...await compareSequences(src, target, filters));
    }
  }
  const queue = new WorkQueue<ComparedTable>();
  queue.push(...tables);
  queue.close();
  const tableResults = new Map<string, DataDifference>();
  await queue.run(
    jobs,
    () => ({} as { source?: CopyConnection; target?: CopyConnection }),
    async (table, conns) => {
      if (!conns.source?.usable) {
        conns.source = await CopyConnection.connect(source, {
          role: "source",
          parameters: SESSION,
        });
      }
      if (!conns.target?.usable) {
        conns.target = await CopyConnection.connect(target, {
          role: "target",
          parameters: SESSION,
        });
      }
      const sql = checksumSql(table);
      const [s, t] = await Promise.allSettled([
        checksum(conns.source, sql),
        checksum(conns.target, sql),
      ]);
      const name = `${table.name.schema}.${table.name.name}`;
      const error = [s, t].map((r, i) =>
        r.status === "rejected"
          ? `${i === 0 ? "source" : "target"}: ${
            r.reason instanceof Error ? r.reason.message : String(r.reason)
          }`
          : null
      ).filter(Boolean).join("; ");
      const src = s.status === "fulfilled" ? s.value : null;
      const tgt = t.status === "fulfilled" ? t.value : null;
      tableResults.set(name, {
        table: name,
        source: src,
        target: tgt,
        error: error === "" ? null : error,
        equal: src !== null && tgt !== null && src.rows === tgt.rows &&
          src.checksum === tgt.checksum,
      });
    },
    async (conns) => {
      await conns.source?.close();
      await conns.target?.close();
    },
  );
  for (const table of tables) {
    const name = `${table.name.schema}.${table.name.name}`;
    const result = tableResults.get(name);
    if (result) results.push(result);
  }
  results.sort((a, b) => a.table.localeCompare(b.table));
  const differing = results.filter((r) => !r.equal).map((r) => r.table);
  return { tables: results, equal: differing.length === 0, differing };
}

async function compareSequences(
  src: CopyConnection,
  target: string,
  filters: Filters,
): Promise<DataDifference[]> {
  const sequences: QualifiedName[] = [];
  for (const [schema, name, ownerSchema, ownerName] of (await src.query(COMPARED_SEQUENCES)).rows) {
    const qualified = { schema: schema!, name: name! };
    if (tableExcluded(filters, qualified)) continue;
    if (
      ownerSchema && ownerName && tableExcluded(filters, { schema: ownerSchema, name: ownerName })
    ) {
      continue;
    }
    sequences.push(qualified);
  }
  if (sequences.length === 0) return [];
  const sql = sequences.map((s, i) =>
    `select ${i}, last_value::text || '/' || is_called::text from ${sqlName(s)}`
  ).join(" union all ");
  const read = async (connection: CopyConnection) => {
    const values = new Map<number, string>();
    for (const [i, value] of (await connection.query(sql)).rows) values.set(Number(i), value!);
    return values;
  };
  const sourceValues = await read(src);
  let targetValues: Map<number, string> | undefined;
  let targetError: string | null = null;
  {
    await using tgt = await CopyConnection.connect(target, { role: "target", parameters: SESSION });
    try {
      targetValues = await read(tgt);
    } catch {
      // Read one by one to name the missing ones.
      targetValues = new Map();
      for (const [i, s] of sequences.entries()) {
        try {
          const row = (await tgt.query(
            `select last_value::text || '/' || is_called::text from ${sqlName(s)}`,
          )).rows[0];
          if (row) targetValues.set(i, row[0]!);
        } catch (err) {
          targetError = err instanceof Error ? err.message : String(err);
        }
      }
    }
  }
  return sequences.map((s, i) => {
    const sv = sourceValues.get(i) ?? null;
    const tv = targetValues?.get(i) ?? null;
    return {
      table: `sequence ${s.schema}.${s.name}`,
      source: sv === null ? null : { rows: 1, checksum: sv },
      target: tv === null ? null : { rows: 1, checksum: tv },
      error: tv === null ? targetError ?? "missing on the target" : null,
      equal: sv !== null && tv !== null && sv === tv,
    };
  });
}
