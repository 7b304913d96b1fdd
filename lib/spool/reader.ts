/**
 * The spool reader: follows the segment files in order, like `tail -f`, and
 * hands out records of complete transactions, unless asked for an open one. A
 * BEGIN whose end LSN has not been patched in yet means "not complete": the
 * reader waits there and reads it again later (the writer may also cut a
 * re-sent transaction back out and write another one in its place). SHAPE
 * records are read, never handed out.
 */
import { existsSync } from "node:fs";
import type { Commit } from "../decode/change.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import { RecordKind, type SpoolRecord } from "./record.ts";
import { RecordFile } from "./record_file.ts";
import { listSegments, type Segment, segmentAt, spoolDir } from "./segments.ts";

/** Reads the spool of work directory `dir`. */
export class SpoolReader {
  readonly cdcDir: string;
  #segment: Segment | undefined;
  #file: RecordFile | undefined;
  /** End LSN of the last transaction read from the current segment. */
  #lastEnd: Lsn | undefined;
  #atOpen = false;

  constructor(dir: string) {
    this.cdcDir = spoolDir(dir);
  }

  /**
   * Positions the reader at the first transaction ending after `after`, in the
   * segment that holds it. The complete transactions before it in that segment
   * are passed over by their BEGIN's end LSN, reading record headers only;
   * should one still be on its way into the file, the reader stops at its
   * BEGIN, and the caller skips it by its end LSN.
   */
  seek(after: Lsn): void {
    this.close();
    const segments = listSegments(this.cdcDir);
    let chosen: Segment | undefined;
    for (const segment of segments) {
      if (segment.after <= after) chosen = segment;
    }
    this.#segment = chosen ?? segments[0];
    if (this.#segment !== undefined && after > 0n) this.#passOver(after);
  }

  /**
   * Moves past the transactions (and keepalives) of the current segment that
   * end at or before `after`, without decoding their changes: on a restart,
   * decoding what was applied already cost apply seconds per GiB of segment.
   */
  #passOver(after: Lsn): void {
    const file = this.#file = new RecordFile(this.#segment!.path);
    /** Where the transaction being passed over began, and its end. */
    let begin: { offset: number; end: Lsn } | undefined;
    for (;;) {
      const next = file.peekHeader();
      if (next === undefined) break;
      const { kind, lsn, endLsn } = next.header;
      if (kind === RecordKind.Shape) {
        file.peek(); // later rows need it
      } else if (begin !== undefined) {
        if (kind === RecordKind.Commit) {
          this.#lastEnd = begin.end;
          begin = undefined;
        }
      } else if (kind === RecordKind.Begin && endLsn !== 0n && endLsn <= after) {
        begin = { offset: file.offset, end: endLsn };
      } else if (kind !== RecordKind.Keepalive || lsn > after) {
        break;
      }
      file.offset += next.length;
    }
    // A transaction not all in the file yet: next() hands it out from its BEGIN.
    if (begin !== undefined) file.offset = begin.offset;
  }

  /**
   * A segment after the current one, or undefined when the writer has not
   * created one yet. The writer names the next segment after the last commit
   * of the current one, so that is the file to look for first: a directory
   * listing taken while the writer creates files may miss some and show later
   * ones (readdir order is not creation order).
   */
  #later(): Segment | undefined {
    const current = this.#segment!;
    if (this.#lastEnd !== undefined) {
      const expected = segmentAt(this.cdcDir, this.#lastEnd);
      if (existsSync(expected.path)) return expected; // no thrown error when it is not there
    }
    return listSegments(this.cdcDir).find((s) => s.after > current.after);
  }

  /** The reader waits at the BEGIN of a transaction whose COMMIT is not in yet. */
  get atOpenTransaction(): boolean {
    return this.#atOpen;
  }

  /**
   * The next record, or undefined when there is none yet (the caller waits and
   * asks again). Inside a complete transaction, every record is there.
   *
   * With `open`, a BEGIN is handed out before its transaction is complete:
   * the records that follow come as the writer writes them (undefined in
   * between), up to its COMMIT, or not at all should the writer cut the
   * transaction out (see readCuts).
   */
  next(open = false): SpoolRecord | undefined {
    this.#atOpen = false;
    for (;;) {
      if (this.#file === undefined) {
        if (this.#segment === undefined) this.seek(0n);
        if (this.#segment === undefined) return undefined;
        this.#file = new RecordFile(this.#segment.path);
      }
      const next = this.#file.peek();
      if (next !== undefined) {
        const record = next.record;
        if (record.kind === RecordKind.Begin && record.endLsn === 0n && !open) {
          this.#file.refresh(); // incomplete: read it again from the file next time
          this.#atOpen = true;
          return undefined;
        }
        this.#file.offset += next.length;
        if (record.kind === RecordKind.Shape) continue; // known to the file from now on
        if (record.kind === RecordKind.Begin) {
          this.#lastEnd = record.endLsn === 0n ? undefined : record.endLsn;
        } else if (record.kind === RecordKind.Commit && this.#lastEnd === undefined) {
          this.#lastEnd = (record.change as Commit).endLsn;
        }
        return record;
      }
      // Nothing more here for now: move on only when a later segment exists,
      // which the writer creates after it finished this one.
      this.#file.refresh();
      let later = this.#later();
      if (later === undefined) return undefined;
      // Re-check this segment once more: the writer finished it before creating `later`.
      const last = this.#file.peek();
      if (last !== undefined) continue;
      if (this.#lastEnd !== undefined && later.after !== this.#lastEnd) {
        const expected = segmentAt(this.cdcDir, this.#lastEnd);
        if (!existsSync(expected.path)) {
          throw new RangeError(
            `Spool gap: segment ${this.#segment!.name} ends with a transaction at ${
              formatLsn(this.#lastEnd)
            }, but the next segment is ${later.name}, not ${expected.name}`,
          );
        }
        later = expected;
      }
      this.#lastEnd = undefined;
      this.#file.close();
      this.#file = undefined;
      this.#segment = later;
    }
  }

  close(): void {
    this.#file?.close();
    this.#file = undefined;
    this.#segment = undefined;
    this.#lastEnd = undefined;
    this.#atOpen = false;
  }
}
