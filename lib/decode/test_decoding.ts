/**
 * test_decoding text to Changes. One message per line of output, with the
 * options of `TEST_DECODING_OPTIONS`:
 *
 * ```
 * message  := "BEGIN " xid
 *           | "COMMIT " xid " (at " timestamptz ")"
 *           | "table " qualname ": " ("INSERT" | "UPDATE" | "DELETE") ":" body
 *           | "table " qualname { ", " qualname } ": TRUNCATE: " flags
 *           | "message: " …                                          (ignored)
 * body     := tuple | " (no-tuple-data)" | " old-key:" tuple " new-tuple:" tuple
 * tuple    := { " " ident "[" type "]:" value }
 * flags    := "(no-flags)" | [ "restart_seqs" ] [ " " ] [ "cascade" ]
 * value    := "null" | "unchanged-toast-datum" | "true" | "false"
 *           | "'" text with ' doubled "'" | "B'" bits "'" | number (unquoted)
 * qualname := ident "." ident;  ident := [a-z_][a-z0-9_]* | '"' with " doubled '"'
 * ```
 *
 * Type names come from `format_type_be()`: no typmod (`character varying`),
 * possibly quoted and qualified, `[]` for arrays. Old tuples skip NULL
 * columns; booleans print as true/false and bit strings as B'…' (turned back
 * into `t`/`f` and the bare bits here). test_decoding does not mark key or
 * generated columns: the caller's `RelationLookup` does (see TupleBuilder).
 *
 * The commit LSN is not in the text: the COMMIT message's walStart is the end
 * of the commit record, which becomes `Commit.endLsn`.
 */
import type { Lsn } from "../lsn.ts";
import {
  type Change,
  type ChangeDecoder,
  type OldTuple,
  type RelationLookup,
  type TableName,
  type Tuple,
  UNCHANGED_TOAST,
  type Value,
} from "./change.ts";
import { oldKeyRepeatsNew } from "./old_key.ts";
import { parsePgTimestamp } from "./pg_timestamp.ts";
import type { PluginOptions } from "./plugin_options.ts";
import { type MessageColumns, type TableEntry, TupleBuilder } from "./tuple_builder.ts";
import { decodeUtf8 } from "./utf8.ts";

/**
 * What test_decoding needs: transaction ids on BEGIN/COMMIT, the commit time
 * on COMMIT, and no BEGIN/COMMIT for transactions without changes (as
 * pgoutput).
 */
export const TEST_DECODING_OPTIONS: PluginOptions = [
  ["include-xids", "1"],
  ["include-timestamp", "1"],
  ["skip-empty-xacts", "1"],
];

const COMMIT_PATTERN = /^COMMIT (\d+) \(at (.+)\)$/;
const BEGIN_PATTERN = /^BEGIN (\d+)$/;

const QUOTE = 0x22; // "
const APOSTROPHE = 0x27; // '
const SPACE = 0x20;

function isBareIdentChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f; // a-z 0-9 _
}

