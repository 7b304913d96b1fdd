/**
 * CRC-32 (IEEE 802.3, zlib's): the checksum of every spool record. Short
 * ranges are summed in JavaScript, which for a record of a few dozen bytes
 * costs less than the call into node:zlib; longer ones go to node:zlib.
 */
import { crc32 as zlibCrc32 } from "node:zlib";

const TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c;
}

/** Below this many bytes the JavaScript loop wins (measured: Deno 2.9, x86-64). */
const SHORT = 32;

/** The CRC-32 of `bytes[start, end)`, as an unsigned 32-bit number. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  if (end - start >= SHORT) return zlibCrc32(bytes.subarray(start, end));
  let c = -1;
  for (let i = start; i < end; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
