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
