/**
 * The spool writer: appends decoded transactions to segment files under
 * `<dir>/cdc/` as they arrive, so a transaction of any size passes through
 * bounded memory.
 *
 * - Segments rotate only at commit boundaries: a transaction lives in one file.
 * - A COMMIT patches its BEGIN with the end LSN, so readers know whether a
 *   transaction is complete (and where it ends) before reading its changes.
 * - A transaction whose end LSN is not after the last one spooled is a re-send
 *   from the slot: it is cut back out, so nothing is spooled twice.
 * - On open, a torn tail (a partial record, or a transaction without COMMIT) is
 *   cut back to the last complete transaction; the slot sends it again.
 * - `sync()` fsyncs; `durableLsn` is the end of the last transaction on disk,
 *   the most that may be reported to the source as flushed.
 */
import { join } from "node:path";
import {
  type Begin,
  type Change,
  type Column,
  type Commit,
  encodeChange,
} from "../decode/change.ts";
import type { Lsn } from "../lsn.ts";
import {
  encodeRecord,
  encodeShapedRecordInto,
  encodeTextRecordInto,
  patchBegin,
  RecordKind,
  type SpoolRecord,
} from "./record.ts";
import { ShapeNumbers } from "./shaped_row.ts";
import { RecordFile } from "./record_file.ts";
import { countCut, listSegments, segmentName, spoolDir } from "./segments.ts";

const BUFFER = 1 << 20;

export interface SpoolWriterOptions {
  /** Rotate to a new segment at the first commit past this size (default 1 GiB). */
  segmentSize?: number;
}

/** Appends transactions to the spool. Single writer: the receive stage. */
export class SpoolWriter {
  readonly cdcDir: string;
  readonly #segmentSize: number;
  #file!: Deno.FsFile;
  #segmentPath = "";
  /** Bytes of the current segment already written to the file. */
  #fileSize = 0;
  readonly #buf = new Uint8Array(BUFFER);
  readonly #view = new DataView(this.#buf.buffer);
  #bufLen = 0;
  /**
   * The open transaction: where its BEGIN record starts in the file, and its
   * length. The record is patched in the buffer at COMMIT; `begin` holds a copy
   * once a flush has written it to the file (a large transaction).
   */
  #txn: { offset: number; length: number; begin: Uint8Array | undefined } | undefined;
  #lastCommit: Lsn = 0n;
  #lastKeepalive: Lsn = 0n;
  #durable: Lsn = 0n;
  #dirty = false;
  #cutAtOpen = 0;
  /** Shape numbers defined in the current segment (see shaped_row.ts). */
  readonly #shapes = new ShapeNumbers();

  private constructor(cdcDir: string, options: SpoolWriterOptions) {
    this.cdcDir = cdcDir;
    this.#segmentSize = options.segmentSize ?? 2 ** 30;
  }

  /** Opens the spool of work directory `dir`, recovering a torn tail. */
  static open(dir: string, options: SpoolWriterOptions = {}): SpoolWriter {
    const writer = new SpoolWriter(spoolDir(dir), options);
    writer.#recover();
    return writer;
  }

  /** End LSN of the last complete transaction in the spool (written, maybe not yet synced). */
  get lastCommit(): Lsn {
    return this.#lastCommit;
  }

  /**
   * How far the spool is complete: the end of the last transaction, or a later
   * keepalive position (nothing before it is missing). Receive restarts here.
   */
  get position(): Lsn {
    return this.#lastKeepalive > this.#lastCommit ? this.#lastKeepalive : this.#lastCommit;
  }

  /** The `position` known to be on disk. */
  get durableLsn(): Lsn {
    return this.#durable;
  }

  /** Bytes of a torn or unfinished tail that opening the spool cut off (the slot sends them again). */
  get cutAtOpen(): number {
    return this.#cutAtOpen;
  }

  /** Whether a transaction has begun and not yet committed. */
  get inTransaction(): boolean {
    return this.#txn !== undefined;
  }

  /** Appends one change of the stream: Begin, a row change, or Commit. */
  append(change: Change): void {
    switch (change.tag) {
      case "Begin":
        this.#begin(change);
        return;
      case "Commit":
        this.#commit(change);
        return;
      default:
        if (this.#txn === undefined) {
          throw new RangeError(`${change.tag} at ${change.lsn} outside a transaction`);
        }
        if (change.tag === "Truncate") {
          this.#writeText(RecordKind.Change, change.lsn, encodeChange(change));
        } else this.#writeRow(change);
    }
  }

