/**
 * wal2json format-version 2 to Changes: one JSON object per message, with the
 * options of `WAL2JSON_OPTIONS`.
 *
 * ```
 * {"action":"B","xid":N,"timestamp":"…","lsn":"X/Y","nextlsn":"X/Y"}   lsn = commit record
 * {"action":"C","xid":N,"timestamp":"…","lsn":"X/Y","nextlsn":"X/Y"}   nextlsn = its end
 * {"action":"I"|"U"|"D", …, "schema":S,"table":T,
 *    "columns":[{"name":…,"type":…,"typeoid":N,"value":V}…],       I, U: new row
 *    "identity":[{"name":…,"type":…,"typeoid":N,"value":V}…]}      U, D: key or old row
 * {"action":"T", …, "schema":S,"table":T}                 one per table, no options
 * {"action":"M", …}                                       logical message (ignored)
 * ```
 *
 * Values: strings are the type's text output, except bytea (the leading `\x`
 * is cut off: put back here) and bool (JSON true/false: `t`/`f` here).
 * int2/int4/int8/oid/float4/float8/numeric are written as bare JSON numbers
 * with the output function's exact text: the decoder quotes them before
 * JSON.parse, so 40-digit numerics and float8 keep every digit. wal2json 2.5 has no
 * `numeric-data-types-as-string` (it arrived in 2.6), and it writes NaN and
 * ±Infinity of those types as JSON null: they arrive here as SQL NULL. Use
 * pgoutput for tables that hold them.
 *
 * Unchanged TOAST columns are left out of "columns" (filled back as
 * unchanged TOAST when the Relation is known). "identity" of an UPDATE whose
 * key did not change repeats the new key: dropped, as the other plugins never
 * send it. TRUNCATE comes as one "T" per table with the same LSN: consecutive
 * ones are merged into one Truncate (emitted with the next message), without
 * cascade/restart identity, which wal2json does not report.
 */
import { type Lsn, parseLsn } from "../lsn.ts";
import type {
  Change,
  ChangeDecoder,
  OldTuple,
  RelationLookup,
  TableName,
  Tuple,
  Value,
} from "./change.ts";
import { UNCHANGED_TOAST } from "./change.ts";
import { oldKeyRepeatsNew } from "./old_key.ts";
import { parsePgTimestamp } from "./pg_timestamp.ts";
import type { PluginOptions } from "./plugin_options.ts";
import { type MessageColumns, type TableEntry, TupleBuilder } from "./tuple_builder.ts";
import { decodeUtf8 } from "./utf8.ts";

/**
 * What wal2json needs: format 2, xids, commit times, commit LSNs, type OIDs
 * (bytea and bool are recognised by OID), and BEGIN/COMMIT messages.
 */
export const WAL2JSON_OPTIONS: PluginOptions = [
  ["format-version", "2"],
  ["include-xids", "1"],
  ["include-timestamp", "1"],
  ["include-lsn", "1"],
  ["include-type-oids", "1"],
  ["include-types", "1"],
  ["include-transaction", "1"],
];

const BYTEA_OID = 17;
const BOOL_OID = 16;

interface JsonColumn {
  name: string;
  type?: string;
  typeoid?: number | string;
  value?: string | boolean | null;
}

interface JsonMessage {
  action: string;
  xid?: number | string;
  timestamp?: string;
  lsn?: string;
  nextlsn?: string;
  schema?: string;
  table?: string;
  columns?: JsonColumn[];
  identity?: JsonColumn[];
}

/**
 * A bare number after `"value":`, which wal2json writes for int2, int4, int8,
 * oid, float4, float8 and numeric (its text passed `strspn(…,
 * "0123456789+-eE.")`). Quoting it before JSON.parse keeps the exact text.
 * The pattern cannot match inside a JSON string: there every `"` is escaped,
 * so `value` is followed by `\"`, never by `":`.
 */
const BARE_NUMBER_VALUE = /"value":\s*(-?[0-9][0-9.eE+-]*)/g;

/** The message with its number values quoted (7x faster than a JSON.parse reviver). */
function quoteNumberValues(text: string): string {
  return text.includes('"value":') ? text.replace(BARE_NUMBER_VALUE, '"value":"$1"') : text;
}

interface PendingTruncate {
  lsn: Lsn;
  relations: TableName[];
}

/** Decodes wal2json messages; one instance per replication stream. */
export class Wal2jsonDecoder implements ChangeDecoder {
  readonly #tuples: TupleBuilder;
  #pending: PendingTruncate | null = null;

  /** `lookup` names key and generated columns and REPLICA IDENTITY FULL tables. */
  constructor(lookup?: RelationLookup) {
    this.#tuples = new TupleBuilder(lookup);
  }

  /** Forgets cached Relations: call when the catalog changes. */
  invalidate(): void {
    this.#tuples.invalidate();
  }

  decode(walStart: Lsn, data: Uint8Array | string): Change[] {
    let text: string;
    try {
      text = typeof data === "string" ? data : decodeUtf8(data);
    } catch (err) {
      throw new SyntaxError("Invalid wal2json message: not valid UTF-8", { cause: err });
    }
    let message: JsonMessage;
    try {
      message = JSON.parse(quoteNumberValues(text)) as JsonMessage;
    } catch (err) {
      throw invalid(text, "not JSON", err);
    }
    if (typeof message !== "object" || message === null || typeof message.action !== "string") {
      throw invalid(text, "no action");
    }
    const out: Change[] = [];
    if (message.action === "T") {
      this.#truncate(walStart, message, text, out);
      return out;
    }
    if (this.#pending !== null) out.push(this.#flushTruncate());
    const change = this.#change(walStart, message, text);
    if (change !== null) out.push(change);
    return out;
  }

  #flushTruncate(): Change {
    const { lsn, relations } = this.#pending!;
    this.#pending = null;
    return { tag: "Truncate", lsn, relations, cascade: false, restartIdentity: false };
  }

