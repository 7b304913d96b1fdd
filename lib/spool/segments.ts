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
