/**
 * What the source holds, as the clone needs it: the tables to copy, their
 * indexes and constraints, the sequences, and what the filters leave out.
 * Read inside the clone's snapshot, so that it matches the schema dump.
 */
import { CopyConnection } from "../pg/copy_connection.ts";
import { qualifiedName, quoteLiteral } from "../pg/quote.ts";
import {
  type Filters,
  indexExcluded,
  type QualifiedName,
  schemaExcluded,
  tableDataExcluded,
  tableExcluded,
} from "./filters.ts";
import { INDEXES, LARGE_OBJECTS, RELATIONS, SCHEMAS, TABLES } from "./queries.ts";

/** A table whose rows are copied (a plain table or a partition). */
export interface SourceTable {
  oid: number;
  schema: string;
  name: string;
  /** pg_table_size: heap, TOAST, maps. Orders the work, largest first. */
  bytes: number;
  /** The heap alone: what CTID ranges divide. */
  mainBytes: number;
  reltuples: number;
  /** Columns COPY names, generated ones left out. */
  columns: string[];
  generatedColumns: number;
  /** Every column may go through binary COPY between servers of the same major version. */
  binarySafe: boolean;
  /** A NOT NULL integer column with a unique index, to split the table by. */
  splitKey: string | null;
  /** False under `[exclude-table-data]`. */
  copyData: boolean;
}

/** An index of a copied table, and the constraint it backs when it does. */
export interface SourceIndex {
  oid: number;
  tableOid: number;
  schema: string;
  name: string;
  table: QualifiedName;
  /** pg_get_indexdef, schema-qualified. */
  definition: string;
  bytes: number;
  replicaIdentity: boolean;
  clustered: boolean;
  /** `[attnum, statistics target]` of index columns with a target set. */
  statistics: [number, number][];
  constraint: {
    oid: number;
    name: string;
    type: "p" | "u" | "x";
    definition: string;
    deferrable: boolean;
    deferred: boolean;
  } | null;
}

/** A sequence the clone sets on the target. */
export interface SourceSequence {
  oid: number;
  schema: string;
  name: string;
}

/** The source, filtered. */
export interface Inventory {
  schemas: string[];
  tables: SourceTable[];
  indexes: SourceIndex[];
  sequences: SourceSequence[];
  /** Partitioned tables, analyzed once their partitions are in. */
  partitioned: QualifiedName[];
  /** Relations (of any kind) the filters leave out. */
  excludedRelations: Set<number>;
  /** Indexes and the constraints they back that `[exclude-index]` leaves out. */
  excludedIndexes: Set<number>;
  excludedConstraints: Set<number>;
  /** Schemas the filters leave out. */
  excludedSchemas: Set<string>;
  largeObjects: number[];
}

type Row = Record<string, unknown>;

/**
 * Reads the inventory, inside `snapshot` when given. Each query's rows come
 * back as one JSON array (numbers, booleans and the queries' json columns
 * typed as postgres.js would give them), on a plain protocol connection.
 */
export async function readInventory(
  source: string,
  filters: Filters,
  snapshot: string | undefined,
): Promise<Inventory> {
  await using connection = await CopyConnection.connect(source, { role: "source" });
  await connection.query(
    `begin isolation level repeatable read read only${
      snapshot === undefined ? "" : `; set transaction snapshot ${quoteLiteral(snapshot)}`
    }; set local search_path = ''`,
  );
  const rows = async (sql: string): Promise<Row[]> => {
    const result = await connection.query(
      `select coalesce(pg_catalog.json_agg(q), '[]')::text from (${sql}) q`,
    );
    return JSON.parse(result.rows[0]![0]!) as Row[];
  };
  const inventory = buildInventory(
    filters,
    await rows(SCHEMAS),
    await rows(RELATIONS),
    await rows(TABLES),
    await rows(INDEXES),
    await rows(LARGE_OBJECTS),
  );
  await connection.query("commit");
  return inventory;
}

