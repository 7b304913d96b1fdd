/**
 * Tuples for the text plugins (test_decoding, wal2json), which name columns in
 * every message but do not say which form the key, which are generated, or
 * (for unchanged TOAST in wal2json and NULLs in test_decoding's old rows)
 * which were left out. The caller's `RelationLookup` (the catalog) says.
 *
 * With a Relation, a column is described by the Relation (type OID and name,
 * key flag) and generated columns are dropped, as pgoutput does; without one,
 * by the message (type name, and OID when sent) with no key flags.
 *
 * `columns` arrays are interned per table and shape, so a big transaction on
 * one table shares one array and its Column objects.
 */
import type {
  Column,
  OldTuple,
  Relation,
  RelationLookup,
  TableName,
  Tuple,
  Value,
} from "./change.ts";

/** What a decoder remembers about one table. */
export interface TableEntry {
  readonly name: TableName;
  readonly relation: Relation | undefined;
  /** Known shapes: the message's column names → the tuple's columns. */
  readonly shapes: Shape[];
  /** Relation columns as Column objects (generated ones included, flagged by `generated`). */
  readonly relationColumns: readonly (Column & { readonly generated: boolean })[];
  /** The non-generated Relation columns: the shape of a filled tuple. */
  readonly fullRow: readonly Column[];
}

interface Shape {
  readonly kind: TupleKind;
  readonly names: readonly string[];
  readonly typeNames: readonly (string | null)[];
  readonly columns: readonly Column[];
  /** Positions of the message's columns that are kept; null when all are. */
  readonly keep: readonly number[] | null;
}

/** `"new"` for new rows, or the kind of an old one. */
export type TupleKind = "new" | OldTuple["kind"];

const MAX_SHAPES_PER_TABLE = 16;

/** Column names, type names and values as a message lists them. */
export interface MessageColumns {
  names: string[];
  typeNames: (string | null)[];
  /** Type OIDs when the plugin sends them (wal2json `include-type-oids`). */
  typeOids: number[] | null;
  values: Value[];
}

/** Builds Tuples for one decoder; one instance per replication stream. */
export class TupleBuilder {
  readonly #lookup: RelationLookup | undefined;
  readonly #tables = new Map<string, Map<string, TableEntry>>();

  constructor(lookup: RelationLookup | undefined) {
    this.#lookup = lookup;
  }

  /** Forgets every table: call when the catalog's Relations change. */
  invalidate(): void {
    this.#tables.clear();
  }

  /** The entry of a table, asking the lookup once. */
  table(schema: string, table: string): TableEntry {
    let bySchema = this.#tables.get(schema);
    if (bySchema === undefined) {
      bySchema = new Map();
      this.#tables.set(schema, bySchema);
    }
    let entry = bySchema.get(table);
    if (entry === undefined) {
      const relation = this.#lookup?.(schema, table);
      const full = relation?.replicaIdentity === "f";
      const relationColumns = (relation?.columns ?? []).map((c) => ({
        name: c.name,
        typeOid: c.typeOid,
        typeName: c.typeName,
        key: full || c.key,
        generated: c.generated,
      }));
      entry = {
        name: { schema, table },
        relation,
        shapes: [],
        relationColumns,
        fullRow: relationColumns.filter((c) => !c.generated).map(({ generated: _, ...c }) => c),
      };
      bySchema.set(table, entry);
    }
    return entry;
  }

  /** The kind of an old tuple of this table: a whole row under REPLICA IDENTITY FULL. */
  oldKind(entry: TableEntry): OldTuple["kind"] {
    return entry.relation?.replicaIdentity === "f" ? "row" : "key";
  }

  /**
   * A tuple from a message's columns. With `fill` and a known Relation, the
   * tuple has every non-generated column of the table, and those the message
   * left out get `fill` (null for test_decoding's old rows, which skip NULLs;
   * unchanged TOAST for wal2json's new rows, which skip those).
   */
  tuple(entry: TableEntry, kind: TupleKind, message: MessageColumns, fill?: Value): Tuple {
    if (fill !== undefined && entry.relation !== undefined) {
      const filled = this.#filled(entry, message, fill);
      if (filled !== null) return filled;
    }
    const shape = this.#shape(entry, kind, message);
    const values = shape.keep === null ? message.values : shape.keep.map((i) => message.values[i]!);
    return { columns: shape.columns, values };
  }

  /** Null when the message has a column the Relation does not know. */
  #filled(entry: TableEntry, message: MessageColumns, fill: Value): Tuple | null {
    const { names, values } = message;
    const full = entry.fullRow;
    // Both lists are in attribute order: walk them together.
    const out: Value[] = new Array(full.length);
    let matched = 0;
    let j = 0;
    for (let i = 0; i < full.length; i++) {
      const name = full[i]!.name;
      let k = j;
      while (k < names.length && names[k] !== name) k++;
      if (k < names.length) {
        out[i] = values[k]!;
        j = k + 1;
        matched++;
      } else {
        out[i] = fill;
      }
    }
    if (matched !== names.length) {
      // Only generated columns may be left over.
      for (const name of names) {
        if (!entry.relationColumns.some((c) => c.name === name)) return null;
      }
    }
    return { columns: full, values: out };
  }

  #shape(entry: TableEntry, kind: TupleKind, message: MessageColumns): Shape {
    const { names, typeNames } = message;
    const byRelation = entry.relation !== undefined;
    for (const shape of entry.shapes) {
      if (
        shape.kind === kind && sameNames(shape.names, names) &&
        (byRelation || sameNames(shape.typeNames, typeNames))
      ) {
        return shape;
      }
    }
    const columns: Column[] = [];
    const keep: number[] = [];
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const known = entry.relationColumns.find((c) => c.name === name);
      if (known?.generated) continue;
      keep.push(i);
      if (known !== undefined) {
        const { generated: _, ...column } = known;
        columns.push(kind === "key" && !column.key ? { ...column, key: true } : column);
      } else {
        columns.push({
          name,
          typeOid: message.typeOids?.[i] ?? 0,
          typeName: typeNames[i] ?? null,
          key: kind === "key",
        });
      }
    }
    const shape: Shape = {
      kind,
      names: names.slice(),
      typeNames: typeNames.slice(),
      columns,
      keep: keep.length === names.length ? null : keep,
    };
    if (entry.shapes.length >= MAX_SHAPES_PER_TABLE) entry.shapes.shift();
    entry.shapes.push(shape);
    return shape;
  }
}

function sameNames(a: readonly (string | null)[], b: readonly (string | null)[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
