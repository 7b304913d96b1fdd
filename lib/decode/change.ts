/**
 * The Change model: what the decoders produce, the spool stores and apply
 * turns into SQL. One model for the three output plugins (pgoutput,
 * test_decoding, wal2json), so nothing downstream knows which one ran.
 *
 * A transaction is `Begin`, then `Insert` / `Update` / `Delete` / `Truncate`
 * changes, then `Commit`. Every change carries `lsn`, the `walStart` of the
 * XLogData message it came from (for all three plugins: the LSN of the WAL
 * record for a row change or TRUNCATE, the end of the commit record for a
 * COMMIT).
 *
 * Values are PostgreSQL's text representation, exactly what the type's output
 * function printed in the walsender session (see `DECODING_SESSION_SETTINGS`),
 * or `null` for SQL NULL. Apply passes them as text parameters and lets the
 * server parse them (with a parameter type OID, or an explicit cast to
 * `castType(column)`), so nothing is lost in a JavaScript number.
 *
 * Everything is plain data and structured-clone safe (MessageChannel). JSON
 * needs help only for the bigints: see `encodeChange` / `decodeChange`.
 */
import type { Lsn } from "../lsn.ts";

/**
 * A commit time: microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's own
 * `TimestampTz` (what pgoutput sends on the wire). `formatPgTimestamp()` turns
 * it into timestamptz text that `pg_replication_origin_xact_setup` reads back
 * to the microsecond.
 */
export type PgTimestamp = bigint;

/** A table, by name: what apply writes into SQL. */
export interface TableName {
  readonly schema: string;
  readonly table: string;
}

/** One column of a tuple. */
export interface Column {
  readonly name: string;
  /** `pg_type` OID; 0 when the plugin does not send it (test_decoding). */
  readonly typeOid: number;
  /**
   * The type as the plugin names it (`format_type` text, e.g. `integer[]`,
   * `character varying(10)`, `"my schema"."my type"`), or null when unknown.
   * Use `castType()` before writing it after `::`.
   */
  readonly typeName: string | null;
  /**
   * Part of the replica identity: a column of the primary key, or of the index
   * of `REPLICA IDENTITY USING INDEX`; every column of a `REPLICA IDENTITY FULL`
   * table (as pgoutput flags them).
   */
  readonly key: boolean;
}

/**
 * "This TOAST value did not change and was not sent": never a value. Apply
 * leaves such a column out of the UPDATE's SET list. Test it with
 * `isUnchangedToast()`: after structured clone or JSON the object is a copy,
 * so `=== UNCHANGED_TOAST` is not reliable.
 */
export interface UnchangedToast {
  readonly unchangedToast: true;
}

/** The one `UnchangedToast` the decoders use. */
export const UNCHANGED_TOAST: UnchangedToast = Object.freeze({ unchangedToast: true });

/** A column value: text, SQL NULL, or the unchanged-TOAST marker. */
export type Value = string | null | UnchangedToast;

/** True for the unchanged-TOAST marker (the only non-string, non-null value). */
export function isUnchangedToast(value: Value): value is UnchangedToast {
  return typeof value === "object" && value !== null;
}

/**
 * A row image: `values[i]` belongs to `columns[i]`. Decoders share one
 * `columns` array between the changes of a table while its shape does not
 * change, so a spool can write it once and refer to it by identity.
 */
export interface Tuple {
  readonly columns: readonly Column[];
  readonly values: readonly Value[];
}

/**
 * The old row of an UPDATE or DELETE: `"key"` carries only the replica
 * identity key columns, `"row"` the whole old row (`REPLICA IDENTITY FULL`;
 * generated columns excluded, like everywhere).
 */
export interface OldTuple extends Tuple {
  readonly kind: "key" | "row";
}

