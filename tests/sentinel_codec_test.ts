import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import {
  decodeMessage,
  encodeMessage,
  FrameReader,
  MessageCode,
  type SentinelMessage,
  SentinelProtocolError,
  type SentinelProtocolErrorCode,
  type StreamState,
} from "../lib/sentinel/codec.ts";
import { clientProof, equalBytes, newNonce, serverProof } from "../lib/sentinel/auth.ts";

// ---------------------------------------------------------------------------
// Fixture helpers: they only spell bytes, they never call the code under test.

/** Concatenates hex strings ("01 03 01 08") and byte arrays. */
function bytes(...parts: (string | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((part) => {
    if (typeof part !== "string") return part;
    const digits = part.replace(/\s+/g, "");
    if (digits.length % 2 !== 0) throw new Error(`Odd hex fixture "${part}"`);
    return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
  });
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function zeros(n: number): Uint8Array {
  return new Uint8Array(n);
}

function filled(n: number, byte: number): Uint8Array {
  return new Uint8Array(n).fill(byte);
}

/** 0x00, 0x01, … — a recognisable 32-byte nonce. */
function counting(from: number, n = 32): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xFF);
}

function protocolError(fn: () => unknown, code: SentinelProtocolErrorCode): SentinelProtocolError {
  const err = assertThrows(fn, SentinelProtocolError) as SentinelProtocolError;
  assertEquals(err.code, code, `expected code "${code}", got "${err.code}": ${err.message}`);
  return err;
}

function readAll(frame: Uint8Array): SentinelMessage[] {
  const reader = new FrameReader();
  const messages = reader.push(frame);
  reader.end();
  return messages;
}

// ---------------------------------------------------------------------------
// Golden frames: every message type, bytes written out by hand.

const SENTINEL = {
  apply: true,
  startpos: 0x1000028n, // 0/1000028
  endpos: 0x3000060n, // 0/3000060
  writeLsn: 0x1_00000002n, // 1/2
  flushLsn: 0xFFn, // 0/FF
  replayLsn: 0xFFFF_FFFF_FFFF_FFFFn, // FFFFFFFF/FFFFFFFF
};
const SENTINEL_PAYLOAD = bytes(
  "01 00 00 00 00 00 00 00", // apply, 7 bytes of padding
  "28 00 00 01 00 00 00 00", // startpos
  "60 00 00 03 00 00 00 00", // endpos
  "02 00 00 00 01 00 00 00", // write_lsn
  "ff 00 00 00 00 00 00 00", // flush_lsn
  "ff ff ff ff ff ff ff ff", // replay_lsn
);

