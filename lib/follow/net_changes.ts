/**
 * Net changes: what a run of source changes leaves in each table, row by row,
 * so that apply writes it with a few set-based statements (one DELETE … USING
 * VALUES, one UPDATE … FROM VALUES per set of columns, one multi-row INSERT)
 * instead of one statement per change.
 *
 * Why the order may change: apply runs with session_replication_role =
 * replica, so foreign keys and ordinary triggers do not fire, and rows of
 * different tables never meet. Inside a table, order matters only through
 * unique indexes. So a table takes part only when no unique or exclusion index
 * other than its key (replica identity index, else primary key) exists and no
 * trigger or rule fires in replica mode (`TargetTable.reorderable`). Then for
 * each key only three things count: whether the row existed before the run
 * (it is deleted first), whether it exists after, and its last values.
 *
 * A table without a key (and so without any unique index) takes part with its
 * INSERTs only. Anything that cannot be merged — an UPDATE that changes the
 * key, a row without its key, an UPDATE or DELETE on a table without a key, a
 * sequence the source could not have produced — is refused by `add`: the
 * caller writes out what is held for that table, then that change on its own.
 */
import type { Column, Delete, Insert, Tuple, Update, Value } from "../decode/change.ts";
import { isUnchangedToast, RawTuple } from "../decode/change.ts";
import { literal, qualifiedName, quoteIdent } from "../pg/quote.ts";
import type { TargetTable } from "./sql.ts";

/** Rows to write with `COPY … FROM STDIN`: the statement and its data, in text format (UTF-8). */
export interface CopyRows {
  copy: string;
  data: Uint8Array;
}

/** What is known of one row of the target after the run. */
interface Entry {
  /** The row existed before the run: it is deleted first. */
  deleted: boolean;
  /** `row` is a whole new row, inserted (after the delete, if any). */
  inserted: boolean;
  /**
   * The row's last values; for an UPDATE of an existing row, unchanged TOAST
   * where no change set a value. Undefined: the row is gone.
   */
  row: Tuple | undefined;
}

/** Rows per statement, at most. */
const ROWS_PER_STATEMENT = 1000;
/** Bytes of values per statement, about (a statement is cut after the row that passes it). */
const BYTES_PER_STATEMENT = 256 * 1024;

/** The columns rows of one kind write. */
interface Shape {
  names: string[];
  indexes: number[];
  /** Every column of the row, in order: `indexes` is 0, 1, … */
  whole: boolean;
}

/** The changes held for one table. */
class TableChanges {
  readonly target: TargetTable;
  /** By key: the key's text, or for a one-column key that is a plain integer, that number. */
  entries = new Map<Key, Entry>();
  /**
   * New rows held while nothing else is (`entries` is empty), by column array,
   * already as COPY text: a run of INSERTs costs no key decoding, no map and no
   * objects kept per row. The first other change reads them back and keys
   * them (`#keyInserts`). A table without a key only ever holds these.
   */
  #copies = new Map<readonly Column[], CopyLines>();
  /** Where the key columns are in a tuple of each column array (null: not all there). */
  readonly #keyIndexesByColumns = new WeakMap<readonly Column[], number[] | null>();
  /** The column array of the last change, and its key indexes: most runs share one. */
  #lastColumns: readonly Column[] | undefined;
  #lastKeyIndexes: number[] | null = null;

  constructor(target: TargetTable) {
    this.target = target;
  }