/** Start of a transaction. */
export interface Begin {
  readonly tag: "Begin";
  /**
   * The XLogData walStart: for pgoutput and test_decoding the first change's
   * LSN, for wal2json the transaction's first LSN; pgoutput sends 0/0 here when
   * an Origin message follows.
   */
  readonly lsn: Lsn;
  readonly xid: number;
  /** LSN of the commit record (pgoutput, wal2json). */
  readonly finalLsn?: Lsn;
  /** Commit time (pgoutput, wal2json). */
  readonly commitTime?: PgTimestamp;
}

/** End of a transaction. */
export interface Commit {
  readonly tag: "Commit";
  /** The XLogData walStart: equal to `endLsn` for every plugin. */
  readonly lsn: Lsn;
  /** LSN of the commit record itself (pgoutput, wal2json; not test_decoding). */
  readonly commitLsn?: Lsn;
  /**
   * End of the commit record, known for every plugin: the transaction's
   * position for ordering, skipping and the replication origin (PostgreSQL's
   * own apply worker records this one as origin progress).
   */
  readonly endLsn: Lsn;
  readonly commitTime: PgTimestamp;
}

/** A new row. `new` has every non-generated column; no value is unchanged TOAST. */
export interface Insert {
  readonly tag: "Insert";
  readonly lsn: Lsn;
  readonly relation: TableName;
  readonly new: Tuple;
}

/**
 * A changed row. `old` is present when the key changed (kind `"key"`) or the
 * table is `REPLICA IDENTITY FULL` (kind `"row"`); otherwise the key is in
 * `new` (the columns with `key` set). Values of `new` may be unchanged TOAST.
 */
export interface Update {
  readonly tag: "Update";
  readonly lsn: Lsn;
  readonly relation: TableName;
  readonly old: OldTuple | null;
  readonly new: Tuple;
}

/**
 * A removed row, identified by `old`; null only when the table has
 * `REPLICA IDENTITY NOTHING` (test_decoding's `(no-tuple-data)`).
 */
export interface Delete {
  readonly tag: "Delete";
  readonly lsn: Lsn;
  readonly relation: TableName;
  readonly old: OldTuple | null;
}

/**
 * TRUNCATE of one or more tables in one statement. pgoutput lists the leaf
 * partitions of a truncated partitioned table; test_decoding and wal2json list
 * the partitioned table too. wal2json sends neither option: both are false.
 */
export interface Truncate {
  readonly tag: "Truncate";
  readonly lsn: Lsn;
  readonly relations: readonly TableName[];
  readonly cascade: boolean;
  readonly restartIdentity: boolean;
}

/** Everything a decoder produces. */
export type Change = Begin | Commit | Insert | Update | Delete | Truncate;

/** The `tag` of a Change. */
export type ChangeTag = Change["tag"];

/** A column as a Relation describes it. */
export interface RelationColumn extends Column {
  /** `atttypmod`, -1 when none. */
  readonly typeMod: number;
  /** A stored generated column: no plugin value is applied to it. */
  readonly generated: boolean;
}

/**
 * A table's shape: pgoutput's Relation message, or the catalog's record of the
 * table, which test_decoding and wal2json need through a `RelationLookup`
 * (they do not say which columns form the key).
 */
export interface Relation extends TableName {
  /** `pg_class` OID (0 when unknown). */
  readonly relid: number;
  /** `relreplident`: d default (primary key), n nothing, f full, i index. */
  readonly replicaIdentity: "d" | "n" | "f" | "i";
  /** Columns in attribute order, dropped columns left out. */
  readonly columns: readonly RelationColumn[];
}

/** Finds a table's Relation in the catalog; undefined when it is not known. */
export type RelationLookup = (schema: string, table: string) => Relation | undefined;

/** Turns a change into a JSON-safe object: bigints become decimal strings. */
function toJsonSafe(change: Change): Record<string, unknown> {
  const out: Record<string, unknown> = { ...change };
  for (const field of BIGINT_FIELDS) {
    const value = out[field];
    if (typeof value === "bigint") out[field] = value.toString();
  }
  return out;
}

const BIGINT_FIELDS = ["lsn", "finalLsn", "commitLsn", "endLsn", "commitTime"] as const;

