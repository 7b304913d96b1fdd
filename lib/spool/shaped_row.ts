/**
 * Row changes in the spool, with their table and columns written once per
 * segment instead of once per row. Pure.
 *
 * A SHAPE record names a table and one column array, under a number:
 *
 * ```
 * shape      = id ␀ schema ␀ table ␀ JSON [Column…]
 * shaped row = i|u|d ␀ new ␀ old_kind [␀ old]             (the change's LSN is the record's)
 *   new      = "-"  (no new tuple)  |  shape_id ␀ kinds (␀ value)×n
 *   old      = shape_id ␀ kinds (␀ value)×n          (old_kind "key" or "row"; "" = none)
 * ```
 * `kinds` holds one letter per value as in `encodeChange`'s row format: `t` text
 * (the value follows as is), `n` NULL, `u` unchanged TOAST (an empty field
 * follows for both). A SHAPE record always comes before the first row that
 * uses its number, in the same segment, inside the same transaction; a number
 * may be given again to another shape later on (after the writer cut a
 * transaction back, or reopened the spool), so a reader keeps the last one it
 * read. Readers read a segment from its start, so they always see the shapes
 * first. A shaped row reads back as RawTuples over a copy of its bytes: apply
 * decodes the values it needs, and copies inserted rows into COPY data as
 * bytes.
 *
 * Records in the self-contained row format of `encodeChange` (upper-case tag,
 * column JSON in every record) are still read: older spools, and rows too
 * large for the writer's buffer.
 */
import type { Lsn } from "../lsn.ts";
import {
  type Change,
  type Column,
  columnsFrom,
  columnsJson,
  encodeTuple,
  RawOldTuple,
  RawTuple,
  rawTupleSize,
  type TableName,
  writeAscii,
  writeRawTuple,
} from "../decode/change.ts";

/** One table shape: the table and a column array of its tuples. */
export interface Shape {
  readonly relation: TableName;
  readonly columns: readonly Column[];
}

/** The text of a SHAPE record. */
export function encodeShape(id: number, shape: Shape): string {
  return `${id}\0${shape.relation.schema}\0${shape.relation.table}\0${columnsJson(shape.columns)}`;
}

/**
 * The shapes a reader has seen in the segment it reads, by number. Equal
 * column arrays read back as one array, whatever their numbers (pgoutput sends
 * a table's Relation again after some catalog changes): apply tells row shapes
 * apart by identity.
 */
export class Shapes {
  readonly #byId = new Map<number, ReadShape>();
  /** The decoder's position, kept here so that decoding a row allocates no cursor. */
  readonly cursor: Cursor = { at: 0 };

  /** Reads a SHAPE record's text; throws a `SyntaxError` on anything else. */
  add(text: string): void {
    const first = text.indexOf("\0");
    const second = text.indexOf("\0", first + 1);
    const third = text.indexOf("\0", second + 1);
    const id = Number(text.slice(0, first));
    if (first <= 0 || third < 0 || !Number.isSafeInteger(id) || id < 0) {
      throw new SyntaxError(`Invalid spool shape: ${JSON.stringify(text.slice(0, 80))}`);
    }
    this.#byId.set(id, {
      relation: { schema: text.slice(first + 1, second), table: text.slice(second + 1, third) },
      columns: columnsFrom(text, third + 1, text.length),
      kinds: "",
    });
  }

  /** The shape of number `id`; throws a `SyntaxError` when none was read. */
  byNumber(id: number, payload: Uint8Array): ReadShape {
    const shape = this.#byId.get(id);
    if (shape === undefined) {
      throw new SyntaxError(
        `Invalid spool record: shape ${id} was not defined before ${describe(payload)}`,
      );
    }
    return shape;
  }
}

/** A shape as a reader keeps it, with the kinds string of its last row. */
interface ReadShape extends Shape {
  kinds: string;
}

/**
 * Hands out shape numbers for the writer: `idOf` returns the number of a
 * tuple's shape, and the SHAPE text to write first when the shape is new.
 */
export class ShapeNumbers {
  /** By column array: the tables written with it, and their numbers (nearly always one). */
  #ids = new WeakMap<readonly Column[], { id: number; relation: TableName }[]>();
  #next = 0;

