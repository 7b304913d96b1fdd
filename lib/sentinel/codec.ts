/**
 * The sentinel TCP protocol, v1: the only code that knows its bytes. Pure: no
 * sockets, timers or logs; client and coordinator both frame with it.
 * Byte-compatible with pgcopydb 0.18 (`ld_ipc.h`).
 *
 * ```
 * frame          = version:u8 (=1) type:u8 payload_len:u16be payload   ; payload_len <= 1024
 * u64, u32       = little-endian (pgcopydb copies C structs)
 * text256        = 256 bytes: UTF-8, NUL-terminated, NUL-padded
 *
 * type  name             direction  payload (bytes)
 *    0  PING             c → s      (0)
 *    1  PONG             s → c      (0)
 *    3  SET_ENDPOS       c → s      lsn:u64 reason:text256                               (264)
 *    4  QUERY_SENTINEL   c → s      (0)
 *    5  SENTINEL_REPLY   s → c      apply:u8 pad:7 startpos:u64 endpos:u64
 *                                   write_lsn:u64 flush_lsn:u64 replay_lsn:u64          (48)
 *    6  QUERY_STATUS     c → s      (0)
 *    7  STATUS_REPLY     s → c      startpos:u64 endpos:u64 write_lsn:u64 flush_lsn:u64
 *                                   replay_lsn:u64 state:u32 (0 init, 1 streaming,
 *                                   2 done, 3 error) pad:4                               (48)
 *    8  SET_STARTPOS     c → s      lsn:u64 reason:text256                               (264)
 *    9  SET_APPLY        c → s      apply:u8 (1 apply, 0 prefetch)                       (1)
 *   10  CLEANUP          c → s      dry_run:u8                                           (1)
 *   11  CLEANUP_REPLY    s → c      files_deleted:u64 bytes_freed:u64 safe_lsn:u64
 *                                   dry_run:u8 pad:7                                     (32)
 *   18  ACK_CONFIRMED    s → c      (0)
 *   99  ERROR            both       UTF-8 message, no NUL                            (0..1024)
 * pgferry additions (20–39); a server never sends them unasked:
 *   20  AUTH_REQUEST     c → s      (0)
 *   21  AUTH_CHALLENGE   s → c      server_nonce:32                                      (32)
 *   22  AUTH_RESPONSE    c → s      client_nonce:32 proof:32 (HMAC-SHA256, see auth.ts)  (64)
 *   23  AUTH_OK          s → c      server_proof:32                                      (32)
 *   24  WATCH            c → s      (0)
 *   25  POSITION_UPDATE  s → c      as SENTINEL_REPLY                                    (48)
 * ```
 *
 * Decoding is strict about what carries meaning (version, type, sizes, 0/1
 * flags, state) and lenient about padding and the bytes after a text's NUL:
 * a C peer does not always zero them.
 */
import type { Sentinel } from "../catalog/sentinel_store.ts";
import type { Lsn } from "../lsn.ts";

/** The protocol version this codec speaks, the first byte of every frame. */
export const PROTOCOL_VERSION = 1;

/** Bytes before the payload: version, type, payload length. */
export const HEADER_SIZE = 4;

/** The largest payload a frame may carry. */
export const MAX_PAYLOAD = 1024;

/** Size of the NUL-padded `reason` field of SET_STARTPOS / SET_ENDPOS. */
export const REASON_SIZE = 256;

/** Size of an authentication nonce and of an HMAC-SHA256 proof. */
export const AUTH_BLOB_SIZE = 32;

/** Message type codes on the wire, by message name. */
export const MessageCode = {
  Ping: 0,
  Pong: 1,
  SetEndpos: 3,
  QuerySentinel: 4,
  SentinelReply: 5,
  QueryStatus: 6,
  StatusReply: 7,
  SetStartpos: 8,
  SetApply: 9,
  Cleanup: 10,
  CleanupReply: 11,
  AckConfirmed: 18,
  Error: 99,
  AuthRequest: 20,
  AuthChallenge: 21,
  AuthResponse: 22,
  AuthOk: 23,
  Watch: 24,
  PositionUpdate: 25,
} as const;

