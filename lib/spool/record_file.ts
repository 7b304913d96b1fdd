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
const MIN_BUFFER = 4096;

/**
 * A cursor over one segment file. `offset` is where the next record starts.
 * The changes `peek` returns keep views of the buffer: once one is handed
 * out, the next read goes to a new buffer instead of overwriting it.
 */
export class RecordFile {
  readonly path: string;
  #file: Deno.FsFile;
  #buf = new Uint8Array(0);
  #view = new DataView(this.#buf.buffer);
  /** File offset of #buf[0]. */
  #bufStart = 0;
  #bufLen = 0;
  /** Records decoded from #buf were handed out: read into a new buffer next time. */
  #lent = false;
  /** Where the record found by #locate starts in #buf. */
  #at = 0;
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
    const length = this.#locate();
    if (length === 0) return undefined;
    this.#lent = true;
    return {
      record: decodeRecord(this.#buf, this.#at, length, this.#shapes, this.#view),
      length,
    };
  }

  /**
   * Like `peek`, but only the record's kind, LSN and BEGIN end_lsn: no JSON is
   * parsed, so recovery scans a segment at the speed of reading it.
   */
  peekHeader(): { header: RecordHeader; length: number } | undefined {
    const length = this.#locate();
    if (length === 0) return undefined;
    return { header: decodeRecordHeader(this.#buf, this.#at, this.#view), length };
  }

  /** A copy of the intact record at `offset` (as `peekHeader` found it). */
  copyRecord(length: number): Uint8Array {
    return this.#buf.slice(this.#at, this.#at + length);
  }

  /** The length of the intact record at `offset` (its start in #at), filling the buffer when needed; 0: none. */
  #locate(): number {
    const at = this.offset - this.#bufStart;
    let length = at >= 0 && at <= this.#bufLen ? recordLength(this.#buf, at, this.#bufLen) : 0;
    if (length > 0) {
      this.#at = at;
      return length;
    }
    this.#fill();
    this.#at = 0;
    length = recordLength(this.#buf, 0, this.#bufLen);
    return length;
  }

  /** Forgets buffered bytes, so the next `peek` sees what the file holds now. */
  refresh(): void {
    this.#bufLen = 0;
  }

  /** Reads from `offset` into the buffer, growing it when one record needs more. */
  #fill(): void {
    // No larger than what the file holds past `offset`: a reader at the tail of a growing file
    // reads a little at a time.
    const left = this.#file.statSync().size - this.offset;
    const size = Math.min(CHUNK, Math.max(MIN_BUFFER, left));
    if (this.#lent || this.#buf.length !== size) this.#use(new Uint8Array(size));
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
        const need = 8 + this.#view.getUint32(0, true);
        if (need > this.#buf.length && need < 2 ** 31) {
          const bigger = new Uint8Array(need);
          bigger.set(this.#buf.subarray(0, this.#bufLen));
          this.#use(bigger);
          continue;
        }
      }
      return;
    }
  }

  #use(buf: Uint8Array<ArrayBuffer>): void {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer);
    this.#lent = false;
  }

  close(): void {
    this.#file.close();
  }
}