  idOf(relation: TableName, columns: readonly Column[]): { id: number; define?: string } {
    let known = this.#ids.get(columns);
    if (known === undefined) this.#ids.set(columns, known = []);
    for (const entry of known) {
      if (
        entry.relation === relation ||
        (entry.relation.schema === relation.schema && entry.relation.table === relation.table)
      ) return { id: entry.id };
    }
    const id = this.#next++;
    known.push({ id, relation });
    return { id, define: encodeShape(id, { relation, columns }) };
  }

  /** Forgets every number (a new segment, or records cut back). */
  reset(): void {
    this.#ids = new WeakMap();
    this.#next = 0;
  }
}

const utf8 = new TextEncoder();

/**
 * Writes the shaped row of `change` (a row change) into `out` at `at`, with
 * the shape numbers given. Returns the bytes written, or 0 when it might not
 * fit there.
 */
export function encodeShapedRowInto(
  out: Uint8Array,
  at: number,
  change: Change & { tag: "Insert" | "Update" | "Delete" },
  newId: number,
  oldId: number,
): number {
  const tuple = change.tag === "Delete" ? undefined : change.new;
  const old = change.tag === "Insert" ? null : change.old;
  if (
    (tuple === undefined || tuple instanceof RawTuple) && (old === null || old instanceof RawTuple)
  ) {
    const newIdText = tuple === undefined ? "-" : `${newId}`;
    const oldIdText = old === null ? "" : `${oldId}`;
    const size = 2 + newIdText.length +
      (tuple === undefined ? 0 : rawTupleSize(tuple)) + 1 +
      (old === null ? 0 : old.kind.length + 1 + oldIdText.length + rawTupleSize(old));
    if (at + size > out.length) return 0;
    let p = at;
    out[p++] = ROW_LETTERS[change.tag];
    out[p++] = 0;
    p = writeAscii(out, p, newIdText);
    if (tuple !== undefined) p = writeRawTuple(out, p, tuple);
    out[p++] = 0;
    if (old !== null) {
      p = writeAscii(out, p, old.kind);
      out[p++] = 0;
      p = writeRawTuple(out, writeAscii(out, p, oldIdText), old);
    }
    return p - at;
  }
  let text = `${String.fromCharCode(ROW_LETTERS[change.tag])}\0`;
  text += tuple === undefined ? "-" : `${newId}${encodeTuple(tuple.values)}`;
  text += old === null ? "\0" : `\0${old.kind}\0${oldId}${encodeTuple(old.values)}`;
  if (at + text.length * 3 > out.length) return 0; // 3 bytes of UTF-8 per UTF-16 unit at most
  return utf8.encodeInto(text, out.subarray(at)).written;
}

const ROW_LETTERS = { Insert: 105, Update: 117, Delete: 100 } as const; // i u d
const ROW_TAGS: Readonly<Record<string, "Insert" | "Update" | "Delete">> = {
  i: "Insert",
  u: "Update",
  d: "Delete",
};

/** True when the payload of a CHANGE record is a shaped row (not the self-contained format). */
export function isShapedRow(payload: Uint8Array): boolean {
  const first = payload[0];
  return first === 105 || first === 117 || first === 100;
}

/**
 * Reads a shaped row at `lsn`; its tuples' shapes come from `shapes`, their
 * values stay in `payload` (which they keep: pass a copy).
 */
export function decodeShapedRow(payload: Uint8Array, lsn: Lsn, shapes: Shapes): Change {
  const tag = ROW_TAGS[String.fromCharCode(payload[0]!)];
  if (tag === undefined || payload[1] !== 0) throw invalidShapedRow(payload);
  const cursor = shapes.cursor;
  cursor.at = 2;
  let tuple: RawTuple | undefined;
  let relation: TableName | undefined;
  if (payload[2] === 45 && payload[3] === 0) cursor.at = 4; // "-": no new tuple
  else {
    const shape = shapes.byNumber(number(cursor, payload), payload);
    tuple = rawTuple(cursor, payload, shape, undefined);
    relation = shape.relation;
  }
  const oldKind = word(cursor, payload);
  let old: RawOldTuple | null = null;
  if (oldKind !== "") {
    const shape = shapes.byNumber(number(cursor, payload), payload);
    old = rawTuple(cursor, payload, shape, oldKind) as RawOldTuple;
    relation ??= shape.relation;
  }
  if (
    cursor.at !== payload.length + 1 || relation === undefined ||
    (tuple === undefined) !== (tag === "Delete") || (tag === "Insert" && old !== null)
  ) throw invalidShapedRow(payload);
  if (tag === "Insert") return { tag, lsn, relation, new: tuple! };
  if (tag === "Update") return { tag, lsn, relation, old, new: tuple! };
  return { tag, lsn, relation, old };
}

