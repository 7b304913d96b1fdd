/**
 * Log sequence numbers. Inside the engine an LSN is a `bigint`; it becomes the
 * `X/Y` text form (two hex numbers of at most 8 digits) only at the edges.
 */

/** An LSN: a 64-bit position in the write-ahead log. */
export type Lsn = bigint;

/** `0/0`, the invalid LSN: "not set". */
export const INVALID_LSN: Lsn = 0n;

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `"16/B374D848"`; throws a `SyntaxError` that quotes anything else. */
export function parseLsn(text: string): Lsn {
  const match = LSN_PATTERN.exec(text);
  if (match === null) {
    throw new SyntaxError(
      `Invalid LSN "${text}": expected two hexadecimal numbers of at most 8 digits separated by "/", like "16/B374D848"`,
    );
  }
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats an LSN the way PostgreSQL does: upper-case hex, no leading zeros. */
export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > 0xFFFF_FFFF_FFFF_FFFFn) {
    throw new RangeError(`LSN out of range: ${lsn}`);
  }
  const hi = (lsn >> 32n).toString(16).toUpperCase();
  const lo = (lsn & 0xFFFF_FFFFn).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}

/** Orders two LSNs: negative, zero or positive, for `Array.prototype.sort`. */
export function compareLsn(a: Lsn, b: Lsn): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The later of two LSNs. */
export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
