/**
 * Reads the records of one segment file from an offset, through a bounded
 * buffer, re-reading the file as it grows. Shared by recovery and the reader.
 */
import {
  decodeRecord,
  decodeRecordHeader,
  type FileRecord,
  type RecordHeader,
  recordLength,
} from "./record.ts";
import { Shapes } from "./shaped_row.ts";

const CHUNK = 1 << 20;

/** A cursor over one segment file. `offset` is where the next record starts. */
export class RecordFile {
  readonly path: string;
  #file: Deno.FsFile;
  #buf = new Uint8Array(CHUNK);
  /** File offset of #buf[0]. */
  #bufStart = 0;
  #bufLen = 0;
  offset: number;
  /** The shapes read so far: the file is read from its start, in order. */
  readonly #shapes = new Shapes();

  constructor(path: string, offset = 0) {
    this.path = path;
    this.#file = Deno.openSync(path, { read: true });
    this.offset = offset;
  }

  /**
   * The next intact record and its length, or undefined when the bytes at
   * `offset` are not (yet) a complete record. Does not move `offset`.
   */
  peek(): { record: FileRecord; length: number } | undefined {
    const found = this.#locate();
    if (found === undefined) return undefined;
    return {
      record: decodeRecord(this.#buf, found.at, found.length, this.#shapes),
      length: found.length,
    };
  }

  /**
   * Like `peek`, but only the record's kind, LSN and BEGIN end_lsn: no JSON is
   * parsed, so recovery scans a segment at the speed of reading it.
   */
  peekHeader(): { header: RecordHeader; length: number } | undefined {
    const found = this.#locate();
    if (found === undefined) return undefined;
    return { header: decodeRecordHeader(this.#buf, found.at), length: found.length };
  }

  /** Where the intact record at `offset` is in the buffer (filling it when needed). */
  #locate(): { at: number; length: number } | undefined {
    let at = this.offset - this.#bufStart;
    let length = at >= 0 && at <= this.#bufLen
      ? recordLength(this.#buf.subarray(0, this.#bufLen), at)
      : 0;
    if (length === 0) {
      this.#fill();
      at = 0;
      length = recordLength(this.#buf.subarray(0, this.#bufLen), 0);
      if (length === 0) return undefined;
    }
    return { at, length };
  }

  /** Forgets buffered bytes, so the next `peek` sees what the file holds now. */
  refresh(): void {
    this.#bufLen = 0;
  }

  /** Reads from `offset` into the buffer, growing it when one record needs more. */
  #fill(): void {
    if (this.#buf.length > CHUNK) this.#buf = new Uint8Array(CHUNK); // after one large record
    this.#bufStart = this.offset;
    this.#bufLen = 0;
    this.#file.seekSync(this.offset, Deno.SeekMode.Start);
    for (;;) {
      const n = this.#file.readSync(this.#buf.subarray(this.#bufLen));
      if (n === null || n === 0) return;
      this.#bufLen += n;
      if (this.#bufLen < this.#buf.length) continue;
      // Full: grow only when the first record does not fit.
      if (this.#bufLen >= 4) {
        const need = 8 + new DataView(this.#buf.buffer).getUint32(0, true);
        if (need > this.#buf.length && need < 2 ** 31) {
          const bigger = new Uint8Array(need);
          bigger.set(this.#buf.subarray(0, this.#bufLen));
          this.#buf = bigger;
          continue;
        }
      }
      return;
    }
  }

  close(): void {
    this.#file.close();
  }
}
