/**
 * Spool records: the byte grammar of `<dir>/cdc/*.spool` segment files. Pure.
 *
 * ```
 * segment = record*
 * record  = body_len:u32le crc32(body):u32le body
 * body    = kind:u8 lsn:u64le payload
 * kind    1 BEGIN      payload = end_lsn:u64le commit_time:i64le change_text
 *                      end_lsn and commit_time are 0 until the transaction's COMMIT has been
 *                      spooled, then patched in place: a BEGIN with end_lsn 0 starts a
 *                      transaction that is not complete (yet).
 *         2 CHANGE     payload = change_text   (Insert, Update, Delete, Truncate)
 *         3 COMMIT     payload = change_text
 *         4 KEEPALIVE  payload = (none)        lsn = a WAL position with nothing pending before it
 *         5 SHAPE      payload = shape_text    a table and column array that later row changes of the
 *                                              segment name by number (lib/spool/shaped_row.ts)
 * ```
 * `change_text` is UTF-8: for BEGIN, COMMIT and TRUNCATE `encodeChange()`'s JSON (lib/decode/
 * change.ts); for a row change a shaped row (lib/spool/shaped_row.ts), or `encodeChange()`'s
 * self-contained row format (older spools, and rows larger than the writer's buffer). A record whose length runs past the
 * end of the file, or whose CRC does not match, is a torn tail.
 */
import { type Change, decodeChange, encodeChange } from "../decode/change.ts";
import { decodeShapedRow, encodeShapedRowInto, isShapedRow, type Shapes } from "./shaped_row.ts";
import type { Lsn } from "../lsn.ts";
import { decodeUtf8 } from "../decode/utf8.ts";
import { crc32 } from "./crc32.ts";

export const RecordKind = { Begin: 1, Change: 2, Commit: 3, Keepalive: 4, Shape: 5 } as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** Bytes before the body: length and CRC. */
export const RECORD_HEADER = 8;
/** Bytes of a body before its payload: kind and LSN. */
export const BODY_HEADER = 9;
/** Offset of BEGIN's end_lsn inside the record (header + kind + lsn). */
export const BEGIN_END_LSN_OFFSET = RECORD_HEADER + BODY_HEADER;

const utf8 = new TextEncoder();

/** One spooled record, as the spool reader hands them out. */
export type SpoolRecord =
  | { kind: typeof RecordKind.Begin; lsn: Lsn; endLsn: Lsn; commitTime: bigint; change: Change }
  | { kind: typeof RecordKind.Change | typeof RecordKind.Commit; lsn: Lsn; change: Change }
  | { kind: typeof RecordKind.Keepalive; lsn: Lsn };

/** One record of a segment file: a SpoolRecord, or a SHAPE (read into the file's `Shapes`). */
export type FileRecord = SpoolRecord | { kind: typeof RecordKind.Shape; lsn: Lsn };

/** Encodes a record with its header (`text`: the change text, or a SHAPE's). */
export function encodeRecord(kind: RecordKind, lsn: Lsn, change?: Change | string): Uint8Array {
  const text = change === undefined
    ? ""
    : typeof change === "string"
    ? change
    : encodeChange(change);
  const payload = utf8.encode(text);
  const extra = kind === RecordKind.Begin ? 16 : 0;
  const out = new Uint8Array(RECORD_HEADER + BODY_HEADER + extra + payload.length);
  out.set(payload, RECORD_HEADER + BODY_HEADER + extra);
  sealRecord(out, 0, kind, lsn, extra + payload.length, viewOf(out));
  return out;
}

/**
 * Encodes a record of `text` straight into `out` at `at` (no copy of its own);
 * returns its length, or 0 when it might not fit. A BEGIN gets end_lsn and
 * commit_time 0, for `patchBegin`.
 */
export function encodeTextRecordInto(
  out: Uint8Array,
  at: number,
  kind: Exclude<RecordKind, typeof RecordKind.Keepalive>,
  lsn: Lsn,
  text: string,
  view = viewOf(out),
): number {
  const extra = kind === RecordKind.Begin ? 16 : 0;
  const payloadAt = at + RECORD_HEADER + BODY_HEADER + extra;
  if (payloadAt + text.length * 3 > out.length) return 0; // 3 bytes of UTF-8 per UTF-16 unit at most
  if (extra > 0) out.fill(0, payloadAt - extra, payloadAt);
  const written = utf8.encodeInto(text, out.subarray(payloadAt)).written;
  return sealRecord(out, at, kind, lsn, extra + written, view);
}

/**
 * Encodes the CHANGE record of a row change as a shaped row (see
 * shaped_row.ts) straight into `out` at `at`; returns its length, or 0 when it
 * might not fit.
 */
export function encodeShapedRecordInto(
  out: Uint8Array,
  at: number,
  change: Change & { tag: "Insert" | "Update" | "Delete" },
  newShape: number,
  oldShape: number,
  view = viewOf(out),
): number {
  const written = encodeShapedRowInto(
    out,
    at + RECORD_HEADER + BODY_HEADER,
    change,
    newShape,
    oldShape,
  );
  return written === 0 ? 0 : sealRecord(out, at, RecordKind.Change, change.lsn, written, view);
}

/**
 * Writes length, kind, LSN and CRC around a payload already in place; returns
 * the record's length. `view` covers the same bytes as `out`.
 */
