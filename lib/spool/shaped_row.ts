/**
 * Row changes in the spool, with their table and columns written once per
 * segment instead of once per row. Pure.
 *
 * A SHAPE record names a table and one column array, under a number:
 *
 * ```
 * shape      = id ␀ schema ␀ table ␀ JSON [Column…]
 * shaped row = i|u|d ␀ lsn ␀ new ␀ old_kind [␀ old]
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
 * first.
 *
 * Records in the self-contained row format of `encodeChange` (upper-case tag,
 * column JSON in every record) are still read: older spools, and rows too
 * large for the writer's buffer.
 */
import {
  type Change,
  type Column,
  columnsFrom,
  columnsJson,
  decodeTuple,
  invalidRow,
  type OldTuple,
  RawTuple,
  rawTupleSize,
  type TableName,
  type Tuple,
  type Value,
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
  readonly #byId = new Map<number, Shape>();

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
    });
  }

  get(id: string, text: string): Shape {
    const shape = this.#byId.get(Number(id));
    if (shape === undefined || id === "") {
      throw new SyntaxError(
        `Invalid spool record: shape ${JSON.stringify(id)} was not defined before ${
          JSON.stringify(text.slice(0, 80))
        }`,
      );
    }
    return shape;
  }

  clear(): void {
    this.#byId.clear();
  }
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
    const lsn = `${change.lsn}`;
    const newIdText = tuple === undefined ? "-" : `${newId}`;
    const oldIdText = old === null ? "" : `${oldId}`;
    const size = 2 + lsn.length + 1 + newIdText.length +
      (tuple === undefined ? 0 : rawTupleSize(tuple)) + 1 +
      (old === null ? 0 : old.kind.length + 1 + oldIdText.length + rawTupleSize(old));
    if (at + size > out.length) return 0;
    let p = at;
    out[p++] = ROW_LETTERS[change.tag];
    out[p++] = 0;
    p = writeAscii(out, p, lsn);
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
  let text = `${String.fromCharCode(ROW_LETTERS[change.tag])}\0${change.lsn}\0`;
  text += tuple === undefined ? "-" : `${newId}${tupleText(tuple.values)}`;
  text += old === null ? "\0" : `\0${old.kind}\0${oldId}${tupleText(old.values)}`;
  if (at + text.length * 3 > out.length) return 0; // 3 bytes of UTF-8 per UTF-16 unit at most
  return utf8.encodeInto(text, out.subarray(at)).written;
}

/** `␀ kinds (␀ value)×n`. */
function tupleText(values: readonly Value[]): string {
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

const ROW_LETTERS = { Insert: 105, Update: 117, Delete: 100 } as const; // i u d
const ROW_TAGS: Readonly<Record<string, "Insert" | "Update" | "Delete">> = {
  i: "Insert",
  u: "Update",
  d: "Delete",
};

/** True when `text` is a shaped row (not the self-contained format). */
export function isShapedRow(text: string): boolean {
  const first = text.charCodeAt(0);
  return first === 105 || first === 117 || first === 100;
}

/** Reads a shaped row; its tuples' shapes come from `shapes`. */
export function decodeShapedRow(text: string, shapes: Shapes): Change {
  const fields = text.split("\0");
  const tag = ROW_TAGS[fields[0]!];
  const lsn = fields[1]!;
  if (tag === undefined || fields.length < 4 || lsn === "" || lsn.charCodeAt(0) > 57) {
    throw invalidRow(text);
  }
  let at = 2;
  let tuple: Tuple | undefined;
  let relation: TableName | undefined;
  if (fields[at] !== "-") {
    const shape = shapes.get(fields[at]!, text);
    const kinds = fields[at + 1] ?? "";
    tuple = { columns: shape.columns, values: decodeTuple(fields, at + 2, kinds, text) };
    relation = shape.relation;
    at += 2 + kinds.length;
  } else at++;
  const oldKind = fields[at];
  let old: OldTuple | null = null;
  if (oldKind === "key" || oldKind === "row") {
    const shape = shapes.get(fields[at + 1] ?? "", text);
    const kinds = fields[at + 2] ?? "";
    old = {
      kind: oldKind,
      columns: shape.columns,
      values: decodeTuple(fields, at + 3, kinds, text),
    };
    relation ??= shape.relation;
    at += 3 + kinds.length;
  } else if (oldKind !== "") throw invalidRow(text);
  else at++;
  if (
    at !== fields.length || relation === undefined ||
    (tuple === undefined) !== (tag === "Delete") ||
    (tag === "Insert" && old !== null)
  ) throw invalidRow(text);
  let position: bigint;
  try {
    position = BigInt(lsn);
  } catch {
    throw invalidRow(text);
  }
  if (tag === "Insert") return { tag, lsn: position, relation, new: tuple! };
  if (tag === "Update") return { tag, lsn: position, relation, old, new: tuple! };
  return { tag, lsn: position, relation, old };
}