const GOLDEN: { wire: string; message: SentinelMessage; frame: Uint8Array }[] = [
  { wire: "PING", message: { type: "Ping" }, frame: bytes("01 00 00 00") },
  { wire: "PONG", message: { type: "Pong" }, frame: bytes("01 01 00 00") },
  {
    wire: "SET_ENDPOS",
    message: { type: "SetEndpos", lsn: 0x3000060n, reason: "test" },
    frame: bytes("01 03 01 08", "60 00 00 03 00 00 00 00", "74 65 73 74", zeros(252)),
  },
  { wire: "QUERY_SENTINEL", message: { type: "QuerySentinel" }, frame: bytes("01 04 00 00") },
  {
    wire: "SENTINEL_REPLY",
    message: { type: "SentinelReply", sentinel: SENTINEL },
    frame: bytes("01 05 00 30", SENTINEL_PAYLOAD),
  },
  { wire: "QUERY_STATUS", message: { type: "QueryStatus" }, frame: bytes("01 06 00 00") },
  {
    wire: "STATUS_REPLY",
    message: {
      type: "StatusReply",
      status: {
        startpos: 0x1000028n,
        endpos: 0n,
        writeLsn: 0x2000000n,
        flushLsn: 0x1FFFFF8n,
        replayLsn: 0x16_B374D848n,
        state: "streaming",
      },
    },
    frame: bytes(
      "01 07 00 30",
      "28 00 00 01 00 00 00 00", // startpos 0/1000028
      "00 00 00 00 00 00 00 00", // endpos 0/0
      "00 00 00 02 00 00 00 00", // write_lsn 0/2000000
      "f8 ff ff 01 00 00 00 00", // flush_lsn 0/1FFFFF8
      "48 d8 74 b3 16 00 00 00", // replay_lsn 16/B374D848
      "01 00 00 00", // state: streaming
      "00 00 00 00",
    ),
  },
  {
    wire: "SET_STARTPOS",
    message: { type: "SetStartpos", lsn: 0x16_B374D848n, reason: "é" },
    frame: bytes("01 08 01 08", "48 d8 74 b3 16 00 00 00", "c3 a9", zeros(254)),
  },
  {
    wire: "SET_APPLY (apply)",
    message: { type: "SetApply", apply: true },
    frame: bytes("01 09 00 01 01"),
  },
  {
    wire: "SET_APPLY (prefetch)",
    message: { type: "SetApply", apply: false },
    frame: bytes("01 09 00 01 00"),
  },
  {
    wire: "CLEANUP",
    message: { type: "Cleanup", dryRun: true },
    frame: bytes("01 0a 00 01 01"),
  },
  {
    wire: "CLEANUP_REPLY",
    message: {
      type: "CleanupReply",
      filesDeleted: 3n,
      bytesFreed: 0x1_0000_0400n,
      safeLsn: 0x3000060n,
      dryRun: true,
    },
    frame: bytes(
      "01 0b 00 20",
      "03 00 00 00 00 00 00 00", // files_deleted
      "00 04 00 00 01 00 00 00", // bytes_freed
      "60 00 00 03 00 00 00 00", // safe_lsn
      "01 00 00 00 00 00 00 00", // dry_run, 7 bytes of padding
    ),
  },
  { wire: "ACK_CONFIRMED", message: { type: "AckConfirmed" }, frame: bytes("01 12 00 00") },
  {
    wire: "ERROR",
    message: { type: "Error", message: "bad" },
    frame: bytes("01 63 00 03", "62 61 64"),
  },
  {
    wire: "ERROR (empty)",
    message: { type: "Error", message: "" },
    frame: bytes("01 63 00 00"),
  },
  { wire: "AUTH_REQUEST", message: { type: "AuthRequest" }, frame: bytes("01 14 00 00") },
  {
    wire: "AUTH_CHALLENGE",
    message: { type: "AuthChallenge", serverNonce: counting(0x00) },
    frame: bytes(
      "01 15 00 20",
      "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",
      "10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f",
    ),
  },
  {
    wire: "AUTH_RESPONSE",
    message: { type: "AuthResponse", clientNonce: counting(0x20), proof: counting(0xE0) },
    frame: bytes(
      "01 16 00 40",
      "20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f",
      "30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f",
      "e0 e1 e2 e3 e4 e5 e6 e7 e8 e9 ea eb ec ed ee ef",
      "f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 fa fb fc fd fe ff",
    ),
  },
  {
    wire: "AUTH_OK",
    message: { type: "AuthOk", serverProof: counting(0x80) },
    frame: bytes(
      "01 17 00 20",
      "80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f",
      "90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f",
    ),
  },
  { wire: "WATCH", message: { type: "Watch" }, frame: bytes("01 18 00 00") },
  {
    wire: "POSITION_UPDATE",
    message: { type: "PositionUpdate", sentinel: SENTINEL },
    frame: bytes("01 19 00 30", SENTINEL_PAYLOAD),
  },
];

for (const { wire, message, frame } of GOLDEN) {
  Deno.test(`encodeMessage() writes ${wire} byte for byte as pgcopydb does`, () => {
    assertEquals(encodeMessage(message), frame);
  });

  Deno.test(`FrameReader and decodeMessage() read ${wire} from pgcopydb bytes`, () => {
    assertEquals(readAll(frame), [message]);
    assertEquals(decodeMessage(frame[1]!, frame.subarray(4)), message);
  });
}

Deno.test("the golden frames cover every message type", () => {
  const covered = new Set(GOLDEN.map((g) => g.message.type));
  assertEquals([...covered].sort(), Object.keys(MessageCode).sort());
});

Deno.test("STATUS_REPLY carries each stream state as a little-endian u32", () => {
  const states: StreamState[] = ["init", "streaming", "done", "error"];
  states.forEach((state, code) => {
    const message: SentinelMessage = {
      type: "StatusReply",
      status: { startpos: 0n, endpos: 0n, writeLsn: 0n, flushLsn: 0n, replayLsn: 0n, state },
    };
    const frame = bytes("01 07 00 30", zeros(40), bytes(`0${code} 00 00 00`), zeros(4));
    assertEquals(encodeMessage(message), frame);
    assertEquals(readAll(frame), [message]);
  });
});