  /** Merges a change; false when it cannot be merged (nothing changed then). */
  add(change: Insert | Update | Delete): boolean {
    if (this.target.keyColumns.length === 0) {
      if (change.tag !== "Insert") return false;
      this.#copy(change.new);
      return true;
    }
    if (change.tag === "Insert" && this.entries.size === 0) {
      // A source with this key never inserts a key twice without a change in between.
      if (this.#keyIndexes(change.new) === null) return false;
      this.#copy(change.new);
      return true;
    }
    if (this.#copies.size > 0 && !this.#keyInserts()) return false;
    const key = this.#keyOf(change);
    if (key === undefined) return false;
    const entry = this.entries.get(key);
    switch (change.tag) {
      case "Insert":
        if (entry === undefined) {
          this.entries.set(key, { deleted: false, inserted: true, row: change.new });
        } else if (entry.row === undefined) {
          entry.inserted = true;
          entry.row = change.new;
        } else return false; // the key is there already
        return true;
      case "Update":
        if (entry === undefined) {
          this.entries.set(key, { deleted: false, inserted: false, row: change.new });
          return true;
        }
        // No such row, or its shape changed on the way: not merged.
        if (entry.row === undefined || entry.row.columns !== change.new.columns) return false;
        entry.row = merged(entry.row, change.new);
        return true;
      case "Delete":
        if (entry === undefined) {
          this.entries.set(key, { deleted: true, inserted: false, row: undefined });
        } else if (entry.row === undefined) {
          return false; // no such row
        } else if (entry.inserted && !entry.deleted) {
          this.entries.delete(key); // inserted and deleted within the run: nothing to write
        } else {
          entry.deleted = true;
          entry.inserted = false;
          entry.row = undefined;
        }
        return true;
    }
  }

  /** The key, or undefined when the change does not carry it or changes it. */
  #keyOf(change: Insert | Update | Delete): Key | undefined {
    if (change.tag === "Insert") return this.#keyIn(change.new);
    if (change.old === null) {
      return change.tag === "Update" ? this.#keyIn(change.new) : undefined;
    }
    const old = this.#keyIn(change.old);
    if (change.tag === "Delete") return old;
    return old !== undefined && old === this.#keyIn(change.new) ? old : undefined;
  }

  /**
   * Moves the new rows held in order into `entries`, by key (which is empty
   * while they are held); false, and nothing moved, when one has no key or
   * two share one.
   */
  #keyInserts(): boolean {
    const entries = new Map<Key, Entry>();
    for (const lines of this.#copies.values()) {
      for (const row of lines.tuples()) {
        const key = this.#keyIn(row);
        if (key === undefined || entries.has(key)) return false;
        entries.set(key, { deleted: false, inserted: true, row });
      }
    }
    this.entries = entries;
    this.#copies.clear();
    return true;
  }

