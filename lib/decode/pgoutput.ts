/**
 * pgoutput, logical replication protocol version 1, to Changes. Integers are
 * big-endian; String is NUL-terminated UTF-8 (client_encoding); Int64 LSNs and
 * timestamps (microseconds since 2000-01-01 UTC).
 *
 * ```
 * Begin     'B' finalLsn:Int64 commitTime:Int64 xid:Int32
 * Commit    'C' flags:Int8(0) commitLsn:Int64 endLsn:Int64 commitTime:Int64
 * Origin    'O' commitLsn:Int64 name:String                         (ignored)
 * Relation  'R' relid:Int32 namespace:String name:String replident:Int8
 *               ncols:Int16 { flags:Int8(1 = key) name:String typeOid:Int32 typmod:Int32 }*
 * Type      'Y' oid:Int32 namespace:String name:String              (names the type)
 * Insert    'I' relid:Int32 'N' TupleData
 * Update    'U' relid:Int32 [ ('K' | 'O') TupleData ] 'N' TupleData
 * Delete    'D' relid:Int32 ('K' | 'O') TupleData
 * Truncate  'T' nrels:Int32 options:Int8(1 cascade, 2 restart identity) relid:Int32*
 * Message   'M' flags:Int8 lsn:Int64 prefix:String len:Int32 bytes  (ignored)
 * TupleData ncols:Int16 { 'n' | 'u' | 't' len:Int32 bytes }*
 * ```
 *
 * An empty namespace means pg_catalog. 'K' tuples carry every column with
 * null for the non-key ones; the decoder keeps the key columns. Generated
 * columns are never sent (PostgreSQL 15). See "Logical Replication Message
 * Formats" in the PostgreSQL documentation.
 */
import type { Lsn } from "../lsn.ts";
import { BUILTIN_TYPE_NAMES } from "./builtin_types.ts";
import {
  type Change,
  type ChangeDecoder,
  type Column,
  type OldTuple,
  RawOldTuple,
  RawTuple,
  type Relation,
  type RelationColumn,
  type TableName,
  type Tuple,
} from "./change.ts";
import { oldKeyRepeatsNew } from "./old_key.ts";
import type { PluginOptions } from "./plugin_options.ts";
import { checkUtf8, decodeUtf8 } from "./utf8.ts";

/**
 * The options pgoutput needs: protocol version 1 and the publications, written
 * as a list of quoted identifiers (pgoutput splits it like SQL identifiers).
 * Binary transfer and streaming stay off: values arrive as text, and
 * transactions only once committed.
 */
export function pgoutputOptions(publications: readonly string[]): PluginOptions {
  if (publications.length === 0) throw new RangeError("pgoutput needs at least one publication");
  const names = publications.map((name) => `"${name.replaceAll('"', '""')}"`).join(",");
  return [["proto_version", "1"], ["publication_names", names]];
}

const REPLICA_IDENTITIES = new Set(["d", "n", "f", "i"]);

/** A Relation plus what decoding its tuples needs. */
interface RelationState {
  readonly relation: Relation;
  readonly name: TableName;
  /** All columns, in message order: the `columns` of new tuples and of 'O' tuples. */
  readonly columns: readonly Column[];
  /** Positions of the key columns, and those columns: the `columns` of 'K' tuples. */
  readonly keyIndexes: readonly number[];
  readonly keyColumns: readonly Column[];
  /** The kinds of a tuple with a value in every column: "t" per column. */
  readonly allText: string;
}

const EMPTY_BYTES = new Uint8Array(0);

function invalid(detail: string): SyntaxError {
  return new SyntaxError(`Invalid pgoutput message: ${detail}`);
}

/**
 * Decodes pgoutput messages. Keeps the Relation and Type messages it has seen
 * (pgoutput sends each once per session, and again when the table changes).
 */
export class PgoutputDecoder implements ChangeDecoder {
  readonly #relations = new Map<number, RelationState>();
  readonly #typeNames = new Map<number, string>();
  /** Tuples stay bytes (RawTuple): for receive, which writes them to the spool as they are. */
  readonly #raw: boolean;
  // Read position inside the message being decoded.
  #bytes: Uint8Array = EMPTY_BYTES;
  #view: DataView | undefined;
  #pos = 0;

  /**
   * `raw`: row changes carry RawTuples (values decoded only when read), whose
   * bytes belong to the message: use the change before the buffer is reused.
   */
  constructor(options: { raw?: boolean } = {}) {
    this.#raw = options.raw ?? false;
  }

  /** The Relation last received for `relid`. */
  relation(relid: number): Relation | undefined {
    return this.#relations.get(relid)?.relation;
  }

  decode(walStart: Lsn, data: Uint8Array): Change[] {
    const change = this.decodeOne(walStart, data);
    return change === null ? [] : [change];
  }