/**
 * One change as one line of text. Begin, Commit and Truncate are JSON (bigints
 * as decimal strings). A row change, the bulk of a spool, is its fields joined
 * by NUL (which no text value, schema or table name holds), then its tuples'
 * column arrays as JSON, each after a U+0001 (which JSON never holds raw):
 *
 * ```
 * I|U|D ␀ lsn ␀ schema ␀ table ␀ n ␀ new value × n ␀ old kind ␀ old value × rest ␁ [new columns] ␁ [old columns]
 * ```
 * `n` and the old kind are empty when there is no such tuple. A value is `t`
 * and its text, `n` for NULL, or `u` for unchanged TOAST. Decoders share one
 * column array per table shape, so its JSON is made once (cached by identity)
 * and read back once (cached by text) however many rows follow.
 */
export function encodeChange(change: Change): string {
  if (change.tag !== "Insert" && change.tag !== "Update" && change.tag !== "Delete") {
    return JSON.stringify(toJsonSafe(change));
  }
  const tuple = change.tag === "Delete" ? undefined : change.new;
  const old = change.tag === "Insert" ? undefined : change.old;
  const parts = [change.tag[0]!, String(change.lsn), change.relation.schema, change.relation.table];
  if (tuple === undefined) parts.push("");
  else {
    parts.push(String(tuple.values.length));
    for (const value of tuple.values) parts.push(encodeValue(value));
  }
  parts.push(old ? old.kind : "");
  if (old) { for (const value of old.values) parts.push(encodeValue(value)); }
  return `${parts.join("\0")}\u0001${tuple ? columnsJson(tuple.columns) : ""}\u0001${
    old ? columnsJson(old.columns) : ""
  }`;
}

function encodeValue(value: Value): string {
  return value === null ? "n" : isUnchangedToast(value) ? "u" : "t" + value;
}

const ROW_TAGS: Readonly<Record<string, "Insert" | "Update" | "Delete">> = {
  I: "Insert",
  U: "Update",
  D: "Delete",
};

/** Reads a row change written by `encodeChange`. */
function decodeRow(text: string): Insert | Update | Delete {
  const oldAt = text.lastIndexOf("\u0001");
  const newAt = oldAt <= 0 ? -1 : text.lastIndexOf("\u0001", oldAt - 1);
  const fields = newAt < 0 ? [] : text.slice(0, newAt).split("\0");
  const tag = ROW_TAGS[fields[0] ?? ""];
  const lsn = fields[1] ?? "";
  const count = fields[4] === "" ? -1 : Number(fields[4]);
  const oldAtField = 5 + Math.max(count, 0);
  const oldKind = fields[oldAtField];
  if (
    tag === undefined || !/^[0-9]+$/.test(lsn) || fields.length < 6 || !(count >= -1) ||
    (oldKind !== "" && oldKind !== "key" && oldKind !== "row") ||
    (count === -1) !== (tag === "Delete") || (tag === "Insert" && oldKind !== "")
  ) {
    throw new SyntaxError(`Invalid encoded change: ${JSON.stringify(text.slice(0, 80))}`);
  }
  const tuple = count < 0 ? undefined : {
    columns: columnsFrom(text.slice(newAt + 1, oldAt), text),
    values: fields.slice(5, 5 + count).map((v) => decodeValue(v, text)),
  };
  const old = oldKind === "" ? null : {
    kind: oldKind as "key" | "row",
    columns: columnsFrom(text.slice(oldAt + 1), text),
    values: fields.slice(oldAtField + 1).map((v) => decodeValue(v, text)),
  };
  const base = { lsn: BigInt(lsn), relation: { schema: fields[2]!, table: fields[3]! } };
  if (tag === "Insert") return { tag, ...base, new: tuple! };
  if (tag === "Update") return { tag, ...base, old, new: tuple! };
  return { tag, ...base, old };
}