  /** Adds a new row to the COPY text of its column array. */
  #copy(row: Tuple): void {
    let lines = this.#copies.get(row.columns);
    if (lines === undefined) {
      this.#copies.set(row.columns, lines = new CopyLines(row.columns, this.#shape(row, false)));
    }
    lines.add(row);
  }

  /** Where the key columns are in a tuple of this column array; null when not all are there. */
  #keyIndexes(tuple: Tuple): number[] | null {
    let indexes = tuple.columns === this.#lastColumns
      ? this.#lastKeyIndexes
      : this.#keyIndexesByColumns.get(tuple.columns);
    if (indexes === undefined) {
      const found = this.target.keyColumns.map((name) =>
        tuple.columns.findIndex((c) => c.name === name)
      );
      indexes = found.includes(-1) ? null : found;
      this.#keyIndexesByColumns.set(tuple.columns, indexes);
    }
    this.#lastColumns = tuple.columns;
    this.#lastKeyIndexes = indexes;
    return indexes;
  }

  /** The values of the key columns, joined; undefined when one is missing, NULL or unchanged TOAST. */
  #keyIn(tuple: Tuple): Key | undefined {
    const indexes = this.#keyIndexes(tuple);
    if (indexes === null) return undefined;
    const raw = tuple instanceof RawTuple ? tuple : undefined;
    if (indexes.length === 1) {
      const value = raw === undefined ? tuple.values[indexes[0]!] : raw.value(indexes[0]!);
      return typeof value === "string" ? keyOfText(value) : undefined;
    }
    let key = "";
    for (let k = 0; k < indexes.length; k++) {
      const value = raw === undefined ? tuple.values[indexes[k]!] : raw.value(indexes[k]!);
      if (typeof value !== "string") return undefined;
      key += k === 0 ? value : KEY_SEPARATOR + value;
    }
    return key;
  }

  /** Statements that leave the table as the merged changes would. */
  *statements(): Generator<Uint8Array | CopyRows> {
    const target = this.target;
    const table = qualifiedName(target.schema, target.table);
    const keys = target.keyColumns;
    let deleted: RowSink | undefined;
    /** Updates by column array and the unchanged TOAST they leave out. */
    const updates = new Map<string, { names: string[]; rows: RowSink }>();
    const shapeIds = new Map<readonly Column[], number>();
    for (const [key, entry] of this.entries) {
      if (entry.deleted) (deleted ??= rowSink(target, keys, [])).add(keyValues(key), undefined);
      const row = entry.row;
      if (row === undefined) continue;
      if (entry.inserted) {
        // Into the COPY text (empty while there are entries): this table is forgotten next.
        this.#copy(row);
        continue;
      }
      let id = shapeIds.get(row.columns);
      if (id === undefined) shapeIds.set(row.columns, id = shapeIds.size);
      // Unchanged TOAST in an UPDATE: that column is left out of its statement.
      let name = `${id}`;
      if (!(row instanceof RawTuple) || row.kinds.includes("u")) {
        for (let i = 0; i < row.values.length; i++) {
          if (isUnchangedToast(row.values[i] as Value)) name += `,${i}`;
        }
      }
      let update = updates.get(name);
      if (update === undefined) {
        const { names, indexes } = this.#shape(row, true);
        update = { names, rows: rowSink(target, [...keys, ...names], indexes) };
        updates.set(name, update);
      }
      update.rows.add(keyValues(key), row);
    }
    if (deleted !== undefined) {
      yield* deleted.statements(`delete from ${table} as t_ using `, ` where ${matchKey(keys)}`);
    }
    for (const { names, rows } of updates.values()) {
      if (names.length === 0) continue; // only unchanged or key columns: nothing to set
      yield* rows.statements(
        `update ${table} as t_ set ${
          names.map((c) => `${quoteIdent(c)} = v_.${quoteIdent(c)}`).join(", ")
        } from `,
        ` where ${matchKey(keys)}`,
      );
    }
    // Inserts go as COPY, one per column array: the server parses rows of text far
    // faster than VALUES lists, and every statement of a target transaction costs it
    // a little until the commit. Like INSERT it fires triggers (none in replica mode on
    // a reorderable table) and takes identity values as given, but never rules (there
    // are none).
    for (const lines of this.#copies.values()) {
      yield {
        copy: `copy ${table} (${lines.names.map(quoteIdent).join(", ")}) from stdin`,
        data: lines.data,
      };
    }
  }

  /**
   * The columns a row of this shape writes: not generated; for an UPDATE, not
   * the key, an always-identity column, or unchanged TOAST.
   */
  #shape(row: Tuple, update: boolean): Shape {
    const target = this.target;
    const indexes: number[] = [];
    row.columns.forEach((column, i) => {
      if (target.generated.has(column.name)) return;
      if (
        update &&
        (isUnchangedToast(row.values[i] as Value) || target.keyColumns.includes(column.name) ||
          target.alwaysIdentity.has(column.name))
      ) return;
      indexes.push(i);
    });
    const names = indexes.map((i) => row.columns[i]!.name);
    return { names, indexes, whole: indexes.length === row.values.length };
  }
}

/**
 * New rows of one column array as the lines of a COPY (the columns of their
 * insert shape), in order: COPY text format, UTF-8, values tab-separated, `\N`
 * for NULL, backslash escapes. A RawTuple's values are copied byte by byte.
 */
