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
import { decodeUtf8 } from "./utf8.ts";

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
 * I|U|D ␀ lsn ␀ schema ␀ table ␀ new kinds ␀ new value × n ␀ old kind ␀ old kinds ␀ old value × n ␁ [new columns] ␁ [old columns]
 * ```
 * A tuple's kinds hold one letter per value: `t` text (the value follows as
 * is), `n` NULL, `u` unchanged TOAST (an empty field follows for both). The new
 * kinds are `-` when there is no new tuple; the old kind (`key` or `row`) is
 * empty, and nothing of the old tuple follows, when there is no old one.
 * Decoders share one column array per table shape, so its JSON is made once
 * (cached by identity) and read back once (cached by text) however many rows
 * follow.
 */
export function encodeChange(change: Change): string {
  if (change.tag === "Begin") return beginJson(change);
  if (change.tag === "Commit") return commitJson(change);
  if (change.tag === "Truncate") return JSON.stringify(toJsonSafe(change));
  const tuple = change.tag === "Delete" ? undefined : change.new;
  const old = change.tag === "Insert" ? undefined : change.old;
  let text = `${change.tag[0]}\0${change.lsn}\0${change.relation.schema}\0${change.relation.table}`;
  text += tuple === undefined ? "\0-" : encodeTuple(tuple.values);
  text += old ? `\0${old.kind}${encodeTuple(old.values)}` : "\0";
  return `${text}\u0001${tuple ? columnsJson(tuple.columns) : ""}\u0001${
    old ? columnsJson(old.columns) : ""
  }`;
}

/** What `JSON.stringify(toJsonSafe(begin))` writes, spelt out: one per transaction. */
function beginJson(begin: Begin): string {
  let text = `{"tag":"Begin","lsn":"${begin.lsn}","xid":${begin.xid}`;
  if (begin.finalLsn !== undefined) text += `,"finalLsn":"${begin.finalLsn}"`;
  if (begin.commitTime !== undefined) text += `,"commitTime":"${begin.commitTime}"`;
  return text + "}";
}

/** What `JSON.stringify(toJsonSafe(commit))` writes, spelt out: one per transaction. */
function commitJson(commit: Commit): string {
  let text = `{"tag":"Commit","lsn":"${commit.lsn}"`;
  if (commit.commitLsn !== undefined) text += `,"commitLsn":"${commit.commitLsn}"`;
  return text + `,"endLsn":"${commit.endLsn}","commitTime":"${commit.commitTime}"}`;
}

/** `␀ kinds ␀ value × n` (see `encodeChange`). */
export function encodeTuple(values: readonly Value[]): string {
  let kinds = "";
  let fields = "";
  for (const value of values) {
    if (typeof value === "string") {
      kinds += "t";
      fields += "\0" + value;
    } else {
      kinds += value === null ? "n" : "u";
      fields += "\0";
    }
  }
  return `\0${kinds}${fields}`;
}

/** Values up to this many bytes are read in JavaScript when they are ASCII. */
const SHORT_ASCII = 24;

/**
 * A tuple whose text values are still UTF-8 bytes of the message they came in
 * (pgoutput, already checked to be valid UTF-8): receive writes them to the
 * spool as they are (`encodeRawRowInto`); `values` decodes them only when
 * something asks.
 */
export class RawTuple implements Tuple {
  readonly columns: readonly Column[];
  /** One letter per value, as in the row format: t text, n NULL, u unchanged TOAST. */
  readonly kinds: string;
  readonly bytes: Uint8Array;
  /** Start and end in `bytes` of each value (unused for n and u). */
  readonly bounds: number[];
  #values: Value[] | undefined;

  constructor(columns: readonly Column[], kinds: string, bytes: Uint8Array, bounds: number[]) {
    this.columns = columns;
    this.kinds = kinds;
    this.bytes = bytes;
    this.bounds = bounds;
  }

  get values(): readonly Value[] {
    if (this.#values === undefined) {
      const values: Value[] = new Array(this.kinds.length);
      for (let i = 0; i < values.length; i++) values[i] = this.#decode(i);
      this.#values = values;
    }
    return this.#values;
  }

  /** Value `i` alone (a key column, say), without decoding the others. */
  value(i: number): Value {
    return this.#values === undefined ? this.#decode(i) : this.#values[i]!;
  }

  #decode(i: number): Value {
    const kind = this.kinds.charCodeAt(i);
    if (kind !== 116) return kind === 110 ? null : UNCHANGED_TOAST; // n, else u
    const start = this.bounds[2 * i]!;
    const end = this.bounds[2 * i + 1]!;
    if (end - start <= SHORT_ASCII) {
      // Keys and numbers: a few ASCII bytes, cheaper to read here than through a view.
      let text = "";
      for (let j = start; j < end; j++) {
        const byte = this.bytes[j]!;
        if (byte >= 0x80) return decodeUtf8(this.bytes.subarray(start, end));
        text += String.fromCharCode(byte);
      }
      return text;
    }
    return decodeUtf8(this.bytes.subarray(start, end));
  }
}

/** The old row of an UPDATE or DELETE, as a RawTuple. */
export class RawOldTuple extends RawTuple implements OldTuple {
  readonly kind: "key" | "row";

  constructor(
    kind: "key" | "row",
    columns: readonly Column[],
    kinds: string,
    bytes: Uint8Array,
    bounds: number[],
  ) {
    super(columns, kinds, bytes, bounds);
    this.kind = kind;
  }
}

/** Bytes of `␀ kinds (␀ value)*`. */
export function rawTupleSize(tuple: RawTuple): number {
  let size = 1 + 2 * tuple.kinds.length;
  for (let i = 0; i < tuple.kinds.length; i++) {
    if (tuple.kinds.charCodeAt(i) === 116) size += tuple.bounds[2 * i + 1]! - tuple.bounds[2 * i]!;
  }
  return size;
}

export function writeRawTuple(out: Uint8Array, at: number, tuple: RawTuple): number {
  let p = at;
  out[p++] = 0;
  p = writeAscii(out, p, tuple.kinds);
  const { bytes, bounds } = tuple;
  for (let i = 0; i < tuple.kinds.length; i++) {
    out[p++] = 0;
    if (tuple.kinds.charCodeAt(i) !== 116) continue;
    const start = bounds[2 * i]!;
    const end = bounds[2 * i + 1]!;
    if (end - start > 32) {
      out.set(bytes.subarray(start, end), p);
      p += end - start;
    } else {
      for (let j = start; j < end; j++) out[p++] = bytes[j]!;
    }
  }
  return p;
}

export function writeAscii(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  return at + text.length;
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
  if (newAt < 0) throw invalidRow(text);
  const fields = text.slice(0, newAt).split("\0");
  const tag = ROW_TAGS[fields[0]!];
  const lsn = fields[1]!;
  if (tag === undefined || fields.length < 6 || lsn === "" || lsn.charCodeAt(0) > 57) {
    throw invalidRow(text);
  }
  const newKinds = fields[4]!;
  const hasNew = newKinds !== "-";
  let at = 5;
  let tuple: Tuple | undefined;
  if (hasNew) {
    const values = decodeTuple(fields, at, newKinds, text);
    tuple = { columns: columnsFrom(text, newAt + 1, oldAt), values };
    at += newKinds.length;
  }
  const oldKind = fields[at];
  let old: OldTuple | null = null;
  if (oldKind === "key" || oldKind === "row") {
    const kinds = fields[at + 1] ?? "";
    const values = decodeTuple(fields, at + 2, kinds, text);
    old = { kind: oldKind, columns: columnsFrom(text, oldAt + 1, text.length), values };
    at += 2 + kinds.length;
  } else if (oldKind !== "") throw invalidRow(text);
  else at++;
  if (
    at !== fields.length || hasNew === (tag === "Delete") || (tag === "Insert" && old !== null)
  ) throw invalidRow(text);
  let position: bigint;
  try {
    position = BigInt(lsn);
  } catch {
    throw invalidRow(text);
  }
  const relation = { schema: fields[2]!, table: fields[3]! };
  if (tag === "Insert") return { tag, lsn: position, relation, new: tuple! };
  if (tag === "Update") return { tag, lsn: position, relation, old, new: tuple! };
  return { tag, lsn: position, relation, old };
}

function invalidRow(text: string): SyntaxError {
  return new SyntaxError(`Invalid encoded change: ${JSON.stringify(text.slice(0, 80))}`);
}

/** The values of a tuple: `kinds` says what each is, text ones are `fields` from `at`. */
function decodeTuple(fields: string[], at: number, kinds: string, text: string): Value[] {
  if (at + kinds.length > fields.length) throw invalidRow(text);
  const values: Value[] = new Array(kinds.length);
  for (let i = 0; i < kinds.length; i++) {
    const kind = kinds.charCodeAt(i);
    if (kind === 116) values[i] = fields[at + i]!; // t
    else if (kind === 110) values[i] = null; // n
    else if (kind === 117) values[i] = UNCHANGED_TOAST; // u
    else throw invalidRow(text);
  }
  return values;
}

const encodedColumns = new WeakMap<readonly Column[], string>();

export function columnsJson(columns: readonly Column[]): string {
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

/** The column array whose JSON is `text` from `start` to `end`. */
export function columnsFrom(text: string, start: number, end: number): readonly Column[] {
  // Slicing and hashing measured faster than comparing in place with startsWith.
  const json = text.slice(start, end);
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