// ---------------------------------------------------------------------------
// Text fields

Deno.test("encodeMessage() keeps a 255-byte reason whole and ends it with a NUL", () => {
  const reason = "r".repeat(255);
  const frame = encodeMessage({ type: "SetEndpos", lsn: 1n, reason });
  assertEquals(frame, bytes("01 03 01 08", "01 00 00 00 00 00 00 00", filled(255, 0x72), "00"));
});

Deno.test("encodeMessage() truncates a longer reason to 255 bytes, leaving the NUL", () => {
  const frame = encodeMessage({ type: "SetStartpos", lsn: 1n, reason: "r".repeat(300) });
  assertEquals(frame, bytes("01 08 01 08", "01 00 00 00 00 00 00 00", filled(255, 0x72), "00"));
  assertEquals(readAll(frame), [{ type: "SetStartpos", lsn: 1n, reason: "r".repeat(255) }]);
});

Deno.test("encodeMessage() truncates a reason at a UTF-8 character boundary", () => {
  // 128 × "é" (c3 a9) is 256 bytes: byte 255 would split the 128th character.
  const twoByte = encodeMessage({ type: "SetEndpos", lsn: 0n, reason: "é".repeat(128) });
  const pairs = bytes(...Array.from({ length: 127 }, () => "c3 a9"));
  assertEquals(twoByte, bytes("01 03 01 08", zeros(8), pairs, "00 00"));
  assertEquals(readAll(twoByte), [{ type: "SetEndpos", lsn: 0n, reason: "é".repeat(127) }]);

  // "a" then 64 × "😀" (f0 9f 98 80): 257 bytes, cut after 63 emoji = 253 bytes.
  const fourByte = encodeMessage({ type: "SetEndpos", lsn: 0n, reason: "a" + "😀".repeat(64) });
  const emoji = bytes(...Array.from({ length: 63 }, () => "f0 9f 98 80"));
  assertEquals(fourByte, bytes("01 03 01 08", zeros(8), "61", emoji, "00 00 00"));
});

Deno.test("encodeMessage() ends a reason at an embedded NUL, as a C string would", () => {
  const frame = encodeMessage({ type: "SetEndpos", lsn: 0n, reason: "ab\0cd" });
  assertEquals(frame, bytes("01 03 01 08", zeros(8), "61 62", zeros(254)));
});

Deno.test("decodeMessage() reads a reason that fills all 256 bytes without a NUL", () => {
  const frame = bytes("01 03 01 08", zeros(8), filled(256, 0x7A));
  assertEquals(readAll(frame), [{ type: "SetEndpos", lsn: 0n, reason: "z".repeat(256) }]);
});

Deno.test("decodeMessage() ignores bytes after the reason's NUL and struct padding", () => {
  const reason = bytes("6f 6b 00 ff ee dd", filled(250, 0xAA));
  assertEquals(readAll(bytes("01 03 01 08", zeros(8), reason)), [
    { type: "SetEndpos", lsn: 0n, reason: "ok" },
  ]);
  const dirty = bytes("01 05 00 30", "00 de ad be ef 00 11 22", zeros(40));
  assertEquals(readAll(dirty), [{
    type: "SentinelReply",
    sentinel: {
      apply: false,
      startpos: 0n,
      endpos: 0n,
      writeLsn: 0n,
      flushLsn: 0n,
      replayLsn: 0n,
    },
  }]);
  const status = bytes("01 07 00 30", zeros(40), "02 00 00 00", "ff ff ff ff");
  const decoded = readAll(status)[0];
  assert(decoded?.type === "StatusReply");
  assertEquals(decoded.status.state, "done");
});

Deno.test("decodeMessage() shows invalid UTF-8 in a reason as U+FFFD instead of failing", () => {
  const frame = bytes("01 03 01 08", zeros(8), "61 ff 62", zeros(253));
  assertEquals(readAll(frame), [{ type: "SetEndpos", lsn: 0n, reason: "a\uFFFDb" }]);
});

