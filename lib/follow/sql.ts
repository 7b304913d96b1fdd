/**
 * Change → SQL for the target. Values stay text and have no declared type: the
 * server reads each one with the type of the column it meets (INSERT target,
 * SET target, or the other side of `=`), so no value is ever interpreted in
 * JavaScript and user-defined types need no casts.
 */
import type {
  Column,
  Delete,
  Insert,
  OldTuple,
  Truncate,
  Tuple,
  Update,
  Value,
} from "../decode/change.ts";
import { isUnchangedToast } from "../decode/change.ts";
import { qualifiedName, quoteIdent } from "../pg/quote.ts";

/** What apply knows about a table on the target (see queries.ts `targetTable`). */
export interface TargetTable {
  schema: string;
  table: string;
  /** A partitioned table: TRUNCATE must not say ONLY. */
  partitioned: boolean;
  /**
   * GENERATED ALWAYS identity columns: INSERT needs OVERRIDING SYSTEM VALUE,
   * and UPDATE cannot set them (their value never changes).
   */
  alwaysIdentity: Set<string>;
  /** The replica identity index's columns (else the primary key's); empty when none. */
  keyColumns: string[];
  /** Stored generated columns: never written. */
  generated: Set<string>;
  /**
   * No unique or exclusion index but the key's, and no trigger or rule that
   * fires in replica mode: apply may merge its changes (see net_changes.ts).
   */
  reorderable: boolean;
  /** Each column's type, schema-qualified and without typmod, for a cast. */
  columnTypes: Map<string, string>;
  /**
   * Columns of an array type (or a domain over one), or of a type whose array
   * elements are not separated by commas (box): never passed as array elements.
   */
  arrayColumns: Set<string>;
}

/**
 * One statement: its text with `$n` placeholders (the same text for every row
 * of the same shape, so apply can prepare it once) and the values, as text.
 */
export interface Statement {
  text: string;
  values: (string | null)[];
  /**
   * An INSERT's text before VALUES: rows of the same shape that follow one
   * another can go as one multi-row INSERT.
   */
  head?: string;
}

/** Types without an equality operator: compared as text when a whole old row identifies a row. */
const NO_EQUALITY = new Set([
  "json",
  "xml",
  "point",
  "lseg",
  "box",
  "path",
  "polygon",
  "line",
  "circle",
]);

/** Collects values and hands out their placeholders. */
class Values {
  readonly values: (string | null)[] = [];
  add(value: string | null): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

function equals(column: Column, placeholder: string): string {
  const base = (column.typeName ?? "").replace(/\[\]$/, "");
  return NO_EQUALITY.has(base)
    ? `${quoteIdent(column.name)}::text = ${placeholder}::text`
    : `${quoteIdent(column.name)} = ${placeholder}`;
}

export function insertSql(change: Insert, target: TargetTable): Statement {
  const names: string[] = [];
  const placeholders: string[] = [];
  const values = new Values();
  forEachValue(change.new, target, (column, value) => {
    names.push(quoteIdent(column.name));
    placeholders.push(values.add(value));
  });
  const overriding = target.alwaysIdentity.size > 0 ? " overriding system value" : "";
  const head = `insert into ${qualifiedName(target.schema, target.table)} (${
    names.join(", ")
  })${overriding}`;
  return { text: `${head} values (${placeholders.join(", ")})`, values: values.values, head };
}

/** The UPDATE, or undefined when it would set nothing (every new value is unchanged TOAST). */
export function updateSql(change: Update, target: TargetTable): Statement | undefined {
  const sets: string[] = [];
  const values = new Values();
  forEachValue(change.new, target, (column, value) => {
    if (target.alwaysIdentity.has(column.name)) return;
    sets.push(`${quoteIdent(column.name)} = ${values.add(value)}`);
  });
  if (sets.length === 0) return undefined;
  const where = identify(change.old, change.new, target, values, "update");
  const table = qualifiedName(target.schema, target.table);
  return {
    text: where.byCtid
      ? `update ${table} set ${
        sets.join(", ")
      } where ctid = (select ctid from ${table} where ${where.text} limit 1)`
      : `update ${table} set ${sets.join(", ")} where ${where.text}`,
    values: values.values,
  };
}

export function deleteSql(change: Delete, target: TargetTable): Statement {
  if (change.old === null) {
    throw new RangeError(
      `Cannot delete from ${
        qualifiedName(target.schema, target.table)
      } at ${change.lsn}: the source sent no old row (REPLICA IDENTITY NOTHING)`,
    );
  }
  const values = new Values();
  const where = identify(change.old, null, target, values, "delete");
  const table = qualifiedName(target.schema, target.table);
  return {
    text: where.byCtid
      ? `delete from ${table} where ctid = (select ctid from ${table} where ${where.text} limit 1)`
      : `delete from ${table} where ${where.text}`,
    values: values.values,
  };
}

/** TRUNCATE of several tables at once; partitioned ones without ONLY so that it reaches their partitions. */
export function truncateSql(change: Truncate, targets: TargetTable[]): Statement {
  const names = targets.map((t) =>
    `${t.partitioned ? "" : "only "}${qualifiedName(t.schema, t.table)}`
  );
  return {
    text: `truncate ${names.join(", ")}${change.restartIdentity ? " restart identity" : ""}${
      change.cascade ? " cascade" : ""
    }`,
    values: [],
  };
}

/** Calls `fn` for each column value to write: not generated, not unchanged TOAST. */
function forEachValue(
  tuple: Tuple,
  target: TargetTable,
  fn: (column: Column, value: string | null) => void,
) {
  tuple.columns.forEach((column, i) => {
    const value = tuple.values[i] as Value;
    if (isUnchangedToast(value) || target.generated.has(column.name)) return;
    fn(column, value);
  });
}

/**
 * The WHERE clause that finds the old row: the old key, the whole old row
 * (REPLICA IDENTITY FULL: then at most one row, by ctid, since rows may repeat),
 * or the key columns of the new row when the key did not change.
 */
function identify(
  old: OldTuple | null,
  next: Tuple | null,
  target: TargetTable,
  values: Values,
  what: string,
): { text: string; byCtid: boolean } {
  const terms: string[] = [];
  const add = (column: Column, value: string | null, nullable: boolean) => {
    if (value === null) {
      if (nullable) terms.push(`${quoteIdent(column.name)} is null`);
      return;
    }
    terms.push(equals(column, values.add(value)));
  };
  if (old !== null) {
    old.columns.forEach((column, i) => {
      const value = old.values[i] as Value;
      if (isUnchangedToast(value) || target.generated.has(column.name)) return;
      add(column, value, old.kind === "row");
    });
    if (terms.length > 0) return { text: terms.join(" and "), byCtid: old.kind === "row" };
  }
  if (next !== null) {
    const flagged = next.columns.some((c) => c.key);
    next.columns.forEach((column, i) => {
      const isKey = flagged ? column.key : target.keyColumns.includes(column.name);
      const value = next.values[i] as Value;
      if (isKey && !isUnchangedToast(value)) add(column, value, false);
    });
    if (terms.length > 0) return { text: terms.join(" and "), byCtid: false };
  }
  throw new RangeError(
    `Cannot ${what} a row of ${qualifiedName(target.schema, target.table)}: no key to find it by`,
  );
}
