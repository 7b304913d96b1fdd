/**
 * The spool reader: follows the segment files in order, like `tail -f`, and
 * hands out records of complete transactions only. A BEGIN whose end LSN has
 * not been patched in yet means "not complete": the reader waits there and
 * reads it again later (the writer may also cut a re-sent transaction back
 * out and write another one in its place).
 */
import { formatLsn, type Lsn } from "../lsn.ts";
import { RecordKind, type SpoolRecord } from "./record.ts";
import { RecordFile } from "./record_file.ts";
import { listSegments, type Segment, spoolDir } from "./segments.ts";

/** Reads the spool of work directory `dir`. */
export class SpoolReader {
  readonly cdcDir: string;
  #segment: Segment | undefined;
  #file: RecordFile | undefined;
  /** Segments after the current one, as last listed (listing a big spool is slow). */
  #ahead: Segment[] = [];
  #aheadAt = 0;
  /** End LSN of the last transaction read from the current segment. */
  #lastEnd: Lsn | undefined;

  constructor(dir: string) {
    this.cdcDir = spoolDir(dir);
  }

  /**
   * Positions the reader at the segment that holds the first transaction
   * ending after `after`. Earlier transactions in that segment are still
   * returned; the caller skips them by their end LSN.
   */
  seek(after: Lsn): void {
    this.close();
    const segments = listSegments(this.cdcDir);
    let chosen: Segment | undefined;
    for (const segment of segments) {
      if (segment.after <= after) chosen = segment;
    }
    this.#segment = chosen ?? segments[0];
    this.#ahead = segments;
    this.#aheadAt = 0;
  }

  /** The segment after the current one, listing the directory again only when none is known. */
  #later(): Segment | undefined {
    const current = this.#segment!.after;
    const ahead = () => {
      while (this.#aheadAt < this.#ahead.length && this.#ahead[this.#aheadAt]!.after <= current) {
        this.#aheadAt++;
      }
      return this.#ahead[this.#aheadAt];
    };
    if (ahead() !== undefined) return ahead();
    this.#ahead = listSegments(this.cdcDir);
    this.#aheadAt = 0;
    return ahead();
  }

  /**
   * The next record, or undefined when there is none yet (the caller waits and
   * asks again). Inside a complete transaction, every record is there.
   */
  next(): SpoolRecord | undefined {
    for (;;) {
      if (this.#file === undefined) {
        if (this.#segment === undefined) this.seek(0n);
        if (this.#segment === undefined) return undefined;
        this.#file = new RecordFile(this.#segment.path);
      }
      const next = this.#file.peek();
      if (next !== undefined) {
        if (next.record.kind === RecordKind.Begin && next.record.endLsn === 0n) {
          this.#file.refresh(); // incomplete: read it again from the file next time
          return undefined;
        }
        this.#file.offset += next.length;
        if (next.record.kind === RecordKind.Begin) this.#lastEnd = next.record.endLsn;
        return next.record;
      }
      // Nothing more here for now: move on only when a later segment exists,
      // which the writer creates after it finished this one.
      this.#file.refresh();
      const later = this.#later();
      if (later === undefined) return undefined;
      // Re-check this segment once more: the writer finished it before creating `later`.
      const last = this.#file.peek();
      if (last !== undefined) continue;
      // The writer names a segment after the last commit of the one before.
      if (this.#lastEnd !== undefined && this.#lastEnd !== later.after) {
        throw new RangeError(
          `Spool gap: segment ${this.#segment!.name} ends at ${
            formatLsn(this.#lastEnd)
          }, the next one is ${later.name}`,
        );
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
    this.#ahead = [];
    this.#aheadAt = 0;
    this.#lastEnd = undefined;
  }
}