Deno.test("decodeMessage() reads an ERROR that a C peer sent with its terminating NUL", () => {
  assertEquals(readAll(bytes("01 63 00 04", "62 61 64 00")), [{ type: "Error", message: "bad" }]);
});

Deno.test("encodeMessage() truncates an ERROR message to 1024 bytes at a character boundary", () => {
  const ascii = encodeMessage({ type: "Error", message: "x".repeat(2000) });
  assertEquals(ascii, bytes("01 63 04 00", filled(1024, 0x78)));
  // 341 × "€" (e2 82 ac) is 1023 bytes; one more would split at 1024.
  const euro = encodeMessage({ type: "Error", message: "€".repeat(400) });
  assertEquals(euro.subarray(0, 4), bytes("01 63 03 ff"));
  assertEquals(euro.length, 4 + 1023);
  assertEquals(readAll(euro), [{ type: "Error", message: "€".repeat(341) }]);
});

Deno.test("decodeMessage() accepts an ERROR payload of exactly 1024 bytes", () => {
  assertEquals(readAll(bytes("01 63 04 00", filled(1024, 0x21))), [
    { type: "Error", message: "!".repeat(1024) },
  ]);
});

// ---------------------------------------------------------------------------
// Encoding rejects values the wire cannot carry

Deno.test("encodeMessage() refuses an LSN or counter outside the u64 range", () => {
  assertThrows(() => encodeMessage({ type: "SetEndpos", lsn: -1n, reason: "" }), RangeError, "lsn");
  assertThrows(
    () => encodeMessage({ type: "SetStartpos", lsn: 1n << 64n, reason: "" }),
    RangeError,
    "lsn",
  );
  assertThrows(
    () => encodeMessage({ type: "SentinelReply", sentinel: { ...SENTINEL, flushLsn: -5n } }),
    RangeError,
    "flush_lsn",
  );
  assertThrows(
    () =>
      encodeMessage({
        type: "CleanupReply",
        filesDeleted: 0n,
        bytesFreed: 1n << 70n,
        safeLsn: 0n,
        dryRun: false,
      }),
    RangeError,
    "bytes_freed",
  );
});

Deno.test("encodeMessage() refuses a nonce or proof that is not 32 bytes", () => {
  assertThrows(
    () => encodeMessage({ type: "AuthChallenge", serverNonce: zeros(31) }),
    RangeError,
    "server nonce",
  );
  assertThrows(
    () => encodeMessage({ type: "AuthResponse", clientNonce: zeros(32), proof: zeros(33) }),
    RangeError,
    "proof",
  );
  assertThrows(() => encodeMessage({ type: "AuthOk", serverProof: zeros(0) }), RangeError);
});

Deno.test("encodeMessage() refuses an unknown stream state", () => {
  const status = {
    startpos: 0n,
    endpos: 0n,
    writeLsn: 0n,
    flushLsn: 0n,
    replayLsn: 0n,
    state: "paused" as StreamState,
  };
  assertThrows(() => encodeMessage({ type: "StatusReply", status }), RangeError, '"paused"');
});

// ---------------------------------------------------------------------------
// FrameReader: framing

const ALL_FRAMES = bytes(...GOLDEN.map((g) => g.frame));
const ALL_MESSAGES = GOLDEN.map((g) => g.message);

Deno.test("FrameReader decodes several frames delivered in one chunk", () => {
  const reader = new FrameReader();
  assertEquals(reader.push(ALL_FRAMES), ALL_MESSAGES);
  assertEquals(reader.pending, 0);
  reader.end();
});

Deno.test("FrameReader decodes frames fed one byte at a time", () => {
  const reader = new FrameReader();
  const out: SentinelMessage[] = [];
  let frameStart = 0;
  let frameIndex = 0;
  for (let i = 0; i < ALL_FRAMES.length; i++) {
    const got = reader.push(ALL_FRAMES.subarray(i, i + 1));
    out.push(...got);
    const frameEnd = frameStart + GOLDEN[frameIndex]!.frame.length;
    if (i + 1 === frameEnd) {
      assertEquals(got.length, 1, `frame ${frameIndex} completes at byte ${i}`);
      assertEquals(reader.pending, 0);
      frameStart = frameEnd;
      frameIndex++;
    } else {
      assertEquals(got, []);
      assertEquals(reader.pending, i + 1 - frameStart);
    }
  }
  assertEquals(out, ALL_MESSAGES);
  reader.end();
});