/** Where a decoder is in a payload: `at` is the start of the next field. */
interface Cursor {
  at: number;
}

/** The end of the field starting at `at`: the next NUL, or the end of the payload. */
function fieldEnd(payload: Uint8Array, at: number): number {
  let end = at;
  while (end < payload.length && payload[end] !== 0) end++;
  return end;
}

/** The next field, a decimal number. */
function number(cursor: Cursor, payload: Uint8Array): number {
  const at = cursor.at;
  const end = fieldEnd(payload, at);
  if (end === at || end - at > 9) throw invalidShapedRow(payload);
  let n = 0;
  for (let i = at; i < end; i++) {
    const digit = payload[i]! - 48;
    if (digit < 0 || digit > 9) throw invalidShapedRow(payload);
    n = n * 10 + digit;
  }
  cursor.at = end + 1;
  return n;
}

/** The next field, the old tuple's kind: "", "key" or "row". */
function word(cursor: Cursor, payload: Uint8Array): "" | "key" | "row" {
  const at = cursor.at;
  if (at > payload.length) throw invalidShapedRow(payload);
  const end = fieldEnd(payload, at);
  cursor.at = end + 1;
  if (end === at) return "";
  if (end - at === 3) {
    const [a, b, c] = [payload[at], payload[at + 1], payload[at + 2]];
    if (a === 107 && b === 101 && c === 121) return "key";
    if (a === 114 && b === 111 && c === 119) return "row";
  }
  throw invalidShapedRow(payload);
}

/** `kinds (␀ value)×n` at the cursor, as a RawTuple (a RawOldTuple when `oldKind` is set). */
function rawTuple(
  cursor: Cursor,
  payload: Uint8Array,
  shape: ReadShape,
  oldKind: "key" | "row" | undefined,
): RawTuple {
  const kindsAt = cursor.at;
  const kindsEnd = fieldEnd(payload, kindsAt);
  // Rows of a shape nearly always have the kinds of the one before: reuse its string.
  let kinds = shape.kinds;
  let same = kinds.length === kindsEnd - kindsAt;
  for (let i = 0; same && i < kinds.length; i++) {
    same = kinds.charCodeAt(i) === payload[kindsAt + i];
  }
  if (!same) {
    kinds = "";
    for (let i = kindsAt; i < kindsEnd; i++) kinds += String.fromCharCode(payload[i]!);
    shape.kinds = kinds;
  }
  const bounds: number[] = new Array(2 * kinds.length);
  let at = kindsEnd + 1;
  for (let i = 0; i < kinds.length; i++) {
    const kind = kinds.charCodeAt(i);
    if (at > payload.length || (kind !== 116 && kind !== 110 && kind !== 117)) {
      throw invalidShapedRow(payload);
    }
    const end = fieldEnd(payload, at);
    bounds[2 * i] = at;
    bounds[2 * i + 1] = end;
    if (kind !== 116 && end !== at) throw invalidShapedRow(payload); // n and u have no bytes
    at = end + 1;
  }
  cursor.at = at;
  return oldKind === undefined
    ? new RawTuple(shape.columns, kinds, payload, bounds)
    : new RawOldTuple(oldKind, shape.columns, kinds, payload, bounds);
}

function describe(payload: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(payload.subarray(0, 80)));
}

function invalidShapedRow(payload: Uint8Array): SyntaxError {
  return new SyntaxError(`Invalid spool record: shaped row ${describe(payload)}`);
}
