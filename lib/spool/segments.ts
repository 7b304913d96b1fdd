/** The segment files of a spool directory, in LSN order. */
import { join } from "node:path";
import type { Lsn } from "../lsn.ts";

/** One segment file: it holds transactions whose end LSN is greater than `after`. */
export interface Segment {
  name: string;
  path: string;
  after: Lsn;
}

const NAME = /^([0-9A-F]{16})\.spool$/;

/** The spool directory of a work directory. */
export function spoolDir(dir: string): string {
  return join(dir, "cdc");
}

/** Segment file name for a segment that starts after `lsn`: sorts in LSN order. */
export function segmentName(after: Lsn): string {
  return `${after.toString(16).toUpperCase().padStart(16, "0")}.spool`;
}

/** The segment of `cdcDir` named after `after` (whether or not it exists). */
export function segmentAt(cdcDir: string, after: Lsn): Segment {
  const name = segmentName(after);
  return { name, path: join(cdcDir, name), after };
}

/** Lists the segments of `cdcDir` in order; an absent directory has none. */
export function listSegments(cdcDir: string): Segment[] {
  const segments: Segment[] = [];
  try {
    for (const entry of Deno.readDirSync(cdcDir)) {
      const match = NAME.exec(entry.name);
      if (match && entry.isFile) {
        segments.push({
          name: entry.name,
          path: join(cdcDir, entry.name),
          after: BigInt(`0x${match[1]}`),
        });
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return segments.sort((a, b) => (a.after < b.after ? -1 : a.after > b.after ? 1 : 0));
}

/**
 * How many times the writer cut bytes out of the spool's files that a reader may
 * have read (a transaction re-sent or abandoned, a tail cut at open). A reader
 * inside a transaction whose COMMIT is not in the file yet reads this before it
 * trusts what it read: the writer counts a cut before it makes it.
 */
export function readCuts(cdcDir: string): number {
  try {
    const bytes = Deno.readFileSync(join(cdcDir, CUTS));
    return bytes.length === 8 ? Number(new DataView(bytes.buffer).getBigUint64(0, true)) : 0;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
}

/** Counts one more cut (see readCuts). */
export function countCut(cdcDir: string): void {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(readCuts(cdcDir) + 1), true);
  // Written in place, never truncated: a reader sees the old count or the new one.
  const file = Deno.openSync(join(cdcDir, CUTS), { write: true, create: true });
  try {
    file.writeSync(bytes);
  } finally {
    file.close();
  }
}

const CUTS = "cuts";