Deno.test("FrameReader decodes two frames split at every possible offset", () => {
  const a = GOLDEN.find((g) => g.wire === "SET_ENDPOS")!;
  const b = GOLDEN.find((g) => g.wire === "SENTINEL_REPLY")!;
  const stream = bytes(a.frame, b.frame, "01 00 00 00");
  for (let cut = 0; cut <= stream.length; cut++) {
    const reader = new FrameReader();
    const out = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
    assertEquals(out, [a.message, b.message, { type: "Ping" }], `cut at ${cut}`);
    reader.end();
  }
});

Deno.test("FrameReader returns nothing for an empty chunk", () => {
  const reader = new FrameReader();
  assertEquals(reader.push(zeros(0)), []);
  reader.push(bytes("01 03"));
  assertEquals(reader.push(zeros(0)), []);
  assertEquals(reader.pending, 2);
});

Deno.test("FrameReader results do not alias a chunk the caller reuses", () => {
  const reader = new FrameReader();
  const chunk = bytes("01 15 00 20", counting(0));
  const [message] = reader.push(chunk);
  chunk.fill(0xEE);
  assertEquals(message, { type: "AuthChallenge", serverNonce: counting(0) });

  const partial = bytes("01 17 00 20", counting(0x40, 10));
  assertEquals(reader.push(partial), []);
  partial.fill(0xEE);
  assertEquals(reader.push(counting(0x4A, 22)), [{ type: "AuthOk", serverProof: counting(0x40) }]);
});

Deno.test("FrameReader.end() reports a frame cut short by the peer as truncated", () => {
  for (const cut of [1, 2, 3, 4, 100, 267]) {
    const reader = new FrameReader();
    assertEquals(reader.push(GOLDEN[2]!.frame.subarray(0, cut)), []);
    assertEquals(reader.pending, cut);
    const err = protocolError(() => reader.end(), "truncated");
    assert(err.message.includes(`${cut} bytes`), err.message);
  }
});

Deno.test("FrameReader.end() accepts a stream that stops between frames", () => {
  const reader = new FrameReader();
  reader.end();
  reader.push(bytes("01 00 00 00 01 01 00 00"));
  reader.end();
});

// ---------------------------------------------------------------------------
// FrameReader: bad input is refused at its first bad byte

const BAD: {
  what: string;
  stream: Uint8Array;
  code: SentinelProtocolErrorCode;
  /** Index of the byte at which the reader must give up. */
  at: number;
}[] = [
  { what: "version 0", stream: bytes("00 00 00 00"), code: "bad-version", at: 0 },
  { what: "version 2", stream: bytes("02 00 00 00"), code: "bad-version", at: 0 },
  { what: "an HTTP request", stream: bytes("47 45 54 20 2f"), code: "bad-version", at: 0 },
  { what: "type 2 (unused)", stream: bytes("01 02 00 00"), code: "unknown-type", at: 1 },
  { what: "type 12", stream: bytes("01 0c 00 00"), code: "unknown-type", at: 1 },
  { what: "type 19", stream: bytes("01 13 00 00"), code: "unknown-type", at: 1 },
  { what: "type 26", stream: bytes("01 1a 00 00"), code: "unknown-type", at: 1 },
  { what: "type 39", stream: bytes("01 27 00 00"), code: "unknown-type", at: 1 },
  { what: "type 255", stream: bytes("01 ff 00 00"), code: "unknown-type", at: 1 },
  {
    what: "an ERROR announcing 1025 bytes",
    stream: bytes("01 63 04 01"),
    code: "oversized",
    at: 3,
  },
  { what: "a payload_len of 65535", stream: bytes("01 03 ff ff"), code: "oversized", at: 3 },
  { what: "a PING with a payload", stream: bytes("01 00 00 01 00"), code: "bad-length", at: 3 },
  { what: "a SET_ENDPOS one byte short", stream: bytes("01 03 01 07"), code: "bad-length", at: 3 },
  {
    what: "a SET_STARTPOS one byte long",
    stream: bytes("01 08 01 09"),
    code: "bad-length",
    at: 3,
  },
  { what: "an empty SET_APPLY", stream: bytes("01 09 00 00"), code: "bad-length", at: 3 },
  { what: "a 47-byte SENTINEL_REPLY", stream: bytes("01 05 00 2f"), code: "bad-length", at: 3 },
  { what: "a 49-byte STATUS_REPLY", stream: bytes("01 07 00 31"), code: "bad-length", at: 3 },
  { what: "a 31-byte AUTH_CHALLENGE", stream: bytes("01 15 00 1f"), code: "bad-length", at: 3 },
  { what: "a 32-byte AUTH_RESPONSE", stream: bytes("01 16 00 20"), code: "bad-length", at: 3 },
  { what: "SET_APPLY 2", stream: bytes("01 09 00 01 02"), code: "bad-value", at: 4 },
  { what: "CLEANUP 255", stream: bytes("01 0a 00 01 ff"), code: "bad-value", at: 4 },
  {
    what: "a SENTINEL_REPLY with apply 2",
    stream: bytes("01 05 00 30 02", zeros(47)),
    code: "bad-value",
    at: 51,
  },
  {
    what: "a STATUS_REPLY with state 4",
    stream: bytes("01 07 00 30", zeros(40), "04 00 00 00", zeros(4)),
    code: "bad-value",
    at: 51,
  },
  {
    what: "a CLEANUP_REPLY with dry_run 7",
    stream: bytes("01 0b 00 20", zeros(24), "07", zeros(7)),
    code: "bad-value",
    at: 35,
  },
  {
    what: "garbage after a good PING",
    stream: bytes("01 00 00 00", "ff"),
    code: "bad-version",
    at: 4,
  },
];