  #truncate(walStart: Lsn, message: JsonMessage, text: string, out: Change[]): void {
    const entry = this.#table(message, text);
    if (this.#pending !== null && this.#pending.lsn !== walStart) out.push(this.#flushTruncate());
    if (this.#pending === null) this.#pending = { lsn: walStart, relations: [] };
    this.#pending.relations.push(entry.name);
  }

  #change(lsn: Lsn, message: JsonMessage, text: string): Change | null {
    switch (message.action) {
      case "B":
        return {
          tag: "Begin",
          lsn,
          xid: xidOf(message, text),
          ...(message.lsn === undefined ? {} : { finalLsn: lsnOf(message.lsn, text) }),
          ...(message.timestamp === undefined
            ? {}
            : { commitTime: timeOf(message.timestamp, text) }),
        };
      case "C": {
        if (message.timestamp === undefined) {
          throw invalid(text, "COMMIT without timestamp: is include-timestamp on?");
        }
        return {
          tag: "Commit",
          lsn,
          ...(message.lsn === undefined ? {} : { commitLsn: lsnOf(message.lsn, text) }),
          endLsn: message.nextlsn === undefined ? lsn : lsnOf(message.nextlsn, text),
          commitTime: timeOf(message.timestamp, text),
        };
      }
      case "I": {
        const entry = this.#table(message, text);
        const columns = messageColumns(message.columns, "columns", text);
        return {
          tag: "Insert",
          lsn,
          relation: entry.name,
          new: this.#tuples.tuple(entry, "new", columns),
        };
      }
      case "U": {
        const entry = this.#table(message, text);
        const columns = messageColumns(message.columns, "columns", text);
        const next: Tuple = this.#tuples.tuple(entry, "new", columns, UNCHANGED_TOAST);
        let old = message.identity === undefined ? null : this.#old(entry, message.identity, text);
        if (old !== null && oldKeyRepeatsNew(old, next)) old = null;
        return { tag: "Update", lsn, relation: entry.name, old, new: next };
      }
      case "D": {
        const entry = this.#table(message, text);
        const old = message.identity === undefined
          ? null
          : this.#old(entry, message.identity, text);
        return { tag: "Delete", lsn, relation: entry.name, old };
      }
      case "M":
        return null;
      default:
        throw invalid(text, `unknown action "${message.action}"`);
    }
  }

  #table(message: JsonMessage, text: string): TableEntry {
    const { schema, table } = message;
    if (typeof schema !== "string" || typeof table !== "string") {
      throw invalid(text, "no schema or table: is include-schemas off?");
    }
    return this.#tuples.table(schema, table);
  }

  #old(entry: TableEntry, identity: JsonColumn[], text: string): OldTuple {
    const kind = this.#tuples.oldKind(entry);
    const columns = messageColumns(identity, "identity", text);
    const tuple = this.#tuples.tuple(entry, kind, columns, kind === "row" ? null : undefined);
    return { kind, columns: tuple.columns, values: tuple.values };
  }
}

function messageColumns(
  list: JsonColumn[] | undefined,
  field: string,
  text: string,
): MessageColumns {
  if (!Array.isArray(list)) throw invalid(text, `no "${field}"`);
  const n = list.length;
  const names: string[] = new Array(n);
  const typeNames: (string | null)[] = new Array(n);
  const typeOids: number[] = new Array(n);
  const values: Value[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const column = list[i]!;
    if (typeof column.name !== "string") throw invalid(text, `column without a name in "${field}"`);
    const oid = column.typeoid === undefined ? 0 : Number(column.typeoid);
    names[i] = column.name;
    typeNames[i] = column.type ?? null;
    typeOids[i] = oid;
    const value = column.value;
    if (value === null || value === undefined) {
      values[i] = null;
    } else if (typeof value === "string") {
      values[i] = oid === BYTEA_OID || (oid === 0 && column.type === "bytea")
        ? `\\x${value}`
        : value;
    } else if (typeof value === "boolean" && (oid === BOOL_OID || oid === 0)) {
      values[i] = value ? "t" : "f";
    } else {
      throw invalid(text, `unexpected value of column "${column.name}"`);
    }
  }
  return { names, typeNames, typeOids, values };
}

function xidOf(message: JsonMessage, text: string): number {
  const xid = Number(message.xid);
  if (message.xid === undefined || !Number.isInteger(xid)) {
    throw invalid(text, "BEGIN without xid: is include-xids on?");
  }
  return xid;
}

function lsnOf(value: string, text: string): Lsn {
  try {
    return parseLsn(value);
  } catch (err) {
    throw invalid(text, `bad LSN "${value}"`, err);
  }
}

function timeOf(value: string, text: string): bigint {
  try {
    return parsePgTimestamp(value);
  } catch (err) {
    throw invalid(text, `bad timestamp "${value}"`, err);
  }
}

function invalid(text: string, detail: string, cause?: unknown): SyntaxError {
  const excerpt = text.length > 120 ? `${text.slice(0, 120)}…` : text;
  return new SyntaxError(
    `Invalid wal2json message "${excerpt}": ${detail}`,
    cause === undefined ? undefined : { cause },
  );
}