/** The name of a message type, the `type` tag of {@linkcode SentinelMessage}. */
export type MessageType = keyof typeof MessageCode;

/** The streaming state carried by STATUS_REPLY. */
export type StreamState = "init" | "streaming" | "done" | "error";

/** The progress report of STATUS_REPLY. */
export interface StreamStatus {
  startpos: Lsn;
  endpos: Lsn;
  writeLsn: Lsn;
  flushLsn: Lsn;
  replayLsn: Lsn;
  state: StreamState;
}

/** One protocol message, decoded. LSNs and counters are `bigint` (u64 on the wire). */
export type SentinelMessage =
  | { type: "Ping" }
  | { type: "Pong" }
  | { type: "SetEndpos"; lsn: Lsn; reason: string }
  | { type: "QuerySentinel" }
  | { type: "SentinelReply"; sentinel: Sentinel }
  | { type: "QueryStatus" }
  | { type: "StatusReply"; status: StreamStatus }
  | { type: "SetStartpos"; lsn: Lsn; reason: string }
  | { type: "SetApply"; apply: boolean }
  | { type: "Cleanup"; dryRun: boolean }
  | {
    type: "CleanupReply";
    filesDeleted: bigint;
    bytesFreed: bigint;
    safeLsn: Lsn;
    dryRun: boolean;
  }
  | { type: "AckConfirmed" }
  | { type: "Error"; message: string }
  | { type: "AuthRequest" }
  | { type: "AuthChallenge"; serverNonce: Uint8Array }
  | { type: "AuthResponse"; clientNonce: Uint8Array; proof: Uint8Array }
  | { type: "AuthOk"; serverProof: Uint8Array }
  | { type: "Watch" }
  | { type: "PositionUpdate"; sentinel: Sentinel };

/** Why bytes were refused; a coordinator answers with ERROR and closes. */
export type SentinelProtocolErrorCode =
  | "bad-version"
  | "unknown-type"
  | "oversized"
  | "bad-length"
  | "bad-value"
  | "truncated";

/** Bytes that do not follow the sentinel protocol. The stream cannot be resynchronised. */
export class SentinelProtocolError extends Error {
  override name = "SentinelProtocolError";
  readonly code: SentinelProtocolErrorCode;