for (const { what, stream, code, at } of BAD) {
  Deno.test(`FrameReader refuses ${what} with "${code}" at byte ${at}`, () => {
    // whole stream at once
    protocolError(() => new FrameReader().push(stream), code);
    // byte by byte: nothing before byte `at` fails
    const reader = new FrameReader();
    for (let i = 0; i < at; i++) reader.push(stream.subarray(i, i + 1));
    protocolError(() => reader.push(stream.subarray(at, at + 1)), code);
  });
}

Deno.test("FrameReader keeps failing after its first protocol error", () => {
  const reader = new FrameReader();
  const first = protocolError(() => reader.push(bytes("01 02")), "unknown-type");
  const again = assertThrows(() => reader.push(bytes("01 00 00 00")), SentinelProtocolError);
  assert(again === first, "the same error is thrown again");
  assert(assertThrows(() => reader.end(), SentinelProtocolError) === first);
});

Deno.test("decodeMessage() refuses an unknown type code, whatever the payload", () => {
  for (const code of [2, 12, 17, 19, 26, 39, 98, 100, 255, 256, -1, 1.5, NaN]) {
    protocolError(() => decodeMessage(code, zeros(0)), "unknown-type");
  }
});

Deno.test("decodeMessage() refuses an oversized or wrongly sized payload", () => {
  protocolError(() => decodeMessage(99, zeros(1025)), "oversized");
  protocolError(() => decodeMessage(3, zeros(2000)), "oversized");
  protocolError(() => decodeMessage(3, zeros(263)), "bad-length");
  protocolError(() => decodeMessage(0, zeros(1)), "bad-length");
  protocolError(() => decodeMessage(23, zeros(64)), "bad-length");
});

Deno.test("SentinelProtocolError messages quote the offending value", () => {
  const err = protocolError(() => new FrameReader().push(bytes("07")), "bad-version");
  assertEquals(err.message, 'Unsupported sentinel protocol version "7": expected "1"');
  assertEquals(err.name, "SentinelProtocolError");
  const type = protocolError(() => new FrameReader().push(bytes("01 2a")), "unknown-type");
  assertEquals(type.message, 'Unknown sentinel message type "42"');
});

// ---------------------------------------------------------------------------
// Authentication proofs (vectors computed with Python's hmac module)

const SECRET = "s3cret";
const SERVER_NONCE = counting(0x00);
const CLIENT_NONCE = counting(0x20);

Deno.test("clientProof() is HMAC-SHA256 over the client label and both nonces", async () => {
  assertEquals(
    await clientProof(SECRET, SERVER_NONCE, CLIENT_NONCE),
    bytes("5121f483f3d9ebd43aa9872ecb7a92ee214e5f4ae640fc82306398adc3729840"),
  );
});

