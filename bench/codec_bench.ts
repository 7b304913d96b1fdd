/** Sentinel codec hot paths: what the coordinator does per request. */
import {
  decodeMessage,
  encodeMessage,
  FrameReader,
  type SentinelMessage,
} from "../lib/sentinel/codec.ts";

const SET_ENDPOS: SentinelMessage = {
  type: "SetEndpos",
  lsn: 0x16_B374D848n,
  reason: "pgferry stream sentinel set endpos --current",
};
const SENTINEL_REPLY: SentinelMessage = {
  type: "SentinelReply",
  sentinel: {
    apply: true,
    startpos: 0x1000028n,
    endpos: 0x16_B374D848n,
    writeLsn: 0x16_B3000000n,
    flushLsn: 0x16_B2FFFF00n,
    replayLsn: 0x16_B2000000n,
  },
};

const setEndposFrame = encodeMessage(SET_ENDPOS);
const sentinelReplyFrame = encodeMessage(SENTINEL_REPLY);

const frames = Array.from(
  { length: 100 },
  (_, i) => i % 2 === 0 ? setEndposFrame : sentinelReplyFrame,
);
const chunk = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
let at = 0;
for (const f of frames) {
  chunk.set(f, at);
  at += f.length;
}

Deno.bench("encode SET_ENDPOS", { group: "encode" }, () => {
  encodeMessage(SET_ENDPOS);
});

Deno.bench("encode SENTINEL_REPLY", { group: "encode" }, () => {
  encodeMessage(SENTINEL_REPLY);
});

Deno.bench("decode SET_ENDPOS", { group: "decode" }, () => {
  decodeMessage(setEndposFrame[1]!, setEndposFrame.subarray(4));
});

Deno.bench("decode SENTINEL_REPLY", { group: "decode" }, () => {
  decodeMessage(sentinelReplyFrame[1]!, sentinelReplyFrame.subarray(4));
});

Deno.bench(`FrameReader: 100 frames in one ${chunk.length}-byte chunk`, { group: "frames" }, () => {
  const reader = new FrameReader();
  if (reader.push(chunk).length !== 100) throw new Error("Expected 100 messages");
});

Deno.bench("FrameReader: the same 100 frames in 64-byte chunks", { group: "frames" }, () => {
  const reader = new FrameReader();
  let n = 0;
  for (let off = 0; off < chunk.length; off += 64) {
    n += reader.push(chunk.subarray(off, off + 64)).length;
  }
  if (n !== 100) throw new Error("Expected 100 messages");
});