function buildInventory(
  filters: Filters,
  schemaRows: Row[],
  relationRows: Row[],
  tableRows: Row[],
  indexRows: Row[],
  largeObjectRows: Row[],
): Inventory {
  const schemas = schemaRows.map((r) => r["nspname"] as string);
  const excludedSchemas = new Set(schemas.filter((s) => schemaExcluded(filters, s)));
  const excludedRelations = new Set<number>();
  const ancestorsOf = new Map<number, QualifiedName[]>();
  const partitioned: QualifiedName[] = [];
  const sequences: SourceSequence[] = [];
  // Tables first, so that owned sequences can follow their table.
  for (const row of relationRows) {
    const oid = Number(row["oid"]);
    const kind = row["relkind"] as string;
    const name = { schema: row["nspname"] as string, name: row["relname"] as string };
    const ancestors = (row["ancestors"] as [string, string][]).map(([schema, rel]) => ({
      schema,
      name: rel,
    }));
    ancestorsOf.set(oid, ancestors);
    const excluded = ["r", "p", "m", "f"].includes(kind)
      ? tableExcluded(filters, name, ancestors)
      : excludedSchemas.has(name.schema);
    if (excluded) excludedRelations.add(oid);
    else if (kind === "p") partitioned.push(name);
  }
  for (const row of relationRows) {
    if (row["relkind"] !== "S") continue;
    const oid = Number(row["oid"]);
    const owner = row["owner_oid"] === null ? undefined : Number(row["owner_oid"]);
    if (owner !== undefined && excludedRelations.has(owner)) excludedRelations.add(oid);
    if (!excludedRelations.has(oid)) {
      sequences.push({ oid, schema: row["nspname"] as string, name: row["relname"] as string });
    }
  }
  const tables: SourceTable[] = [];
  for (const row of tableRows) {
    const oid = Number(row["oid"]);
    if (excludedRelations.has(oid)) continue;
    const name = { schema: row["nspname"] as string, name: row["relname"] as string };
    tables.push({
      oid,
      schema: name.schema,
      name: name.name,
      bytes: Number(row["bytes"]),
      mainBytes: Number(row["main_bytes"]),
      reltuples: Number(row["reltuples"]),
      columns: row["columns"] as string[],
      generatedColumns: Number(row["generated_columns"]),
      binarySafe: row["binary_safe"] === true,
      splitKey: (row["split_key"] as string | null) ?? null,
      copyData: !tableDataExcluded(filters, name, ancestorsOf.get(oid) ?? []),
    });
  }
  const copied = new Set(tables.map((t) => t.oid));
  const excludedIndexes = new Set<number>();
  const excludedConstraints = new Set<number>();
  const indexes: SourceIndex[] = [];
  for (const row of indexRows) {
    const tableOid = Number(row["table_oid"]);
    if (!copied.has(tableOid)) continue;
    const oid = Number(row["oid"]);
    const constraintOid = row["constraint_oid"] === null ? null : Number(row["constraint_oid"]);
    const name = { schema: row["nspname"] as string, name: row["relname"] as string };
    if (indexExcluded(filters, name)) {
      excludedIndexes.add(oid);
      if (constraintOid !== null) excludedConstraints.add(constraintOid);
      continue;
    }
    indexes.push({
      oid,
      tableOid,
      schema: name.schema,
      name: name.name,
      table: { schema: row["table_nspname"] as string, name: row["table_relname"] as string },
      definition: row["indexdef"] as string,
      bytes: Number(row["bytes"]),
      replicaIdentity: row["indisreplident"] === true,
      clustered: row["indisclustered"] === true,
      statistics: row["statistics"] as [number, number][],
      constraint: constraintOid === null ? null : {
        oid: constraintOid,
        name: row["conname"] as string,
        type: row["contype"] as "p" | "u" | "x",
        definition: row["constraintdef"] as string,
        deferrable: row["condeferrable"] === true,
        deferred: row["condeferred"] === true,
      },
    });
  }
  return {
    schemas,
    tables,
    indexes,
    sequences,
    partitioned,
    excludedRelations,
    excludedIndexes,
    excludedConstraints,
    excludedSchemas,
    largeObjects: largeObjectRows.map((r) => Number(r["oid"])),
  };
}

/** `"schema"."name"` of a table, index or sequence. */
export function sqlName(object: { schema: string; name: string }): string {
  return qualifiedName(object.schema, object.name);
}
