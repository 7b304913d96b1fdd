/**
 * The streaming-replication sub-protocol carried inside CopyData messages once
 * `START_REPLICATION` has switched the connection to CopyBoth. Pure bytes in,
 * values out: no sockets, timers or logs. All integers are big-endian.
 *
 * ```
 * server → client
 *   XLogData          'w' walStart:u64 walEnd:u64 sendTime:i64 data:bytes…
 *   PrimaryKeepalive  'k' walEnd:u64 sendTime:i64 replyRequested:u8
 * client → server
 *   StandbyStatusUpdate 'r' write:u64 flush:u64 apply:u64 clock:i64 replyRequested:u8
 * ```
 *
 * Times are microseconds since 2000-01-01 00:00:00 UTC (the PostgreSQL epoch).
 * See "Streaming Replication Protocol" in the PostgreSQL documentation.
 */
import type { Lsn } from "../lsn.ts";

/** A chunk of WAL (for logical replication: one output-plugin message). */
export interface XLogData {
  tag: "XLogData";
  /**
   * Where the data starts in the WAL. In logical replication: the record's LSN,
   * the end of the commit record for a commit, and 0/0 for a BEGIN.
   */
  walStart: Lsn;
  /** The server's current end of WAL. */
  walEnd: Lsn;
  /** Server clock when sent, microseconds since 2000-01-01 UTC. */
  sendTime: bigint;
  /**
   * The payload: a view into the receive buffer, not a copy, valid until the
   * stream reads from the socket again (the buffer is reused). Copy it to keep it.
   */
  data: Uint8Array;
}

/** The server is alive; `replyRequested` asks for a StandbyStatusUpdate right away. */
export interface PrimaryKeepalive {
  tag: "PrimaryKeepalive";
  /** The server's current end of WAL. */
  walEnd: Lsn;
  /** Server clock when sent, microseconds since 2000-01-01 UTC. */
  sendTime: bigint;
  replyRequested: boolean;
}

/** A message the server sends during streaming replication. */
export type ReplicationMessage = XLogData | PrimaryKeepalive;

/** The progress report a client sends; the server keeps WAL from `flush` on. */
export interface StandbyStatusUpdate {
  /** Last WAL byte + 1 received and written (to the spool). */
  write: Lsn;
  /** Last WAL byte + 1 made durable; the slot's confirmed_flush_lsn moves here. */
  flush: Lsn;
  /** Last WAL byte + 1 applied on the target. */
  apply: Lsn;
  /** Client clock, microseconds since 2000-01-01 UTC; now when omitted. */
  clock?: bigint;
  /** Ask the server to answer with a keepalive immediately. */
  replyRequested?: boolean;
}

/** Milliseconds from the Unix epoch to 2000-01-01 00:00:00 UTC. */
export const PG_EPOCH_MS = 946_684_800_000;

/** Bytes before the data of an XLogData message. */
export const XLOG_DATA_HEADER_SIZE = 25;

/** Size of an encoded StandbyStatusUpdate. */
export const STANDBY_STATUS_UPDATE_SIZE = 34;

export const TAG_XLOG_DATA = 0x77; // 'w'
const TAG_PRIMARY_KEEPALIVE = 0x6b; // 'k'
const TAG_STANDBY_STATUS_UPDATE = 0x72; // 'r'
const PRIMARY_KEEPALIVE_SIZE = 18;

/** Parses the payload of one CopyData message; throws a `SyntaxError` on anything else. */
export function parseReplicationMessage(payload: Uint8Array): ReplicationMessage {
  const tag = payload[0];
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (tag === TAG_XLOG_DATA) {
    if (payload.length < XLOG_DATA_HEADER_SIZE) {
      throw new SyntaxError(
        `Invalid XLogData message: ${payload.length} bytes, expected at least 25`,
      );
    }
    return {
      tag: "XLogData",
      walStart: view.getBigUint64(1),
      walEnd: view.getBigUint64(9),
      sendTime: view.getBigInt64(17),
      data: payload.subarray(XLOG_DATA_HEADER_SIZE),
    };
  }
  if (tag === TAG_PRIMARY_KEEPALIVE) {
    if (payload.length < PRIMARY_KEEPALIVE_SIZE) {
      throw new SyntaxError(
        `Invalid PrimaryKeepalive message: ${payload.length} bytes, expected 18`,
      );
    }
    return {
      tag: "PrimaryKeepalive",
      walEnd: view.getBigUint64(1),
      sendTime: view.getBigInt64(9),
      replyRequested: payload[17] !== 0,
    };
  }
  throw new SyntaxError(
    tag === undefined
      ? "Invalid replication message: empty CopyData"
      : `Invalid replication message: unknown type "${String.fromCharCode(tag)}" (0x${
        tag.toString(16).padStart(2, "0")
      })`,
  );
}

/** Encodes a StandbyStatusUpdate payload (34 bytes), to be sent as CopyData. */
export function encodeStandbyStatusUpdate(status: StandbyStatusUpdate): Uint8Array {
  const bytes = new Uint8Array(STANDBY_STATUS_UPDATE_SIZE);
  writeStandbyStatusUpdate(bytes, 0, status);
  return bytes;
}

/** Writes a StandbyStatusUpdate payload into `target` at `offset` (34 bytes). */
export function writeStandbyStatusUpdate(
  target: Uint8Array,
  offset: number,
  status: StandbyStatusUpdate,
): void {
  const view = new DataView(target.buffer, target.byteOffset + offset, STANDBY_STATUS_UPDATE_SIZE);
  view.setUint8(0, TAG_STANDBY_STATUS_UPDATE);
  view.setBigUint64(1, status.write);
  view.setBigUint64(9, status.flush);
  view.setBigUint64(17, status.apply);
  view.setBigInt64(25, status.clock ?? pgTimeFromDate(new Date()));
  view.setUint8(33, status.replyRequested === true ? 1 : 0);
}

/** Microseconds since 2000-01-01 UTC for a `Date` (millisecond precision). */
export function pgTimeFromDate(date: Date): bigint {
  return BigInt(date.getTime() - PG_EPOCH_MS) * 1000n;
}

/** The `Date` of a PostgreSQL timestamp (microseconds since 2000-01-01 UTC), truncated to ms. */
export function dateFromPgTime(micros: bigint): Date {
  return new Date(Number(micros / 1000n) + PG_EPOCH_MS);
}
