/**
 * Disk retention, run from the supervisor's loop: prunes the spool up to
 * replay_lsn every interval, and warns when the spool or the WAL that the
 * source's slot holds back grows past a threshold (the two ways a long
 * migration fills a disk).
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel } from "../catalog/sentinel_store.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { formatLsn } from "../lsn.ts";
import { withConnection } from "../pg/connect.ts";
import { readSlotUsage } from "../pg/slot_usage.ts";
import { pruneSpool } from "../spool/prune.ts";
import { spoolUsage } from "../spool/usage.ts";

const log = logger("retention");

/** The operator's knobs. */
export interface RetentionOptions {
  /** How often to prune and check (default 30 s). 0: never prune automatically (checks every 30 s). */
  intervalMs?: number | undefined;
  /** Warn when the spool's files pass this many bytes (default 10 GiB). */
  spoolWarnBytes?: number | undefined;
  /** Warn when the slot's retained WAL passes this many bytes (default 10 GiB). */
  slotWarnBytes?: number | undefined;
}

export interface RetentionContext {
  dir: string;
  catalog: Catalog;
  /** The source and its slot, for the retained-WAL check. */
  source: string;
  slot: string;
}

const DEFAULT_INTERVAL_MS = 30_000;
const DEFAULT_WARN_BYTES = 10 * 2 ** 30;
/** A warning that still holds is repeated this often, not every interval. */
const REPEAT_WARNING_MS = 10 * 60_000;

/** Periodic pruning and size warnings; `tick()` from a loop, `close()` at the end. */
export class Retention {
  readonly #context: RetentionContext;
  readonly #prune: boolean;
  readonly #intervalMs: number;
  readonly #spoolWarn: number;
  readonly #slotWarn: number;
  #lastRun = 0;
  #running: Promise<void> | undefined;
  #warned = { spool: 0, slot: 0, query: false };

  constructor(context: RetentionContext, options: RetentionOptions = {}) {
    this.#context = context;
    this.#prune = options.intervalMs !== 0;
    this.#intervalMs = options.intervalMs || DEFAULT_INTERVAL_MS;
    this.#spoolWarn = options.spoolWarnBytes ?? DEFAULT_WARN_BYTES;
    this.#slotWarn = options.slotWarnBytes ?? DEFAULT_WARN_BYTES;
  }

  /** Starts a round in the background when one is due and none is under way. */
  tick(): void {
    if (this.#running !== undefined || Date.now() - this.#lastRun < this.#intervalMs) return;
    this.#lastRun = Date.now();
    this.#running = this.#round()
      .catch((err) => log.warn(`spool retention failed: ${errorMessage(err)}`))
      .finally(() => (this.#running = undefined));
  }

  /** Waits for the round under way, if any. */
  async close(): Promise<void> {
    await this.#running;
  }

  async #round(): Promise<void> {
    const { dir, catalog } = this.#context;
    if (this.#prune) {
      const replayLsn = readSentinel(catalog.db).replayLsn;
      const pruned = await pruneSpool(dir, replayLsn);
      if (pruned.filesDeleted > 0n) {
        log.info(
          `pruned ${pruned.filesDeleted} spool files up to replay_lsn ${formatLsn(replayLsn)}`,
          {
            bytes: pruned.bytesFreed,
          },
        );
      }
    }
    const spool = await spoolUsage(dir);
    if (this.#due("spool", spool.bytes > this.#spoolWarn)) {
      log.warn(
        `the spool holds ${spool.bytes} bytes in ${spool.files} files, more than ${this.#spoolWarn}`,
        { hint: "apply is behind or off (prefetch): check stream sentinel get / pgferry status" },
      );
    }
    await this.#checkSlot();
  }

  async #checkSlot(): Promise<void> {
    const { source, slot } = this.#context;
    let retained: bigint | undefined;
    try {
      const usage = await withConnection(source, "source", (sql) => readSlotUsage(sql, slot));
      retained = usage.slot?.retainedBytes;
      this.#warned.query = false;
    } catch (err) {
      if (!this.#warned.query) {
        log.warn(`cannot read the retained WAL of slot "${slot}": ${errorMessage(err)}`);
        this.#warned.query = true;
      }
      return;
    }
    if (this.#due("slot", retained !== undefined && retained > BigInt(this.#slotWarn))) {
      log.warn(
        `slot "${slot}" retains ${retained} bytes of WAL on the source, more than ${this.#slotWarn}`,
        { hint: "receive is behind or stopped; the source's disk fills until it catches up" },
      );
    }
  }

  /** Whether to warn now: on crossing the threshold, then every REPEAT_WARNING_MS while above. */
  #due(what: "spool" | "slot", above: boolean): boolean {
    if (!above) {
      if (this.#warned[what] !== 0) log.info(`the ${what} is back under its warning size`);
      this.#warned[what] = 0;
      return false;
    }
    if (Date.now() - this.#warned[what] < REPEAT_WARNING_MS) return false;
    this.#warned[what] = Date.now();
    return true;
  }
}