function decodeValue(field: string, text: string): Value {
  switch (field.charCodeAt(0)) {
    case 116: // t
      return field.slice(1);
    case 110: // n
      return null;
    case 117: // u
      return UNCHANGED_TOAST;
    default:
      throw new SyntaxError(`Invalid encoded change: ${JSON.stringify(text.slice(0, 80))}`);
  }
}

const encodedColumns = new WeakMap<readonly Column[], string>();

function columnsJson(columns: readonly Column[]): string {
  let json = encodedColumns.get(columns);
  if (json === undefined) {
    json = JSON.stringify(columns);
    encodedColumns.set(columns, json);
  }
  return json;
}

/** Column arrays read back, by their JSON: one shared array per table shape. */
const decodedColumns = new Map<string, readonly Column[]>();
const DECODED_COLUMNS_MAX = 10_000;

function columnsFrom(json: string, text: string): readonly Column[] {
  let columns = decodedColumns.get(json);
  if (columns === undefined) {
    columns = parseJson(json, text) as Column[];
    if (!Array.isArray(columns)) {
      throw new SyntaxError(`Invalid encoded change: ${JSON.stringify(text.slice(0, 80))}`);
    }
    if (decodedColumns.size >= DECODED_COLUMNS_MAX) decodedColumns.clear();
    decodedColumns.set(json, columns);
  }
  return columns;
}

function parseJson(json: string, text: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new SyntaxError(`Invalid encoded change: ${JSON.stringify(text.slice(0, 80))}`, {
      cause: err,
    });
  }
}

const TAGS: ReadonlySet<string> = new Set([
  "Begin",
  "Commit",
  "Insert",
  "Update",
  "Delete",
  "Truncate",
]);

/**
 * Reads what `encodeChange` wrote (and the all-JSON row changes of spools
 * written before the row format); throws a `SyntaxError` on anything else.
 */
export function decodeChange(text: string): Change {
  if (text.charCodeAt(0) !== 123) return decodeRow(text); // not "{"
  const raw = parseJson(text, text);
  if (typeof raw !== "object" || raw === null || !TAGS.has((raw as { tag: string }).tag)) {
    throw new SyntaxError(`Invalid encoded change: ${JSON.stringify(text.slice(0, 80))}`);
  }
  const obj = raw as Record<string, unknown>;
  for (const field of BIGINT_FIELDS) {
    const value = obj[field];
    if (value === undefined) continue;
    if (typeof value !== "string" || !/^-?[0-9]+$/.test(value)) {
      throw new SyntaxError(`Invalid encoded change: field "${field}" is ${JSON.stringify(value)}`);
    }
    obj[field] = BigInt(value);
  }
  for (const field of ["new", "old"]) {
    const tuple = obj[field] as { values: Value[] } | null | undefined;
    if (tuple == null) continue;
    const values = tuple.values;
    for (let i = 0; i < values.length; i++) {
      if (isUnchangedToast(values[i] as Value)) values[i] = UNCHANGED_TOAST;
    }
  }
  return obj as unknown as Change;
}

/**
 * The type to write after `::` in SQL. `format_type` without a typmod names
 * `bpchar` "character" and `bit` "bit", which SQL reads as `character(1)` and
 * `bit(1)`: a cast to them would cut or reject values, so those become
 * `bpchar` and `varbit` (the column's own typmod applies on assignment).
 * Null when the type is unknown.
 */
export function castType(column: Column): string | null {
  const name = column.typeName;
  if (name === null) return null;
  const array = name.endsWith("[]");
  const base = array ? name.slice(0, -2) : name;
  const safe = base === "character" ? "bpchar" : base === "bit" ? "varbit" : base;
  return array ? `${safe}[]` : safe;
}

/**
 * A decoder: one output plugin's messages in, Changes out. Receive calls it
 * for each XLogData message with the message's walStart; a message yields
 * zero (Relation, Type, Origin, logical messages), one, or (wal2json, when a
 * pending TRUNCATE completes) two changes. Decoders keep state (relation
 * cache, pending TRUNCATE): use one per replication stream.
 */
export interface ChangeDecoder {
  decode(walStart: Lsn, data: Uint8Array): Change[];
}
