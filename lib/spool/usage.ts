/** How much disk the spool takes: for status and the size warning. */
import type { Lsn } from "../lsn.ts";
import { listSegments, spoolDir } from "./segments.ts";

export interface SpoolUsage {
  files: number;
  bytes: number;
  /** `after` of the oldest segment and of the one being written; undefined when there is none. */
  first: Lsn | undefined;
  last: Lsn | undefined;
}

/** Counts the segment files of work directory `dir` and their bytes. */
export async function spoolUsage(dir: string): Promise<SpoolUsage> {
  const segments = listSegments(spoolDir(dir));
  let files = 0;
  let bytes = 0;
  for (const segment of segments) {
    try {
      bytes += (await Deno.stat(segment.path)).size;
      files++;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // pruned meanwhile
    }
  }
  return { files, bytes, first: segments[0]?.after, last: segments.at(-1)?.after };
}
