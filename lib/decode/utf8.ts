/**
 * UTF-8 bytes to a string, refusing invalid input. A fatal TextDecoder costs
 * about four times a lenient one per call (Deno 2.9), and the decoders call it
 * for every value: decode leniently, and only when a U+FFFD shows up (rare:
 * the server validates encodings) decode again strictly to tell a real U+FFFD
 * from invalid bytes. Throws a `TypeError` on invalid UTF-8.
 */
const lenient = new TextDecoder("utf-8");
const strict = new TextDecoder("utf-8", { fatal: true });

/** Below this many bytes, ASCII is turned into a string in JavaScript: cheaper than a call out. */
const SHORT = 64;

/** Decodes UTF-8; throws a `TypeError` when `bytes` is not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string {
  if (bytes.length <= SHORT) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  const s = lenient.decode(bytes);
  if (s.includes("\uFFFD")) strict.decode(bytes);
  return s;
}

/**
 * Throws a `TypeError` when `bytes[start, end)` is not valid UTF-8 (without
 * making a string of ASCII, or a view of it).
 */
export function checkUtf8(bytes: Uint8Array, start = 0, end = bytes.length): void {
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) {
      strict.decode(bytes.subarray(start, end));
      return;
    }
  }
}