function sealRecord(
  out: Uint8Array,
  at: number,
  kind: RecordKind,
  lsn: Lsn,
  payloadLength: number,
  view: DataView,
): number {
  const length = RECORD_HEADER + BODY_HEADER + payloadLength;
  view.setUint32(at, length - RECORD_HEADER, true);
  out[at + RECORD_HEADER] = kind;
  view.setBigUint64(at + RECORD_HEADER + 1, lsn, true);
  view.setUint32(at + 4, crc32(out, at + RECORD_HEADER, at + length), true);
  return length;
}

/** Fills in a BEGIN record's end_lsn and commit_time (in place) and fixes its CRC. */
export function patchBegin(record: Uint8Array, endLsn: Lsn, commitTime: bigint): void {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  view.setBigUint64(BEGIN_END_LSN_OFFSET, endLsn, true);
  view.setBigInt64(BEGIN_END_LSN_OFFSET + 8, commitTime, true);
  view.setUint32(4, crc32(record, RECORD_HEADER), true);
}

/**
 * The length of the complete, intact record at `offset` of `bytes` (up to
 * `limit`), or 0 when the bytes there are not (yet) a whole record with a
 * matching CRC.
 */
export function recordLength(bytes: Uint8Array, offset: number, limit = bytes.length): number {
  if (limit - offset < RECORD_HEADER + BODY_HEADER) return 0;
  const bodyLength = u32le(bytes, offset);
  if (bodyLength < BODY_HEADER || offset + RECORD_HEADER + bodyLength > limit) return 0;
  const crc = crc32(bytes, offset + RECORD_HEADER, offset + RECORD_HEADER + bodyLength);
  if (crc !== u32le(bytes, offset + 4)) return 0;
  return RECORD_HEADER + bodyLength;
}

function u32le(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>>
    0;
}

/** What recovery needs of a record, without decoding its change. */
export interface RecordHeader {
  kind: RecordKind;
  lsn: Lsn;
  /** A BEGIN's end_lsn (0 while its transaction is not complete); 0 for other kinds. */
  endLsn: Lsn;
}

/**
 * Reads kind, LSN and (for a BEGIN) end_lsn of the intact record at `offset`.
 * `view` covers the same bytes as `bytes` (pass one made once, for speed).
 */
export function decodeRecordHeader(
  bytes: Uint8Array,
  offset: number,
  view = viewOf(bytes),
): RecordHeader {
  const kind = bytes[offset + RECORD_HEADER] as RecordKind;
  return {
    kind,
    lsn: view.getBigUint64(offset + RECORD_HEADER + 1, true),
    endLsn: kind === RecordKind.Begin ? view.getBigUint64(offset + BEGIN_END_LSN_OFFSET, true) : 0n,
  };
}

/** A DataView over the bytes of `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes the intact record of `length` bytes at `offset` (see
 * `recordLength`). The changes it returns keep views of `bytes`: do not
 * overwrite them while the changes are in use. `view` covers the same bytes.
 */
export function decodeRecord(
  bytes: Uint8Array,
  offset: number,
  length: number,
  shapes: Shapes,
  view = viewOf(bytes),
): FileRecord {
  const kind = bytes[offset + RECORD_HEADER] as RecordKind;
  const lsn = view.getBigUint64(offset + RECORD_HEADER + 1, true);
  const payloadAt = offset + RECORD_HEADER + BODY_HEADER;
  switch (kind) {
    case RecordKind.Keepalive:
      return { kind, lsn };
    case RecordKind.Begin:
      return new BoundaryRecord(
        kind,
        lsn,
        view.getBigUint64(payloadAt, true),
        view.getBigInt64(payloadAt + 8, true),
        bytes.subarray(payloadAt + 16, offset + length),
      ) as SpoolRecord;
    case RecordKind.Commit:
      return new BoundaryRecord(kind, lsn, 0n, 0n, bytes.subarray(payloadAt, offset + length));
    case RecordKind.Change: {
      const payload = bytes.subarray(payloadAt, offset + length);
      return {
        kind,
        lsn,
        change: isShapedRow(payload)
          ? decodeShapedRow(payload, lsn, shapes)
          : decodeChange(decodeUtf8(payload)),
      };
    }
    case RecordKind.Shape:
      // Read again when peeked again: the same definition.
      shapes.add(decodeUtf8(bytes.subarray(payloadAt, offset + length)));
      return { kind, lsn };
    default:
      throw new RangeError(`Unknown spool record kind ${kind} at offset ${offset}`);
  }
}

/**
 * A BEGIN or COMMIT record. Apply needs only its kind and LSNs (a BEGIN's
 * end_lsn and commit_time are in the record's header): its change text, one
 * JSON object per record, is parsed only if read.
 */
class BoundaryRecord {
  readonly kind: typeof RecordKind.Begin | typeof RecordKind.Commit;
  readonly lsn: Lsn;
  readonly endLsn: Lsn;
  readonly commitTime: bigint;
  /** The change text's UTF-8 (a view of the reader's buffer, which it does not reuse). */
  #payload: Uint8Array | undefined;
  #change: Change | undefined;

  constructor(
    kind: typeof RecordKind.Begin | typeof RecordKind.Commit,
    lsn: Lsn,
    endLsn: Lsn,
    commitTime: bigint,
    payload: Uint8Array,
  ) {
    this.kind = kind;
    this.lsn = lsn;
    this.endLsn = endLsn;
    this.commitTime = commitTime;
    this.#payload = payload;
  }

  get change(): Change {
    if (this.#change === undefined) {
      this.#change = decodeChange(decodeUtf8(this.#payload!));
      this.#payload = undefined;
    }
    return this.#change;
  }
}