  /** Like `decode`, without the array: null for messages that make no Change. */
  decodeOne(walStart: Lsn, data: Uint8Array): Change | null {
    if (data.length === 0) throw invalid("empty message");
    this.#bytes = data;
    this.#view = undefined;
    this.#pos = 1;
    const type = data[0]!;
    try {
      switch (type) {
        case 0x42: // 'B'
          return this.#begin(walStart);
        case 0x43: // 'C'
          return this.#commit(walStart);
        case 0x49: // 'I'
          return this.#insert(walStart);
        case 0x55: // 'U'
          return this.#update(walStart);
        case 0x44: // 'D'
          return this.#delete(walStart);
        case 0x54: // 'T'
          return this.#truncate(walStart);
        case 0x52: // 'R'
          this.#relationMessage();
          return null;
        case 0x59: // 'Y'
          this.#typeMessage();
          return null;
        case 0x4f: // 'O'
        case 0x4d: // 'M'
          return null;
        default:
          throw invalid(
            `unsupported message type "${String.fromCharCode(type)}" (0x${
              type.toString(16).padStart(2, "0")
            })`,
          );
      }
    } catch (err) {
      if (err instanceof RangeError) {
        // DataView read past the end.
        throw invalid(`"${String.fromCharCode(type)}" message truncated at ${data.length} bytes`);
      }
      if (err instanceof TypeError) {
        throw new SyntaxError("Invalid pgoutput message: text is not valid UTF-8", { cause: err });
      }
      throw err;
    } finally {
      // Do not hold on to the receive buffer.
      this.#bytes = EMPTY_BYTES;
      this.#view = undefined;
    }
  }

  // Integers are read from the bytes directly (a DataView per message costs more than a row's
  // values); a read past the end throws a RangeError, as DataView would.

  #need(n: number): number {
    const at = this.#pos;
    if (at + n > this.#bytes.length) throw new RangeError("read past the end");
    this.#pos = at + n;
    return at;
  }