Deno.test("serverProof() is HMAC-SHA256 over the server label and both nonces", async () => {
  assertEquals(
    await serverProof(new TextEncoder().encode(SECRET), SERVER_NONCE, CLIENT_NONCE),
    bytes("83c1ad0831a3568d4b87f2b90db0278b4aa9fa539ac12414e3121191ddcedb56"),
  );
});

Deno.test("proofs change with the secret and with either nonce", async () => {
  const base = await clientProof(SECRET, SERVER_NONCE, CLIENT_NONCE);
  assert(!equalBytes(base, await clientProof("other", SERVER_NONCE, CLIENT_NONCE)));
  assert(!equalBytes(base, await clientProof(SECRET, CLIENT_NONCE, SERVER_NONCE)));
  assert(!equalBytes(base, await clientProof(SECRET, SERVER_NONCE, counting(1))));
  assert(!equalBytes(base, await serverProof(SECRET, SERVER_NONCE, CLIENT_NONCE)));
});

Deno.test("proofs refuse an empty secret and nonces that are not 32 bytes", async () => {
  await assertRejects(() => clientProof("", SERVER_NONCE, CLIENT_NONCE), RangeError, "empty");
  await assertRejects(() => clientProof(SECRET, zeros(16), CLIENT_NONCE), RangeError, "server");
  await assertRejects(() => serverProof(SECRET, SERVER_NONCE, zeros(33)), RangeError, "client");
});

Deno.test("newNonce() returns 32 fresh random bytes each time", () => {
  const a = newNonce();
  const b = newNonce();
  assertEquals(a.length, 32);
  assert(!equalBytes(a, b));
});

Deno.test("equalBytes() compares contents and lengths", () => {
  assert(equalBytes(bytes("01 02 03"), bytes("01 02 03")));
  assert(equalBytes(zeros(0), zeros(0)));
  assert(!equalBytes(bytes("01 02 03"), bytes("01 02 04")));
  assert(!equalBytes(bytes("01 02 03"), bytes("01 02")));
  assert(!equalBytes(bytes("80"), bytes("00")));
});

// ---------------------------------------------------------------------------
// Fuzz: random and mutated streams only ever yield messages or a SentinelProtocolError