class CopyLines {
  readonly columns: readonly Column[];
  readonly names: readonly string[];
  readonly #shape: Shape;
  readonly #out = new ByteText(16 * 1024);

  constructor(columns: readonly Column[], shape: Shape) {
    this.columns = columns;
    this.names = shape.names;
    this.#shape = shape;
  }

  add(row: Tuple): void {
    if (this.#shape.whole && row instanceof RawTuple) {
      // At most: every byte escaped, plus a separator and `\N` per value.
      const out = this.#out.reserve(2 * row.bytes.length + 3 * row.kinds.length + 1);
      this.#out.length = copyRawRow(out, this.#out.length, row);
      return;
    }
    this.#out.text(copyLine(shapeValues(this.#shape, row)));
  }

  /** The COPY data. */
  get data(): Uint8Array {
    return this.#out.view;
  }

  /** The rows read back, with NULL where a column is not written (generated). */
  *tuples(): Generator<Tuple> {
    const text = new TextDecoder().decode(this.data);
    const { indexes } = this.#shape;
    const lines = text.split("\n");
    lines.pop(); // after the last line's newline
    for (const line of lines) {
      const values: (string | null)[] = new Array(this.columns.length).fill(null);
      line.split("\t").forEach((field, i) => {
        values[indexes[i]!] = field === "\\N"
          ? null
          : field.replace(/\\(.)/g, (_, c: string) => COPY_UNESCAPES[c] ?? c);
      });
      yield { columns: this.columns, values };
    }
  }
}

const COPY_UNESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t" };

/** The values of `row` that its shape writes (the row's own array when it writes all). */
function shapeValues(shape: Shape, row: Tuple): (string | null)[] {
  const values = row.values as (string | null)[];
  return shape.whole ? values : shape.indexes.map((i) => values[i]!);
}

/** `row` with the values `next` sets (all but unchanged TOAST); both of one column array. */
function merged(row: Tuple, next: Tuple): Tuple {
  const values = row.values.slice();
  next.values.forEach((value, i) => {
    if (!isUnchangedToast(value)) values[i] = value;
  });
  return { columns: row.columns, values };
}

/**
 * Changes held for every table, in the order the tables were first touched.
 * Tables are told apart by their TargetTable, which TargetTables hands out
 * once per table.
 */
export class NetChanges {
  readonly #tables = new Map<TargetTable, TableChanges>();
  readonly #limits: { rows: number; bytes: number };
  /** Changes merged, and the bytes of their values, since the last time nothing was held. */
  #rows = 0;
  #bytes = 0;
  /** The buffer of the last RawTuple counted. */
  #lastBuffer: ArrayBufferLike | undefined;

  /** `limits`: how many changes, or bytes of their values, make it `full`. */
  constructor(limits: { rows: number; bytes: number }) {
    this.#limits = limits;
  }

  /** Nothing is held. */
  get empty(): boolean {
    return this.#rows === 0;
  }

  /** Enough is held that it should be written out. */
  get full(): boolean {
    return this.#rows >= this.#limits.rows || this.#bytes >= this.#limits.bytes;
  }

  /**
   * Merges a change into what is held for its table; false when it cannot be
   * merged: then `take` that table and apply the change on its own.
   */
  add(change: Insert | Update | Delete, target: TargetTable): boolean {
    if (!target.reorderable) return false;
    let table = this.#tables.get(target);
    if (table === undefined) this.#tables.set(target, table = new TableChanges(target));
    if (!table.add(change)) return false;
    this.#rows++;
    const tuple = change.tag === "Delete" ? change.old : change.new;
    if (tuple instanceof RawTuple) {
      // Its bytes are a view of the spool reader's buffer, which stays in memory while held:
      // count each buffer once, whole.
      const buffer = tuple.bytes.buffer;
      if (buffer !== this.#lastBuffer) this.#bytes += buffer.byteLength;
      this.#lastBuffer = buffer;
    } else {
      const values = tuple?.values ?? [];
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (typeof value === "string") this.#bytes += value.length;
      }
    }
    return true;
  }

