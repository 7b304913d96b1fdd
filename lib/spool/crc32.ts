/**
 * CRC-32 (IEEE 802.3, zlib's): the checksum of every spool record. Ranges of
 * up to a few hundred bytes (nearly every record) are summed in JavaScript,
 * eight bytes a step (slicing-by-8), which costs less than the call into
 * node:zlib (ten times faster on long ranges) once it is loaded. It starts
 * loading at the first long range, in the background: a static import would
 * add ~30 ms to every start-up, of processes that may never need it. Until it
 * is in, the JavaScript loop sums every length, with the same result.
 */
let zlibCrc32: ((bytes: Uint8Array) => number) | undefined;
let zlibLoading = false;

/** TABLE[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLE = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = TABLE[n]!;
  for (let k = 1; k < 8; k++) {
    c = TABLE[c & 0xff]! ^ (c >>> 8);
    TABLE[k * 256 + n] = c;
  }
}

/**
 * Below this many bytes the JavaScript loop wins (measured in apply and
 * receive, Deno 2.9, x86-64: a call into node:zlib costs 60–300 ns there).
 */
const SHORT = 512;

/** The CRC-32 of `bytes[start, end)`, as an unsigned 32-bit number. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  if (end - start >= SHORT) {
    if (zlibCrc32 !== undefined) return zlibCrc32(bytes.subarray(start, end));
    if (!zlibLoading) {
      zlibLoading = true;
      import("node:zlib").then((zlib) => zlibCrc32 = zlib.crc32);
    }
  }
  let c = -1;
  let i = start;
  for (const last = end - 8; i <= last; i += 8) {
    const low = c ^
      (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    c = TABLE[1792 + (low & 0xff)]! ^ TABLE[1536 + ((low >>> 8) & 0xff)]! ^
      TABLE[1280 + ((low >>> 16) & 0xff)]! ^ TABLE[1024 + (low >>> 24)]! ^
      TABLE[768 + bytes[i + 4]!]! ^ TABLE[512 + bytes[i + 5]!]! ^ TABLE[256 + bytes[i + 6]!]! ^
      TABLE[bytes[i + 7]!]!;
  }
  for (; i < end; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
