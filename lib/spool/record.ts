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
 * ```
 * `change_text` is `encodeChange()` of lib/decode/change.ts (UTF-8): JSON for BEGIN, COMMIT and
 * TRUNCATE, NUL-separated fields for a row change. A record whose length runs past the
 * end of the file, or whose CRC does not match, is a torn tail.
 */
import { crc32 } from "node:zlib";
import { type Change, decodeChange, encodeChange, encodeRawRowInto } from "../decode/change.ts";
import type { Lsn } from "../lsn.ts";

export const RecordKind = { Begin: 1, Change: 2, Commit: 3, Keepalive: 4 } as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** Bytes before the body: length and CRC. */
export const RECORD_HEADER = 8;
/** Bytes of a body before its payload: kind and LSN. */
export const BODY_HEADER = 9;
/** Offset of BEGIN's end_lsn inside the record (header + kind + lsn). */
export const BEGIN_END_LSN_OFFSET = RECORD_HEADER + BODY_HEADER;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** One spooled record. */
export type SpoolRecord =
  | { kind: typeof RecordKind.Begin; lsn: Lsn; endLsn: Lsn; commitTime: bigint; change: Change }
  | { kind: typeof RecordKind.Change | typeof RecordKind.Commit; lsn: Lsn; change: Change }
  | { kind: typeof RecordKind.Keepalive; lsn: Lsn };

/** Encodes a record with its header. */
export function encodeRecord(kind: RecordKind, lsn: Lsn, change?: Change): Uint8Array {
  const json = change === undefined ? new Uint8Array(0) : utf8.encode(encodeChange(change));
  const extra = kind === RecordKind.Begin ? 16 : 0;
  const out = new Uint8Array(RECORD_HEADER + BODY_HEADER + extra + json.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length - RECORD_HEADER, true);
  out[RECORD_HEADER] = kind;
  view.setBigUint64(RECORD_HEADER + 1, lsn, true);
  out.set(json, RECORD_HEADER + BODY_HEADER + extra);
  view.setUint32(4, crc32(out.subarray(RECORD_HEADER)), true);
  return out;
}

/**
 * Encodes a CHANGE or COMMIT record straight into `out` at `at` (no copy of
 * its own); returns its length, or 0 when it might not fit there.
 */
export function encodeRecordInto(
  out: Uint8Array,
  at: number,
  kind: typeof RecordKind.Change | typeof RecordKind.Commit,
  lsn: Lsn,
  change: Change,
): number {
  const payloadAt = at + RECORD_HEADER + BODY_HEADER;
  let written = encodeRawRowInto(out, payloadAt, change);
  if (written === 0) return 0;
  if (written < 0) {
    const text = encodeChange(change);
    if (payloadAt + text.length * 3 > out.length) return 0; // 3 bytes of UTF-8 per UTF-16 unit at most
    written = utf8.encodeInto(text, out.subarray(payloadAt)).written;
  }
  const length = RECORD_HEADER + BODY_HEADER + written;
  const view = new DataView(out.buffer, out.byteOffset + at, length);
  view.setUint32(0, length - RECORD_HEADER, true);
  out[at + RECORD_HEADER] = kind;
  view.setBigUint64(RECORD_HEADER + 1, lsn, true);
  view.setUint32(4, crc32(out.subarray(at + RECORD_HEADER, at + length)), true);
  return length;
}

/** Fills in a BEGIN record's end_lsn and commit_time (in place) and fixes its CRC. */
export function patchBegin(record: Uint8Array, endLsn: Lsn, commitTime: bigint): void {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  view.setBigUint64(BEGIN_END_LSN_OFFSET, endLsn, true);
  view.setBigInt64(BEGIN_END_LSN_OFFSET + 8, commitTime, true);
  view.setUint32(4, crc32(record.subarray(RECORD_HEADER)), true);
}

/**
 * The length of the complete, intact record at `offset` of `bytes`, or 0 when
 * the bytes there are not (yet) a whole record with a matching CRC.
 */
export function recordLength(bytes: Uint8Array, offset: number): number {
  if (bytes.length - offset < RECORD_HEADER + BODY_HEADER) return 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset);
  const bodyLength = view.getUint32(0, true);
  if (bodyLength < BODY_HEADER || offset + RECORD_HEADER + bodyLength > bytes.length) return 0;
  const body = bytes.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + bodyLength);
  if (crc32(body) !== view.getUint32(4, true)) return 0;
  return RECORD_HEADER + bodyLength;
}

/** What recovery needs of a record, without decoding its change. */
export interface RecordHeader {
  kind: RecordKind;
  lsn: Lsn;
  /** A BEGIN's end_lsn (0 while its transaction is not complete); 0 for other kinds. */
  endLsn: Lsn;
}

/** Reads kind, LSN and (for a BEGIN) end_lsn of the intact record at `offset`. */
export function decodeRecordHeader(bytes: Uint8Array, offset: number): RecordHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset);
  const kind = view.getUint8(RECORD_HEADER) as RecordKind;
  return {
    kind,
    lsn: view.getBigUint64(RECORD_HEADER + 1, true),
    endLsn: kind === RecordKind.Begin ? view.getBigUint64(BEGIN_END_LSN_OFFSET, true) : 0n,
  };
}

/** Decodes the intact record of `length` bytes at `offset` (see `recordLength`). */
export function decodeRecord(bytes: Uint8Array, offset: number, length: number): SpoolRecord {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, length);
  const kind = view.getUint8(RECORD_HEADER) as RecordKind;
  const lsn = view.getBigUint64(RECORD_HEADER + 1, true);
  const payloadAt = offset + RECORD_HEADER + BODY_HEADER;
  switch (kind) {
    case RecordKind.Keepalive:
      return { kind, lsn };
    case RecordKind.Begin:
      return {
        kind,
        lsn,
        endLsn: view.getBigUint64(RECORD_HEADER + BODY_HEADER, true),
        commitTime: view.getBigInt64(RECORD_HEADER + BODY_HEADER + 8, true),
        change: decodeChange(utf8Decoder.decode(bytes.subarray(payloadAt + 16, offset + length))),
      };
    case RecordKind.Change:
    case RecordKind.Commit:
      return {
        kind,
        lsn,
        change: decodeChange(utf8Decoder.decode(bytes.subarray(payloadAt, offset + length))),
      };
    default:
      throw new RangeError(`Unknown spool record kind ${kind} at offset ${offset}`);
  }
}