  /**
   * The statements for what is held (for one table, or all) and forgets it.
   * Statements of different tables come in any order; those of one table in
   * the order delete, update, insert.
   */
  *take(target?: TargetTable): Generator<Uint8Array | CopyRows> {
    for (const table of target === undefined ? [...this.#tables.keys()] : [target]) {
      const held = this.#tables.get(table);
      if (held === undefined) continue;
      this.#tables.delete(table);
      yield* held.statements();
    }
    if (this.#tables.size === 0) this.clear();
  }

  /** Drops everything held (the target transaction rolled back). */
  clear(): void {
    this.#tables.clear();
    this.#rows = this.#bytes = 0;
    this.#lastBuffer = undefined;
  }
}

const KEY_SEPARATOR = "\u0000"; // text values never hold NUL

/**
 * A row's key in `TableChanges.entries`: the key columns' text joined by NUL,
 * or, for a one-column key whose text is a plain integer (what integer keys
 * print), that number: a Map looks numbers up several times faster. Both
 * forms read back to the same text, so no two keys meet.
 */
type Key = string | number;

/** A one-column key's text as a Key. */
function keyOfText(text: string): Key {
  const n = text.length;
  if (n === 0 || n > 15) return text;
  let i = text.charCodeAt(0) === 45 ? 1 : 0; // -
  if (i === n || (text.charCodeAt(i) === 48 && n > i + 1) || text === "-0") return text; // "-", leading 0
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return text;
  }
  return Number(text);
}

/** The key columns' values of a Key. */
function keyValues(key: Key): string[] {
  return typeof key === "number" ? [String(key)] : key.split(KEY_SEPARATOR);
}

function typeOf(target: TargetTable, column: string): string {
  const type = target.columnTypes.get(column);
  if (type === undefined) {
    throw new RangeError(
      `Column "${column}" of ${qualifiedName(target.schema, target.table)} is not on the target`,
    );
  }
  return type;
}

function matchKey(keys: readonly string[]): string {
  return keys.map((k) => `t_.${quoteIdent(k)} = v_.${quoteIdent(k)}`).join(" and ");
}

/**
 * Rows for the `v_(columns)` side of a join: key values (text), then a row's
 * values at `indexes` (none for a DELETE), in statements of up to
 * ROWS_PER_STATEMENT rows / about BYTES_PER_STATEMENT bytes, each
 * `head + row source + tail`, as UTF-8.
 */
interface RowSink {
  add(keys: readonly string[], row: Tuple | undefined): void;
  statements(head: string, tail: string): Generator<Uint8Array>;
}

/**
 * The sink for `columns`: one array per column, unnested (the server takes it
 * in less time than a VALUES list of the same rows: it parses no expression
 * per value); VALUES when a column is of an array type, which cannot be an
 * array element.
 */
function rowSink(target: TargetTable, columns: string[], indexes: readonly number[]): RowSink {
  const types = columns.map((name) => typeOf(target, name));
  const alias = `v_(${columns.map(quoteIdent).join(", ")})`;
  return columns.some((name) => target.arrayColumns.has(name))
    ? new ValuesRows(types, alias, indexes)
    : new ArrayRows(types, alias, indexes);
}

/**
 * Rows as `unnest('{…}'::type[], …) as v_(…)`: each column's array literal,
 * already quoted as a SQL string, built byte by byte (a RawTuple's values are
 * copied, never decoded to strings): elements in double quotes with `"` and `\`
 * escaped, `'` doubled, NULL bare.
 */
class ArrayRows implements RowSink {
  readonly #types: string[];
  readonly #alias: string;
  readonly #indexes: readonly number[];
  /** Finished statements' arrays, and the arrays being filled. */
  readonly #done: ByteText[][] = [];
  #arrays: ByteText[];
  #rows = 0;