/** Decodes test_decoding messages; one instance per replication stream. */
export class TestDecodingDecoder implements ChangeDecoder {
  readonly #tuples: TupleBuilder;
  // The message being parsed, and the position in it.
  #text = "";
  #pos = 0;

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
      throw new SyntaxError("Invalid test_decoding message: not valid UTF-8", { cause: err });
    }
    const change = this.decodeText(walStart, text);
    return change === null ? [] : [change];
  }

  /** One message's text to a Change, or null for a logical message. */
  decodeText(walStart: Lsn, text: string): Change | null {
    this.#text = text;
    this.#pos = 0;
    try {
      if (text.startsWith("table ")) return this.#table(walStart);
      if (text.startsWith("BEGIN")) {
        const m = BEGIN_PATTERN.exec(text);
        if (m === null) throw this.#invalid("BEGIN without a transaction id: is include-xids on?");
        return { tag: "Begin", lsn: walStart, xid: Number(m[1]) };
      }
      if (text.startsWith("COMMIT")) {
        const m = COMMIT_PATTERN.exec(text);
        if (m === null) {
          throw this.#invalid(
            "COMMIT without xid and time: are include-xids and include-timestamp on?",
          );
        }
        return {
          tag: "Commit",
          lsn: walStart,
          endLsn: walStart,
          commitTime: parsePgTimestamp(m[2]!),
        };
      }
      if (text.startsWith("message:")) return null;
      throw this.#invalid("unsupported message");
    } finally {
      this.#text = "";
    }
  }

  #invalid(detail: string): SyntaxError {
    const text = this.#text;
    const excerpt = text.length > 120 ? `${text.slice(0, 120)}…` : text;
    return new SyntaxError(
      `Invalid test_decoding message "${excerpt}": ${detail} (at offset ${this.#pos})`,
    );
  }

  #expect(literal: string): void {
    if (!this.#text.startsWith(literal, this.#pos)) throw this.#invalid(`expected "${literal}"`);
    this.#pos += literal.length;
  }

  #ident(): string {
    const text = this.#text;
    const start = this.#pos;
    if (text.charCodeAt(start) === QUOTE) {
      let pos = start + 1;
      let doubled = false;
      for (;;) {
        const end = text.indexOf('"', pos);
        if (end < 0) throw this.#invalid("unterminated quoted identifier");
        if (text.charCodeAt(end + 1) === QUOTE) {
          doubled = true;
          pos = end + 2;
          continue;
        }
        this.#pos = end + 1;
        const inner = text.slice(start + 1, end);
        return doubled ? inner.replaceAll('""', '"') : inner;
      }
    }
    let pos = start;
    while (pos < text.length && isBareIdentChar(text.charCodeAt(pos))) pos++;
    if (pos === start) throw this.#invalid("expected an identifier");
    this.#pos = pos;
    return text.slice(start, pos);
  }

  #tableEntry(): TableEntry {
    const schema = this.#ident();
    this.#expect(".");
    const table = this.#ident();
    return this.#tuples.table(schema, table);
  }

  #table(lsn: Lsn): Change {
    this.#pos = "table ".length;
    const entry = this.#tableEntry();
    if (this.#text.startsWith(", ", this.#pos) || this.#text.startsWith(": TRUNCATE:", this.#pos)) {
      return this.#truncate(lsn, entry.name);
    }
    this.#expect(": ");
    const text = this.#text;
    const relation = entry.name;
    if (text.startsWith("INSERT:", this.#pos)) {
      this.#pos += "INSERT:".length;
      const columns = this.#columns(false);
      if (columns === null) throw this.#invalid("INSERT without tuple data");
      return { tag: "Insert", lsn, relation, new: this.#tuples.tuple(entry, "new", columns) };
    }
    if (text.startsWith("UPDATE:", this.#pos)) {
      this.#pos += "UPDATE:".length;
      let old: OldTuple | null = null;
      if (text.startsWith(" old-key:", this.#pos)) {
        this.#pos += " old-key:".length;
        old = this.#old(entry, this.#columns(true) ?? emptyColumns());
        this.#expect(" new-tuple:");
      }
      const columns = this.#columns(false);
      if (columns === null) throw this.#invalid("UPDATE without new tuple data");
      const next: Tuple = this.#tuples.tuple(entry, "new", columns);
      if (old !== null && oldKeyRepeatsNew(old, next)) old = null;
      return { tag: "Update", lsn, relation, old, new: next };
    }
    if (text.startsWith("DELETE:", this.#pos)) {
      this.#pos += "DELETE:".length;
      const columns = this.#columns(false);
      return {
        tag: "Delete",
        lsn,
        relation,
        old: columns === null ? null : this.#old(entry, columns),
      };
    }
    throw this.#invalid("unknown action");
  }

  #old(entry: TableEntry, columns: MessageColumns): OldTuple {
    const kind = this.#tuples.oldKind(entry);
    // Old tuples skip NULL columns: a whole row gets them back as nulls.
    const tuple = this.#tuples.tuple(entry, kind, columns, kind === "row" ? null : undefined);
    return { kind, columns: tuple.columns, values: tuple.values };
  }

  #truncate(lsn: Lsn, first: TableName): Change {
    const relations = [first];
    while (this.#text.startsWith(", ", this.#pos)) {
      this.#pos += 2;
      relations.push(this.#tableEntry().name);
    }
    this.#expect(": TRUNCATE: ");
    const flags = this.#text.slice(this.#pos);
    if (flags === "(no-flags)") {
      return { tag: "Truncate", lsn, relations, cascade: false, restartIdentity: false };
    }
    const words = flags.split(" ");
    if (words.some((w) => w !== "restart_seqs" && w !== "cascade")) {
      throw this.#invalid("unknown TRUNCATE flags");
    }
    return {
      tag: "Truncate",
      lsn,
      relations,
      cascade: words.includes("cascade"),
      restartIdentity: words.includes("restart_seqs"),
    };
  }

  /**
   * Reads ` name[type]:value` items up to the end, or (in an old key) up to
   * " new-tuple:". Null for " (no-tuple-data)".
   */
  #columns(inOldKey: boolean): MessageColumns | null {
    const text = this.#text;
    if (text.startsWith(" (no-tuple-data)", this.#pos)) {
      this.#pos += " (no-tuple-data)".length;
      return null;
    }
    const names: string[] = [];
    const typeNames: string[] = [];
    const values: Value[] = [];
    while (this.#pos < text.length) {
      if (inOldKey && text.startsWith(" new-tuple:", this.#pos)) break;
      if (text.charCodeAt(this.#pos) !== SPACE) {
        throw this.#invalid("expected a space before a column");
      }
      this.#pos++;
      names.push(this.#ident());
      this.#expect("[");
      typeNames.push(this.#typeName());
      this.#expect("]:");
      values.push(this.#value());
    }
    return { names, typeNames, typeOids: null, values };
  }

  /** The type between "[" and "]:", which may itself hold "[]" and quoted names. */
  #typeName(): string {
    const text = this.#text;
    const start = this.#pos;
    let pos = start;
    let quoted = false;
    for (; pos < text.length; pos++) {
      const c = text.charCodeAt(pos);
      if (c === QUOTE) quoted = !quoted;
      else if (c === 0x5d && !quoted && text.charCodeAt(pos + 1) === 0x3a) break; // "]:"
    }
    if (pos >= text.length) throw this.#invalid("unterminated column type");
    this.#pos = pos;
    return text.slice(start, pos);
  }

  #value(): Value {
    const text = this.#text;
    const start = this.#pos;
    const first = text.charCodeAt(start);
    if (first === APOSTROPHE) return this.#quoted(start + 1);
    if (first === 0x42 && text.charCodeAt(start + 1) === APOSTROPHE) { // B'0101'
      const end = text.indexOf("'", start + 2);
      if (end < 0) throw this.#invalid("unterminated bit string");
      this.#pos = end + 1;
      return text.slice(start + 2, end);
    }
    let end = text.indexOf(" ", start);
    if (end < 0) end = text.length;
    this.#pos = end;
    const token = text.slice(start, end);
    switch (token) {
      case "null":
        return null;
      case "unchanged-toast-datum":
        return UNCHANGED_TOAST;
      case "true":
        return "t";
      case "false":
        return "f";
      case "":
        throw this.#invalid("missing value");
      default:
        return token;
    }
  }

  /** A '…' literal whose content starts at `start`; only ' is doubled. */
  #quoted(start: number): string {
    const text = this.#text;
    let pos = start;
    let doubled = false;
    for (;;) {
      const end = text.indexOf("'", pos);
      if (end < 0) throw this.#invalid("unterminated quoted value");
      if (text.charCodeAt(end + 1) === APOSTROPHE) {
        doubled = true;
        pos = end + 2;
        continue;
      }
      this.#pos = end + 1;
      const inner = text.slice(start, end);
      return doubled ? inner.replaceAll("''", "'") : inner;
    }
  }
}

function emptyColumns(): MessageColumns {
  return { names: [], typeNames: [], typeOids: null, values: [] };
}