/** mulberry32: small, seedable, good enough to spread test inputs. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FUZZ_SEED = 0x5E471E1;
const FUZZ_CASES = 120_000;
const CODES = Object.values(MessageCode) as number[];
const ERROR_CODES: SentinelProtocolErrorCode[] = [
  "bad-version",
  "unknown-type",
  "oversized",
  "bad-length",
  "bad-value",
  "truncated",
];
const ALPHABET = ["a", "Z", "0", " ", ":", "/", "é", "€", "😀", "\n"];

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

Deno.test(`FrameReader survives ${FUZZ_CASES} random and mutated streams (seed ${FUZZ_SEED})`, () => {
  const rand = prng(FUZZ_SEED);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const u64 = (): bigint => {
    const r = int(10);
    if (r === 0) return 0n;
    if (r === 1) return 0xFFFF_FFFF_FFFF_FFFFn;
    return (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32));
  };
  const text = (maxChars: number) =>
    Array.from({ length: int(maxChars) }, () => pick(ALPHABET)).join("");
  const blob = () => Uint8Array.from({ length: 32 }, () => int(256));
  const sentinel = () => ({
    apply: rand() < 0.5,
    startpos: u64(),
    endpos: u64(),
    writeLsn: u64(),
    flushLsn: u64(),
    replayLsn: u64(),
  });
  const message = (): SentinelMessage => {
    switch (int(19)) {
      case 0:
        return { type: "Ping" };
      case 1:
        return { type: "Pong" };
      case 2:
        return { type: "SetEndpos", lsn: u64(), reason: text(60) };
      case 3:
        return { type: "QuerySentinel" };
      case 4:
        return { type: "SentinelReply", sentinel: sentinel() };
      case 5:
        return { type: "QueryStatus" };
      case 6: {
        const { apply: _, ...positions } = sentinel();
        const state = pick(["init", "streaming", "done", "error"] as const);
        return { type: "StatusReply", status: { ...positions, state } };
      }
      case 7:
        return { type: "SetStartpos", lsn: u64(), reason: text(60) };
      case 8:
        return { type: "SetApply", apply: rand() < 0.5 };
      case 9:
        return { type: "Cleanup", dryRun: rand() < 0.5 };
      case 10:
        return {
          type: "CleanupReply",
          filesDeleted: u64(),
          bytesFreed: u64(),
          safeLsn: u64(),
          dryRun: rand() < 0.5,
        };
      case 11:
        return { type: "AckConfirmed" };
      case 12:
        return { type: "Error", message: text(250) };
      case 13:
        return { type: "AuthRequest" };
      case 14:
        return { type: "AuthChallenge", serverNonce: blob() };
      case 15:
        return { type: "AuthResponse", clientNonce: blob(), proof: blob() };
      case 16:
        return { type: "AuthOk", serverProof: blob() };
      case 17:
        return { type: "Watch" };
      default:
        return { type: "PositionUpdate", sentinel: sentinel() };
    }
  };
  const validStream = (): { stream: Uint8Array; messages: SentinelMessage[] } => {
    const messages = Array.from({ length: 1 + int(4) }, message);
    return { stream: bytes(...messages.map(encodeMessage)), messages };
  };
  const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const mutate = (input: Uint8Array): Uint8Array => {
    let b: Uint8Array = input.slice();
    for (let m = 1 + int(3); m > 0; m--) {
      const at = int(b.length + 1);
      switch (int(5)) {
        case 0: // overwrite a byte
          if (b.length > 0) b[Math.min(at, b.length - 1)] = int(256);
          break;
        case 1: // flip one bit
          if (b.length > 0) b[Math.min(at, b.length - 1)]! ^= 1 << int(8);
          break;
        case 2: // insert bytes
          b = bytes(b.subarray(0, at), randomBytes(1 + int(4)), b.subarray(at));
          break;
        case 3: // delete bytes
          b = bytes(b.subarray(0, at), b.subarray(at + 1 + int(4)));
          break;
        default: // truncate
          b = b.subarray(0, at);
      }
    }
    return b;
  };
  /** A header that gets past the version and type checks, then anything. */
  const plausible = (): Uint8Array => {
    const code = pick(CODES);
    const len = rand() < 0.5 ? int(1100) : int(65536);
    const body = randomBytes(int(Math.min(len, 300) + 3));
    return bytes(Uint8Array.of(1, code, len >> 8, len & 0xFF), body);
  };

  const outcomes = new Map<string, number>();
  const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);

  for (let i = 0; i < FUZZ_CASES; i++) {
    let stream: Uint8Array;
    let expected: SentinelMessage[] | undefined;
    switch (i % 6) {
      case 0: {
        ({ stream, messages: expected } = validStream());
        break;
      }
      case 1:
      case 2:
        stream = mutate(validStream().stream);
        break;
      case 3:
        stream = plausible();
        break;
      case 4:
        stream = randomBytes(int(64));
        if (stream.length > 0 && rand() < 0.7) stream[0] = 1;
        break;
      default:
        stream = bytes(validStream().stream, plausible());
    }

    const reader = new FrameReader();
    const got: SentinelMessage[] = [];
    try {
      let off = 0;
      while (off < stream.length) {
        const n = rand() < 0.3 ? stream.length : 1 + int(40);
        got.push(...reader.push(stream.subarray(off, off + n)));
        off += n;
      }
      reader.end();
      count("ok");
    } catch (err) {
      if (!(err instanceof SentinelProtocolError) || !ERROR_CODES.includes(err.code)) {
        throw new Error(`Case ${i} (seed ${FUZZ_SEED}) threw ${String(err)} for ${toHex(stream)}`, {
          cause: err,
        });
      }
      count(err.code);
    }
    // Every message takes at least a 4-byte header: the reader cannot invent any.
    assert(got.length <= stream.length / 4, `case ${i}: ${got.length} messages`);
    if (expected !== undefined) assertEquals(got, expected, `case ${i} round trip`);
  }

  // The fuzz must actually reach every outcome, or it is testing nothing.
  for (const key of ["ok", ...ERROR_CODES]) {
    assert((outcomes.get(key) ?? 0) > 100, `outcome "${key}" seen ${outcomes.get(key) ?? 0} times`);
  }
});
