/**
 * Spool retention: deletes the segment files whose every transaction has been
 * applied.
 *
 * Segment i holds transactions ending after its own name (`after`) and at or
 * before the next segment's name: the writer names a new segment after the end
 * LSN of the last commit it put in the previous one, and never writes to a
 * segment again once the next exists. So segment i can go when segment i + 1
 * exists and its `after` is ≤ replay_lsn. The last segment is never deleted:
 * it is the one being written, and the writer recovers from it.
 *
 * Safe against the live pipeline and a kill at any moment:
 * - files are deleted oldest first, one by one, so what is left is always a
 *   suffix of the spool, which the reader and the writer both accept;
 * - the reader may hold a deleted file open (Linux keeps its data until close);
 * - another pruner deleting the same file first is not an error.
 */
import type { Lsn } from "../lsn.ts";
import { listSegments, spoolDir } from "./segments.ts";

export interface PruneOptions {
  /** Say what would be deleted, delete nothing. */
  dryRun?: boolean;
}

/** What a prune did (or, on a dry run, would do). Field names follow CLEANUP_REPLY. */
export interface PruneResult {
  filesDeleted: bigint;
  bytesFreed: bigint;
  /** The replay_lsn the decision was made against. */
  safeLsn: Lsn;
  /** Names of the segment files deleted (or that would be), oldest first. */
  files: string[];
}

/**
 * Deletes the segments of work directory `dir` whose transactions all end at or
 * before `replayLsn` (see the module comment for why that is safe).
 */
export async function pruneSpool(
  dir: string,
  replayLsn: Lsn,
  options: PruneOptions = {},
): Promise<PruneResult> {
  const result: PruneResult = { filesDeleted: 0n, bytesFreed: 0n, safeLsn: replayLsn, files: [] };
  const segments = listSegments(spoolDir(dir));
  for (let i = 0; i + 1 < segments.length; i++) {
    if (segments[i + 1]!.after > replayLsn) break;
    const segment = segments[i]!;
    try {
      const { size } = await Deno.stat(segment.path);
      if (!options.dryRun) await Deno.remove(segment.path);
      result.filesDeleted++;
      result.bytesFreed += BigInt(size);
      result.files.push(segment.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // pruned by someone else meanwhile
    }
  }
  return result;
}