  constructor(types: string[], alias: string, indexes: readonly number[]) {
    this.#types = types;
    this.#alias = alias;
    this.#indexes = indexes;
    this.#arrays = types.map(() => new ByteText());
  }

  add(keys: readonly string[], row: Tuple | undefined): void {
    const arrays = this.#arrays;
    const first = this.#rows === 0;
    let c = 0;
    for (; c < keys.length; c++) arrays[c]!.element(keys[c]!, first);
    if (row !== undefined) {
      const raw = row instanceof RawTuple ? row : undefined;
      const values = raw === undefined ? row.values : undefined;
      for (const i of this.#indexes) {
        const out = arrays[c++]!;
        if (raw === undefined) out.element(values![i] as string | null, first);
        else if (raw.kinds.charCodeAt(i) !== 116) out.element(null, first); // n (u is left out)
        else out.rawElement(raw.bytes, raw.bounds[2 * i]!, raw.bounds[2 * i + 1]!, first);
      }
    }
    this.#rows++;
    let bytes = 0;
    for (const array of arrays) bytes += array.length;
    if (this.#rows >= ROWS_PER_STATEMENT || bytes >= BYTES_PER_STATEMENT) {
      this.#done.push(arrays);
      this.#arrays = this.#types.map(() => new ByteText());
      this.#rows = 0;
    }
  }

  *statements(head: string, tail: string): Generator<Uint8Array> {
    if (this.#rows > 0) this.#done.push(this.#arrays);
    for (const arrays of this.#done) {
      const out = new ByteText();
      out.text(`${head}unnest(`);
      arrays.forEach((array, i) => {
        out.text(i === 0 ? "'{" : ", '{");
        out.bytes(array.view);
        out.text(`}'::${this.#types[i]}[]`);
      });
      out.text(`) as ${this.#alias}${tail}`);
      yield out.view;
    }
  }
}

/**
 * Rows as `(values (…), …) as v_(…)`, the first row's values cast to the
 * columns' types (the untyped literals of the other rows take the same).
 */
class ValuesRows implements RowSink {
  readonly #types: string[];
  readonly #alias: string;
  readonly #indexes: readonly number[];
  readonly #rows: string[] = [];
  #bytes = 0;
  readonly #done: string[][] = [];

  constructor(types: string[], alias: string, indexes: readonly number[]) {
    this.#types = types;
    this.#alias = alias;
    this.#indexes = indexes;
  }

  add(keys: readonly string[], row: Tuple | undefined): void {
    const values = row === undefined
      ? keys
      : [...keys, ...this.#indexes.map((i) => row.values[i] as string | null)];
    const first = this.#rows.length === 0;
    const tuple = `(${
      values.map((v, i) => first ? `${literal(v)}::${this.#types[i]}` : literal(v)).join(",")
    })`;
    this.#rows.push(tuple);
    this.#bytes += tuple.length;
    if (this.#rows.length >= ROWS_PER_STATEMENT || this.#bytes >= BYTES_PER_STATEMENT) {
      this.#done.push(this.#rows.splice(0));
      this.#bytes = 0;
    }
  }

  *statements(head: string, tail: string): Generator<Uint8Array> {
    if (this.#rows.length > 0) this.#done.push(this.#rows.splice(0));
    for (const rows of this.#done) {
      yield encoder.encode(`${head}(values ${rows.join(",")}) as ${this.#alias}${tail}`);
    }
  }
}

/** The byte written before a byte inside a double-quoted array element in a SQL string literal, else 0. */
const ELEMENT_ESCAPES = new Uint8Array(256);
ELEMENT_ESCAPES[34] = 92; // "  → \"
ELEMENT_ESCAPES[92] = 92; // \  → \\
ELEMENT_ESCAPES[39] = 39; // '  → ''

/** Where a text value is encoded before it is escaped into an array. */
const SCRATCH_KEPT = 64 * 1024;
let scratch = new Uint8Array(1024);

/** UTF-8 text built in a growing buffer. */
class ByteText {
  #buffer: Uint8Array;
  /** Bytes written; a caller writing into `reserve()`'s buffer moves it. */
  length = 0;