  constructor(code: SentinelProtocolErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const VARIABLE = -1;
const UNKNOWN = -2;

/** Payload size by type code: exact, VARIABLE (0..MAX_PAYLOAD) or UNKNOWN. */
const PAYLOAD_SIZE = new Int16Array(256).fill(UNKNOWN);
/** Message name by type code. */
const TYPE_NAME: (MessageType | undefined)[] = new Array(256).fill(undefined);

const SIZES: Record<MessageType, number> = {
  Ping: 0,
  Pong: 0,
  SetEndpos: 8 + REASON_SIZE,
  QuerySentinel: 0,
  SentinelReply: 48,
  QueryStatus: 0,
  StatusReply: 48,
  SetStartpos: 8 + REASON_SIZE,
  SetApply: 1,
  Cleanup: 1,
  CleanupReply: 32,
  AckConfirmed: 0,
  Error: VARIABLE,
  AuthRequest: 0,
  AuthChallenge: AUTH_BLOB_SIZE,
  AuthResponse: 2 * AUTH_BLOB_SIZE,
  AuthOk: AUTH_BLOB_SIZE,
  Watch: 0,
  PositionUpdate: 48,
};
for (const [name, code] of Object.entries(MessageCode) as [MessageType, number][]) {
  PAYLOAD_SIZE[code] = SIZES[name];
  TYPE_NAME[code] = name;
}

const STATES: readonly StreamState[] = ["init", "streaming", "done", "error"];
const MAX_U64 = 0xFFFF_FFFF_FFFF_FFFFn;

const utf8 = new TextEncoder();
// Not fatal: a reason or error text from a foreign peer is shown, not interpreted.
const utf8Lenient = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** Encodes one message as a complete frame (header and payload). */
export function encodeMessage(msg: SentinelMessage): Uint8Array {
  const code = MessageCode[msg.type];
  let payload: Uint8Array | undefined;
  if (msg.type === "Error") payload = cString(msg.message, MAX_PAYLOAD);
  const size = payload?.length ?? SIZES[msg.type];
  const frame = new Uint8Array(HEADER_SIZE + size);
  const view = new DataView(frame.buffer);
  frame[0] = PROTOCOL_VERSION;
  frame[1] = code;
  view.setUint16(2, size, false);
  const p = HEADER_SIZE;
  switch (msg.type) {
    case "SetEndpos":
    case "SetStartpos":
      setU64(view, p, msg.lsn, "lsn");
      writeReason(frame.subarray(p + 8, p + 8 + REASON_SIZE), msg.reason);
      break;
    case "SentinelReply":
    case "PositionUpdate": {
      const s = msg.sentinel;
      frame[p] = s.apply ? 1 : 0;
      setU64(view, p + 8, s.startpos, "startpos");
      setU64(view, p + 16, s.endpos, "endpos");
      setU64(view, p + 24, s.writeLsn, "write_lsn");
      setU64(view, p + 32, s.flushLsn, "flush_lsn");
      setU64(view, p + 40, s.replayLsn, "replay_lsn");
      break;
    }
    case "StatusReply": {
      const s = msg.status;
      setU64(view, p, s.startpos, "startpos");
      setU64(view, p + 8, s.endpos, "endpos");
      setU64(view, p + 16, s.writeLsn, "write_lsn");
      setU64(view, p + 24, s.flushLsn, "flush_lsn");
      setU64(view, p + 32, s.replayLsn, "replay_lsn");
      const state = STATES.indexOf(s.state);
      if (state < 0) throw new RangeError(`Invalid stream state "${s.state}"`);
      view.setUint32(p + 40, state, true);
      break;
    }
    case "SetApply":
      frame[p] = msg.apply ? 1 : 0;
      break;
    case "Cleanup":
      frame[p] = msg.dryRun ? 1 : 0;
      break;
    case "CleanupReply":
      setU64(view, p, msg.filesDeleted, "files_deleted");
      setU64(view, p + 8, msg.bytesFreed, "bytes_freed");
      setU64(view, p + 16, msg.safeLsn, "safe_lsn");
      frame[p + 24] = msg.dryRun ? 1 : 0;
      break;
    case "Error":
      frame.set(payload!, p);
      break;
    case "AuthChallenge":
      frame.set(blob(msg.serverNonce, "server nonce"), p);
      break;
    case "AuthResponse":
      frame.set(blob(msg.clientNonce, "client nonce"), p);
      frame.set(blob(msg.proof, "proof"), p + AUTH_BLOB_SIZE);
      break;
    case "AuthOk":
      frame.set(blob(msg.serverProof, "server proof"), p);
      break;
    case "Ping":
    case "Pong":
    case "QuerySentinel":
    case "QueryStatus":
    case "AckConfirmed":
    case "AuthRequest":
    case "Watch":
      break;
  }
  return frame;
}

/**
 * Decodes the payload of a message of type `code`. Throws a
 * {@linkcode SentinelProtocolError} for an unknown type, a payload of the wrong
 * size or a value out of its domain. The result does not share memory with
 * `payload`.
 */
export function decodeMessage(code: number, payload: Uint8Array): SentinelMessage {
  const name = checkPayloadLength(code, payload.length);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (name) {
    case "Ping":
    case "Pong":
    case "QuerySentinel":
    case "QueryStatus":
    case "AckConfirmed":
    case "AuthRequest":
    case "Watch":
      return { type: name };
    case "SetEndpos":
    case "SetStartpos":
      return {
        type: name,
        lsn: view.getBigUint64(0, true),
        reason: readCString(payload.subarray(8)),
      };
    case "SentinelReply":
    case "PositionUpdate":
      return {
        type: name,
        sentinel: {
          apply: readFlag(payload[0]!, name, "apply"),
          startpos: view.getBigUint64(8, true),
          endpos: view.getBigUint64(16, true),
          writeLsn: view.getBigUint64(24, true),
          flushLsn: view.getBigUint64(32, true),
          replayLsn: view.getBigUint64(40, true),
        },
      };
    case "StatusReply": {
      const raw = view.getUint32(40, true);
      const state = STATES[raw];
      if (state === undefined) {
        throw new SentinelProtocolError(
          "bad-value",
          `Invalid state "${raw}" in STATUS_REPLY: expected 0 to 3`,
        );
      }
      return {
        type: name,
        status: {
          startpos: view.getBigUint64(0, true),
          endpos: view.getBigUint64(8, true),
          writeLsn: view.getBigUint64(16, true),
          flushLsn: view.getBigUint64(24, true),
          replayLsn: view.getBigUint64(32, true),
          state,
        },
      };
    }
    case "SetApply":
      return { type: name, apply: readFlag(payload[0]!, name, "apply") };
    case "Cleanup":
      return { type: name, dryRun: readFlag(payload[0]!, name, "dry_run") };
    case "CleanupReply":
      return {
        type: name,
        filesDeleted: view.getBigUint64(0, true),
        bytesFreed: view.getBigUint64(8, true),
        safeLsn: view.getBigUint64(16, true),
        dryRun: readFlag(payload[24]!, name, "dry_run"),
      };
    case "Error":
      return { type: name, message: readCString(payload) };
    case "AuthChallenge":
      return { type: name, serverNonce: payload.slice(0, AUTH_BLOB_SIZE) };
    case "AuthResponse":
      return {
        type: name,
        clientNonce: payload.slice(0, AUTH_BLOB_SIZE),
        proof: payload.slice(AUTH_BLOB_SIZE, 2 * AUTH_BLOB_SIZE),
      };
    case "AuthOk":
      return { type: name, serverProof: payload.slice(0, AUTH_BLOB_SIZE) };
  }
}

/**
 * Splits a byte stream into messages. Feed it what the socket delivers, in any
 * chunking; a frame is refused as soon as its first bad byte arrives, so a
 * peer cannot make the reader wait for a payload it announced wrongly. After
 * an error the stream is out of sync: every later call throws the same error.
 * At most one partial frame (≤ 1028 bytes) is ever buffered.
 */
export class FrameReader {
  readonly #buf = new Uint8Array(HEADER_SIZE + MAX_PAYLOAD);
  #len = 0;
  #failed: SentinelProtocolError | undefined;

  /** Bytes of an incomplete frame held back for the next chunk. */
  get pending(): number {
    return this.#len;
  }

  /**
   * Adds bytes and returns the messages they complete, in order. Throws a
   * {@linkcode SentinelProtocolError}; the messages decoded before the bad
   * frame in the same chunk are then dropped, since the connection is to be closed.
   */
  push(chunk: Uint8Array): SentinelMessage[] {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      return this.#push(chunk);
    } catch (err) {
      if (err instanceof SentinelProtocolError) this.#failed = err;
      throw err;
    }
  }

  /** Declares the end of the stream: throws "truncated" if a frame is incomplete. */
  end(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#len > 0) {
      this.#failed = new SentinelProtocolError(
        "truncated",
        `Sentinel connection closed in the middle of a frame: ${this.#len} bytes of it received`,
      );
      throw this.#failed;
    }
  }

  #push(chunk: Uint8Array): SentinelMessage[] {
    const out: SentinelMessage[] = [];
    let off = 0;
    // Finish the frame left over from earlier chunks.
    while (this.#len > 0) {
      const total = frameLength(this.#buf, 0, this.#len);
      const want = total < 0 ? HEADER_SIZE : total;
      const take = Math.min(want - this.#len, chunk.length - off);
      this.#buf.set(chunk.subarray(off, off + take), this.#len);
      this.#len += take;
      off += take;
      if (this.#len < want) {
        frameLength(this.#buf, 0, this.#len); // refuse a bad header prefix now
        return out;
      }
      if (total >= 0) {
        out.push(decodeMessage(this.#buf[1]!, this.#buf.subarray(HEADER_SIZE, total)));
        this.#len = 0;
      }
    }
    // Then decode straight from the chunk, buffering only a partial tail.
    while (off < chunk.length) {
      const avail = chunk.length - off;
      const total = frameLength(chunk, off, avail);
      if (total < 0 || avail < total) {
        this.#buf.set(chunk.subarray(off), 0);
        this.#len = avail;
        break;
      }
      out.push(decodeMessage(chunk[off + 1]!, chunk.subarray(off + HEADER_SIZE, off + total)));
      off += total;
    }
    return out;
  }
}

/**
 * Checks the first `avail` bytes of a frame at `bytes[off]`. Returns the frame
 * length once the header is complete, -1 before.
 */
function frameLength(bytes: Uint8Array, off: number, avail: number): number {
  if (avail < 1) return -1;
  const version = bytes[off]!;
  if (version !== PROTOCOL_VERSION) {
    throw new SentinelProtocolError(
      "bad-version",
      `Unsupported sentinel protocol version "${version}": expected "${PROTOCOL_VERSION}"`,
    );
  }
  if (avail < 2) return -1;
  checkType(bytes[off + 1]!);
  if (avail < HEADER_SIZE) return -1;
  const len = (bytes[off + 2]! << 8) | bytes[off + 3]!;
  checkPayloadLength(bytes[off + 1]!, len);
  return HEADER_SIZE + len;
}

function checkType(code: number): MessageType {
  const name = TYPE_NAME[code];
  if (name === undefined) {
    throw new SentinelProtocolError("unknown-type", `Unknown sentinel message type "${code}"`);
  }
  return name;
}

function checkPayloadLength(code: number, len: number): MessageType {
  const name = checkType(code);
  if (len > MAX_PAYLOAD) {
    throw new SentinelProtocolError(
      "oversized",
      `Sentinel message payload of ${len} bytes is too large: at most ${MAX_PAYLOAD} allowed`,
    );
  }
  const size = PAYLOAD_SIZE[code]!;
  if (size !== VARIABLE && len !== size) {
    throw new SentinelProtocolError(
      "bad-length",
      `Wrong payload length for ${name}: got ${len} bytes, expected ${size}`,
    );
  }
  return name;
}

function readFlag(byte: number, type: MessageType, field: string): boolean {
  if (byte > 1) {
    throw new SentinelProtocolError(
      "bad-value",
      `Invalid ${field} "${byte}" in ${type}: expected 0 or 1`,
    );
  }
  return byte === 1;
}

/** Text up to the first NUL (or the whole field when there is none). */
function readCString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return utf8Lenient.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/**
 * UTF-8 of `text` as a C string would hold it: cut at the first NUL, then to at
 * most `max` bytes without splitting a character.
 */
function cString(text: string, max: number): Uint8Array {
  let bytes = utf8.encode(text);
  const nul = bytes.indexOf(0);
  if (nul >= 0) bytes = bytes.subarray(0, nul);
  if (bytes.length <= max) return bytes;
  let cut = max;
  while (cut > 0 && (bytes[cut]! & 0xC0) === 0x80) cut--;
  return bytes.subarray(0, cut);
}

/**
 * Writes `text` into a zero-filled 256-byte field as a C string: cut at the
 * first NUL, at most 255 bytes so that a NUL always ends it. `encodeInto` only
 * writes whole characters, so the cut never splits one.
 */
function writeReason(field: Uint8Array, text: string): void {
  const { written } = utf8.encodeInto(text, field.subarray(0, REASON_SIZE - 1));
  const nul = field.subarray(0, written).indexOf(0);
  if (nul >= 0) field.fill(0, nul, written);
}

function setU64(view: DataView, off: number, value: bigint, field: string): void {
  if (value < 0n || value > MAX_U64) {
    throw new RangeError(`Value of ${field} out of the u64 range: "${value}"`);
  }
  view.setBigUint64(off, value, true);
}

function blob(bytes: Uint8Array, field: string): Uint8Array {
  if (bytes.length !== AUTH_BLOB_SIZE) {
    throw new RangeError(
      `Invalid ${field} length: got ${bytes.length} bytes, expected ${AUTH_BLOB_SIZE}`,
    );
  }
  return bytes;
}