  /**
   * Encodes a record of `text` into the buffer (copied when larger). Returns
   * where it starts in the file, its length, and the record itself when it was
   * encoded on its own.
   */
  #writeText(
    kind: Exclude<RecordKind, typeof RecordKind.Keepalive>,
    lsn: Lsn,
    text: string,
  ): { offset: number; length: number; record?: Uint8Array } {
    let length = encodeTextRecordInto(this.#buf, this.#bufLen, kind, lsn, text, this.#view);
    if (length === 0 && this.#bufLen > 0) {
      this.flush();
      length = encodeTextRecordInto(this.#buf, 0, kind, lsn, text, this.#view);
    }
    if (length > 0) {
      const offset = this.#fileSize + this.#bufLen;
      this.#bufLen += length;
      return { offset, length };
    }
    const record = encodeRecord(kind, lsn, text); // larger than the buffer
    return { offset: this.#write(record), length: record.length, record };
  }

  /**
   * Encodes a row change as a shaped row into the buffer, after the SHAPE
   * records of shapes new to the segment. A row larger than the buffer, or
   * without any tuple, goes in the self-contained format.
   */
  #writeRow(change: Change & { tag: "Insert" | "Update" | "Delete" }): void {
    const tuple = change.tag === "Delete" ? undefined : change.new;
    const old = change.tag === "Insert" ? null : change.old;
    if (tuple === undefined && old === null) {
      this.#writeText(RecordKind.Change, change.lsn, encodeChange(change));
      return;
    }
    const newShape = tuple === undefined ? -1 : this.#shape(change, tuple.columns);
    const oldShape = old === null ? -1 : this.#shape(change, old.columns);
    let length = encodeShapedRecordInto(
      this.#buf,
      this.#bufLen,
      change,
      newShape,
      oldShape,
      this.#view,
    );
    if (length === 0 && this.#bufLen > 0) {
      this.flush();
      length = encodeShapedRecordInto(this.#buf, 0, change, newShape, oldShape, this.#view);
    }
    if (length > 0) this.#bufLen += length;
    else this.#write(encodeRecord(RecordKind.Change, change.lsn, change));
  }

  /** The number of a tuple's shape in this segment, defined by a SHAPE record first when new. */
  #shape(
    change: Change & { tag: "Insert" | "Update" | "Delete" },
    columns: readonly Column[],
  ): number {
    const { id, define } = this.#shapes.idOf(change.relation, columns);
    if (define !== undefined) this.#writeText(RecordKind.Shape, change.lsn, define);
    return id;
  }

  /**
   * Records that nothing before `lsn` is pending (an idle PrimaryKeepalive), so
   * apply may report it as reached once everything before it is applied.
   */
  keepalive(lsn: Lsn): void {
    if (this.#txn !== undefined || lsn <= this.#lastCommit || lsn <= this.#lastKeepalive) return;
    this.#lastKeepalive = lsn;
    this.#write(encodeRecord(RecordKind.Keepalive, lsn));
  }

  /**
   * Drops the open transaction, if any (receive stopped inside it, at endpos):
   * it ends later than anything spooled, and the slot sends it again.
   */
  abandonTransaction(): void {
    if (this.#txn === undefined) return;
    this.#cutBackTo(this.#txn.offset);
    this.#txn = undefined;
  }

  /** Writes buffered records to the file (visible to readers, not yet durable). */
  flush(): void {
    if (this.#bufLen === 0) return;
    const txn = this.#txn;
    if (txn !== undefined && txn.begin === undefined && txn.offset >= this.#fileSize) {
      const at = txn.offset - this.#fileSize;
      txn.begin = this.#buf.slice(at, at + txn.length);
    }
    writeAll(this.#file, this.#buf.subarray(0, this.#bufLen));
    this.#fileSize += this.#bufLen;
    this.#bufLen = 0;
    this.#dirty = true;
  }

  /** Flushes and fsyncs; returns the new durable LSN. */
  sync(): Lsn {
    const committed = this.position;
    this.flush();
    if (this.#dirty) {
      this.#file.syncDataSync();
      this.#dirty = false;
    }
    this.#durable = committed;
    return this.#durable;
  }

  close(): void {
    this.sync();
    this.#file.close();
  }

  #begin(change: Begin): void {
    if (this.#txn !== undefined) {
      throw new RangeError(`BEGIN at ${change.lsn} inside an open transaction`);
    }
    const { offset, length, record } = this.#writeText(
      RecordKind.Begin,
      change.lsn,
      encodeChange(change),
    );
    this.#txn = { offset, length, begin: record };
  }

  #commit(change: Commit): void {
    const txn = this.#txn;
    if (txn === undefined) throw new RangeError(`COMMIT at ${change.lsn} outside a transaction`);
    this.#txn = undefined;
    if (change.endLsn <= this.position) {
      this.#cutBackTo(txn.offset); // the slot sent a transaction we already have
      return;
    }
    if (txn.offset >= this.#fileSize) {
      const at = txn.offset - this.#fileSize;
      patchBegin(this.#buf.subarray(at, at + txn.length), change.endLsn, change.commitTime);
      this.#writeText(RecordKind.Commit, change.lsn, encodeChange(change));
    } else {
      const begin = txn.begin!;
      patchBegin(begin, change.endLsn, change.commitTime);
      // The BEGIN is already in the file (a large transaction): write everything up to
      // and including COMMIT first, so that a reader who sees the patched BEGIN finds
      // every record of the transaction in the file.
      this.#writeText(RecordKind.Commit, change.lsn, encodeChange(change));
      this.flush();
      this.#writeAt(txn.offset, begin);
    }
    this.#lastCommit = change.endLsn;
    if (this.#fileSize + this.#bufLen >= this.#segmentSize) this.#rotate();
  }

  /** Appends a whole record; returns where it starts in the file. */
  #write(record: Uint8Array): number {
    if (this.#bufLen + record.length > this.#buf.length) this.flush();
    const offset = this.#fileSize + this.#bufLen;
    if (record.length > this.#buf.length) {
      writeAll(this.#file, record);
      this.#fileSize += record.length;
      this.#dirty = true;
    } else {
      this.#buf.set(record, this.#bufLen);
      this.#bufLen += record.length;
    }
    return offset;
  }

  /** Overwrites file bytes at `offset` (a BEGIN being patched), then goes on at the end. */
  #writeAt(offset: number, bytes: Uint8Array): void {
    this.#file.seekSync(offset, Deno.SeekMode.Start);
    writeAll(this.#file, bytes);
    this.#file.seekSync(0, Deno.SeekMode.End);
  }

  #cutBackTo(offset: number): void {
    this.#shapes.reset(); // some SHAPE records may be gone with what is cut
    if (offset >= this.#fileSize) {
      this.#bufLen = offset - this.#fileSize;
    } else {
      countCut(this.cdcDir); // a reader may have read what goes
      this.#bufLen = 0;
      this.#file.truncateSync(offset);
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      this.#fileSize = offset;
    }
  }

  #rotate(): void {
    this.sync();
    this.#file.close();
    this.#openSegment(join(this.cdcDir, segmentName(this.#lastCommit)));
  }

  #openSegment(path: string): void {
    this.#shapes.reset();
    this.#file = Deno.openSync(path, { read: true, write: true, create: true });
    this.#segmentPath = path;
    this.#fileSize = this.#file.seekSync(0, Deno.SeekMode.End);
  }

  /** Finds the last complete transaction and cuts off whatever follows it. */
  #recover(): void {
    Deno.mkdirSync(this.cdcDir, { recursive: true });
    const segments = listSegments(this.cdcDir);
    const last = segments.at(-1);
    if (last === undefined) {
      this.#openSegment(join(this.cdcDir, segmentName(0n)));
      return;
    }
    this.#lastCommit = last.after;
    const file = new RecordFile(last.path);
    let goodEnd = 0;
    // The open transaction's BEGIN: where it is, its end LSN, and a copy of the record
    // when it was never patched (a crash between writing COMMIT and patching BEGIN).
    let begin: { offset: number; endLsn: Lsn; record?: Uint8Array } | undefined;
    /** A BEGIN patched here, whose COMMIT is in: to write back. */
    let patched: { offset: number; record: Uint8Array } | undefined;
    try {
      for (;;) {
        const next = file.peekHeader();
        if (next === undefined) break;
        const { header } = next;
        if (header.kind === RecordKind.Begin) {
          if (begin !== undefined) break; // a BEGIN inside a transaction: not something we wrote
          begin = { offset: file.offset, endLsn: header.endLsn };
          if (header.endLsn === 0n) begin.record = file.copyRecord(next.length);
        } else if (header.kind === RecordKind.Commit) {
          if (begin === undefined) break;
          if (begin.record !== undefined) {
            // Its COMMIT is in: the transaction stays (apply may have read it to the end).
            const commit = (file.peek()!.record as SpoolRecord & { change: Commit }).change;
            patchBegin(begin.record, commit.endLsn, commit.commitTime);
            patched = { offset: begin.offset, record: begin.record };
            begin.endLsn = commit.endLsn;
          }
          goodEnd = file.offset + next.length;
          this.#lastCommit = begin.endLsn;
          begin = undefined;
        } else if (header.kind === RecordKind.Keepalive && begin === undefined) {
          goodEnd = file.offset + next.length;
          this.#lastKeepalive = header.lsn;
        }
        file.offset += next.length;
      }
    } finally {
      file.close();
    }
    this.#openSegment(last.path);
    if (patched !== undefined) this.#writeAt(patched.offset, patched.record);
    if (goodEnd < this.#fileSize) {
      countCut(this.cdcDir);
      this.#cutAtOpen = this.#fileSize - goodEnd;
      this.#file.truncateSync(goodEnd);
      this.#file.seekSync(goodEnd, Deno.SeekMode.Start);
      this.#fileSize = goodEnd;
      this.#file.syncDataSync();
    }
    this.#durable = this.position;
  }

  /** The segment being written. */
  get segmentPath(): string {
    return this.#segmentPath;
  }
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}