  constructor(size = 1024) {
    this.#buffer = new Uint8Array(size);
  }

  get view(): Uint8Array {
    return this.#buffer.subarray(0, this.length);
  }

  /** The buffer, with room for `more` bytes after `length`. */
  reserve(more: number): Uint8Array {
    if (this.length + more > this.#buffer.length) {
      const bigger = new Uint8Array(Math.max(this.length + more, 2 * this.#buffer.length));
      bigger.set(this.view);
      this.#buffer = bigger;
    }
    return this.#buffer;
  }

  text(text: string): void {
    this.reserve(3 * text.length);
    this.length += encoder.encodeInto(text, this.#buffer.subarray(this.length)).written;
  }

  bytes(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.#buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  /** One array element (after a comma unless `first`): text quoted and escaped, or NULL. */
  element(value: string | null, first: boolean): void {
    if (value === null) return this.text(first ? "NULL" : ",NULL");
    if (3 * value.length > scratch.length) scratch = new Uint8Array(3 * value.length);
    this.rawElement(scratch, 0, encoder.encodeInto(value, scratch).written, first);
    if (scratch.length > SCRATCH_KEPT) scratch = new Uint8Array(SCRATCH_KEPT); // not held for ever
  }

  /** One array element of the UTF-8 text `bytes[start, end)`, quoted and escaped. */
  rawElement(bytes: Uint8Array, start: number, end: number, first: boolean): void {
    this.reserve(2 * (end - start) + 3);
    const out = this.#buffer;
    let p = this.length;
    if (!first) out[p++] = 44;
    out[p++] = 34;
    for (let j = start; j < end; j++) {
      const b = bytes[j]!;
      const escape = ELEMENT_ESCAPES[b]!;
      if (escape !== 0) out[p++] = escape;
      out[p++] = b;
    }
    out[p++] = 34;
    this.length = p;
  }
}

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};
/** The letter after the backslash that escapes a byte in COPY text (t n r and the backslash), else 0. */
const COPY_ESCAPE_BYTES = new Uint8Array(256);
COPY_ESCAPE_BYTES[9] = 116;
COPY_ESCAPE_BYTES[10] = 110;
COPY_ESCAPE_BYTES[13] = 114;
COPY_ESCAPE_BYTES[92] = 92;
const encoder = new TextEncoder();

/** One COPY line of a RawTuple's values, written at `p`; returns the end. */
function copyRawRow(out: Uint8Array, at: number, row: RawTuple): number {
  const { bytes, bounds, kinds } = row;
  let p = at;
  for (let i = 0; i < kinds.length; i++) {
    if (i > 0) out[p++] = 9; // \t
    if (kinds.charCodeAt(i) !== 116) { // NULL (a new row has no unchanged TOAST)
      out[p++] = 92;
      out[p++] = 78;
      continue;
    }
    const end = bounds[2 * i + 1]!;
    for (let j = bounds[2 * i]!; j < end; j++) {
      const b = bytes[j]!;
      const escape = COPY_ESCAPE_BYTES[b]!;
      if (escape === 0) out[p++] = b;
      else {
        out[p++] = 92; // backslash
        out[p++] = escape;
      }
    }
  }
  out[p++] = 10;
  return p;
}

/** One COPY line of text values. */
function copyLine(row: (string | null)[]): string {
  let line = "";
  for (let i = 0; i < row.length; i++) {
    const value = row[i]!;
    if (i > 0) line += "\t";
    if (value === null) line += "\\N";
    else if (COPY_SPECIAL.test(value)) {
      line += value.replace(/[\\\n\r\t]/g, (c) => COPY_ESCAPES[c]!);
    } else line += value;
  }
  return line + "\n";
}