  #u8(): number {
    return this.#bytes[this.#need(1)]!;
  }

  #u16(): number {
    const at = this.#need(2);
    return (this.#bytes[at]! << 8) | this.#bytes[at + 1]!;
  }

  #u32(): number {
    return this.#i32() >>> 0;
  }

  #i32(): number {
    const at = this.#need(4);
    const b = this.#bytes;
    return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
  }

  /** A DataView for the 64-bit integers of BEGIN and COMMIT. */
  #dataView(): DataView {
    const b = this.#bytes;
    return this.#view ??= new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  #u64(): bigint {
    return this.#dataView().getBigUint64(this.#need(8));
  }

  #i64(): bigint {
    return this.#dataView().getBigInt64(this.#need(8));
  }

  #string(): string {
    const end = this.#bytes.indexOf(0, this.#pos);
    if (end < 0) throw invalid("string without terminating NUL");
    const s = decodeUtf8(this.#bytes.subarray(this.#pos, end));
    this.#pos = end + 1;
    return s;
  }

  #begin(lsn: Lsn): Change {
    const finalLsn = this.#u64();
    const commitTime = this.#i64();
    const xid = this.#u32();
    return { tag: "Begin", lsn, xid, finalLsn, commitTime };
  }

  #commit(lsn: Lsn): Change {
    this.#u8(); // flags, unused
    const commitLsn = this.#u64();
    const endLsn = this.#u64();
    const commitTime = this.#i64();
    return { tag: "Commit", lsn, commitLsn, endLsn, commitTime };
  }

  #relationMessage(): void {
    const relid = this.#u32();
    const namespace = this.#string();
    const table = this.#string();
    const replicaIdentity = String.fromCharCode(this.#u8());
    if (!REPLICA_IDENTITIES.has(replicaIdentity)) {
      throw invalid(`relation ${relid} has unknown replica identity "${replicaIdentity}"`);
    }
    const ncols = this.#u16();
    const relationColumns: RelationColumn[] = [];
    const columns: Column[] = [];
    const keyIndexes: number[] = [];
    const keyColumns: Column[] = [];
    for (let i = 0; i < ncols; i++) {
      const key = (this.#u8() & 1) === 1;
      const name = this.#string();
      const typeOid = this.#u32();
      const typeMod = this.#i32();
      const typeName = BUILTIN_TYPE_NAMES.get(typeOid) ?? this.#typeNames.get(typeOid) ?? null;
      const column: Column = { name, typeOid, typeName, key };
      relationColumns.push({ ...column, typeMod, generated: false });
      columns.push(column);
      if (key) {
        keyIndexes.push(i);
        keyColumns.push(column);
      }
    }
    const schema = namespace === "" ? "pg_catalog" : namespace;
    const relation: Relation = {
      relid,
      schema,
      table,
      replicaIdentity: replicaIdentity as Relation["replicaIdentity"],
      columns: relationColumns,
    };
    this.#relations.set(relid, {
      relation,
      name: { schema, table },
      columns,
      keyIndexes,
      keyColumns,
      allText: "t".repeat(ncols),
    });
  }

  #typeMessage(): void {
    const oid = this.#u32();
    const namespace = this.#string();
    const name = this.#string();
    const quoted = `"${name.replaceAll('"', '""')}"`;
    this.#typeNames.set(
      oid,
      namespace === "" ? quoted : `"${namespace.replaceAll('"', '""')}".${quoted}`,
    );
  }

  #relationState(): RelationState {
    const relid = this.#u32();
    const state = this.#relations.get(relid);
    if (state === undefined) {
      throw invalid(`relation ${relid} was not described by a Relation message`);
    }
    return state;
  }

  /**
   * Reads TupleData: one kind letter per column of `state` (t text, n NULL,
   * u unchanged TOAST) and where each text value is (checked to be UTF-8).
   */
  #tupleData(state: RelationState): { kinds: string; bounds: number[] } {
    const ncols = this.#u16();
    if (ncols !== state.columns.length) {
      throw invalid(
        `tuple of "${state.name.schema}"."${state.name.table}" has ${ncols} columns, its Relation ${state.columns.length}`,
      );
    }
    const bytes = this.#bytes;
    const bounds: number[] = new Array(2 * ncols);
    // Most rows have a value in every column: their kinds are the relation's string.
    let kinds: string | undefined; // undefined while every value so far is text
    for (let i = 0; i < ncols; i++) {
      const kind = this.#u8();
      if (kind === 0x74) { // 't'
        const len = this.#u32();
        const start = this.#pos;
        const end = start + len;
        if (end > bytes.length) throw new RangeError("value past end");
        checkUtf8(bytes, start, end);
        bounds[2 * i] = start;
        bounds[2 * i + 1] = end;
        this.#pos = end;
        if (kinds !== undefined) kinds += "t";
      } else if (kind === 0x6e || kind === 0x75) { // 'n', 'u'
        bounds[2 * i] = bounds[2 * i + 1] = 0;
        kinds = (kinds ?? state.allText.slice(0, i)) + (kind === 0x6e ? "n" : "u");
      } else {
        throw invalid(`unsupported tuple value kind "${String.fromCharCode(kind)}"`);
      }
    }
    return { kinds: kinds ?? state.allText, bounds };
  }

  #newTuple(state: RelationState): Tuple {
    const marker = this.#u8();
    if (marker !== 0x4e) {
      throw invalid(`expected "N" before the new tuple, got "${String.fromCharCode(marker)}"`);
    }
    const { kinds, bounds } = this.#tupleData(state);
    const tuple = new RawTuple(state.columns, kinds, this.#bytes, bounds);
    return this.#raw ? tuple : { columns: tuple.columns, values: tuple.values };
  }

  #oldTuple(state: RelationState, marker: number): OldTuple {
    let { kinds, bounds } = this.#tupleData(state);
    let kind: "key" | "row" = "row";
    let columns = state.columns;
    if (marker === 0x4b) { // 'K': the key columns (the others are sent as NULL)
      kind = "key";
      columns = state.keyColumns;
      kinds = state.keyIndexes.map((i) => kinds[i]).join("");
      bounds = state.keyIndexes.flatMap((i) => [bounds[2 * i]!, bounds[2 * i + 1]!]);
    }
    const tuple = new RawOldTuple(kind, columns, kinds, this.#bytes, bounds);
    return this.#raw ? tuple : { kind, columns, values: tuple.values };
  }

  #insert(lsn: Lsn): Change {
    const state = this.#relationState();
    return { tag: "Insert", lsn, relation: state.name, new: this.#newTuple(state) };
  }

  #update(lsn: Lsn): Change {
    const state = this.#relationState();
    let old: OldTuple | null = null;
    const marker = this.#bytes[this.#pos];
    if (marker === 0x4b || marker === 0x4f) { // 'K' | 'O'
      this.#pos++;
      old = this.#oldTuple(state, marker);
    }
    const next = this.#newTuple(state);
    if (old !== null && oldKeyRepeatsNew(old, next)) old = null;
    return { tag: "Update", lsn, relation: state.name, old, new: next };
  }

  #delete(lsn: Lsn): Change {
    const state = this.#relationState();
    const marker = this.#u8();
    if (marker !== 0x4b && marker !== 0x4f) {
      throw invalid(`expected "K" or "O" in a Delete, got "${String.fromCharCode(marker)}"`);
    }
    return { tag: "Delete", lsn, relation: state.name, old: this.#oldTuple(state, marker) };
  }

  #truncate(lsn: Lsn): Change {
    const n = this.#u32();
    const options = this.#u8();
    const relations: TableName[] = [];
    for (let i = 0; i < n; i++) relations.push(this.#relationState().name);
    return {
      tag: "Truncate",
      lsn,
      relations,
      cascade: (options & 1) !== 0,
      restartIdentity: (options & 2) !== 0,
    };
  }
}
