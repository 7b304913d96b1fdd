/**
 * The apply watchdog, run from the supervisor's loop: when replay_lsn has not
 * moved for the stall timeout while write_lsn is past it, and the apply stage
 * gave no sign of life meanwhile (a completed round trip to the target, or an
 * empty spool to wait on), apply is stuck — a lock on a target table, a hung
 * connection. The watchdog says so (a warning, `<dir>/apply.stalled` for
 * `pgferry status`, the `pgferry_apply_stalled` metric) and asks for the stage
 * to be restarted. The stall ends when replay_lsn moves again.
 *
 * A stage stalled again right after its restart gets twice as long each time
 * (up to 32 ×): a statement that is merely slow is not cut off for ever.
 */
import { join } from "node:path";
import type { Sentinel } from "../catalog/sentinel_store.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import { logger } from "../log.ts";

const log = logger("watchdog");

/** What `<dir>/apply.stalled` holds while apply is stalled. */
export interface Stall {
  /** When replay_lsn last moved (ISO 8601). */
  since: string;
  replayLsn: Lsn;
  /** The stall timeout, in seconds. */
  timeoutSeconds: number;
  /** How many times the watchdog restarted apply during this stall. */
  restarts: number;
}

/** Where the stall of `dir`'s apply stage is written while it lasts. */
export function stallPath(dir: string): string {
  return join(dir, "apply.stalled");
}

/** The stall written in `dir`, if any (only meaningful while the apply stage runs). */
export async function readStall(dir: string): Promise<Stall | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(stallPath(dir));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const json = JSON.parse(text);
  return { ...json, replayLsn: BigInt(json.replayLsn) };
}

const MAX_DOUBLINGS = 5;

/** Watches replay_lsn; `check()` on each tick says when apply must be restarted. */
export class Watchdog {
  readonly #dir: string;
  readonly #timeoutMs: number;
  #replay: Lsn | undefined;
  #movedAt = Date.now();
  #aliveAt = Date.now();
  #strikes = 0;
  #stall: Stall | undefined;

  /** `timeoutMs` 0 disables the watchdog. */
  constructor(dir: string, timeoutMs: number) {
    this.#dir = dir;
    this.#timeoutMs = timeoutMs;
    removeStall(dir); // left by a process that died
  }

  /** Whether apply is stalled now. */
  get stalled(): boolean {
    return this.#stall !== undefined;
  }

  /** The apply stage got on with its work, or found none to do; or it was (re)started. */
  alive(now = Date.now()): void {
    this.#aliveAt = now;
  }

  /** True when apply is stuck and should be restarted now. */
  check(sentinel: Sentinel, now = Date.now()): boolean {
    if (sentinel.replayLsn !== this.#replay) {
      this.#replay = sentinel.replayLsn;
      this.#movedAt = now;
      this.#strikes = 0;
      if (this.#stall !== undefined) {
        log.info(`apply moves again: replay_lsn ${formatLsn(sentinel.replayLsn)}`);
        this.#stall = undefined;
        removeStall(this.#dir);
      }
      return false;
    }
    if (this.#timeoutMs === 0 || !sentinel.apply || sentinel.writeLsn <= sentinel.replayLsn) {
      this.#movedAt = now; // nothing to apply, or not asked to: not stuck
      return false;
    }
    const quietMs = now - Math.max(this.#movedAt, this.#aliveAt);
    if (quietMs < this.#timeoutMs * 2 ** Math.min(this.#strikes, MAX_DOUBLINGS)) return false;
    this.#strikes++;
    const seconds = Math.round((now - this.#movedAt) / 1000);
    this.#stall = {
      since: this.#stall?.since ?? new Date(this.#movedAt).toISOString(),
      replayLsn: sentinel.replayLsn,
      timeoutSeconds: this.#timeoutMs / 1000,
      restarts: (this.#stall?.restarts ?? 0) + 1,
    };
    log.warn(
      `apply is stalled: replay_lsn ${
        formatLsn(sentinel.replayLsn)
      } has not moved for ${seconds} s while write_lsn is ${
        formatLsn(sentinel.writeLsn)
      }: restarting the apply stage`,
      {
        restarts: this.#stall.restarts,
        hint: "look for a lock or a long statement on the target (pg_stat_activity, pg_locks)",
      },
    );
    writeStall(this.#dir, this.#stall);
    return true;
  }

  /** Forgets the stall file (the process is stopping). */
  close(): void {
    removeStall(this.#dir);
  }
}

function writeStall(dir: string, stall: Stall): void {
  const text = JSON.stringify({ ...stall, replayLsn: stall.replayLsn.toString() });
  const temp = `${stallPath(dir)}.tmp`;
  Deno.writeTextFileSync(temp, text);
  Deno.renameSync(temp, stallPath(dir)); // a reader never sees half a file
}

function removeStall(dir: string): void {
  try {
    Deno.removeSync(stallPath(dir));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
