/**
 * The sentinel row: what the operator steers (`startpos`, `endpos`, `apply`)
 * and how far the pipeline got (`write_lsn`, `flush_lsn`, `replay_lsn`).
 * LSNs are stored as `X/Y` text so that the catalog reads well in sqlite3.
 */
import type { DatabaseSync } from "node:sqlite";
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import { OperatorError } from "../errors.ts";
import type { Catalog } from "./catalog.ts";

/** The sentinel, with LSNs as numbers. */
export interface Sentinel {
  startpos: Lsn;
  endpos: Lsn;
  apply: boolean;
  writeLsn: Lsn;
  flushLsn: Lsn;
  replayLsn: Lsn;
}

/** The fields of the sentinel that change together in one update. */
export type SentinelPatch = Partial<Sentinel>;

const COLUMNS: Record<keyof Sentinel, string> = {
  startpos: "startpos",
  endpos: "endpos",
  apply: "apply",
  writeLsn: "write_lsn",
  flushLsn: "flush_lsn",
  replayLsn: "replay_lsn",
};

interface SentinelRow {
  startpos: string;
  endpos: string;
  apply: number;
  write_lsn: string;
  flush_lsn: string;
  replay_lsn: string;
}

/** Reads the sentinel; fails with a hint when it has not been set up. */
export function readSentinel(db: DatabaseSync): Sentinel {
  const row = db.prepare("select * from sentinel where id = 1").get() as SentinelRow | undefined;
  if (row === undefined) {
    throw new OperatorError("The sentinel has not been set up in this catalog", {
      hint:
        'run "pgferry stream sentinel setup", "pgferry stream setup" or "pgferry clone --follow" first',
    });
  }
  return {
    startpos: parseLsn(row.startpos),
    endpos: parseLsn(row.endpos),
    apply: row.apply !== 0,
    writeLsn: parseLsn(row.write_lsn),
    flushLsn: parseLsn(row.flush_lsn),
    replayLsn: parseLsn(row.replay_lsn),
  };
}

/** Creates (or replaces) the sentinel: apply off, progress positions at 0/0. */
export function setupSentinel(catalog: Catalog, startpos: Lsn, endpos: Lsn): Promise<Sentinel> {
  return catalog.write((db) => {
    db.prepare(
      "insert or replace into sentinel (id, startpos, endpos, apply, write_lsn, flush_lsn, replay_lsn) values (1, ?, ?, 0, '0/0', '0/0', '0/0')",
    ).run(formatLsn(startpos), formatLsn(endpos));
    return readSentinel(db);
  });
}

/** Changes some fields of the sentinel in one write transaction and returns the result. */
export function updateSentinel(catalog: Catalog, patch: SentinelPatch): Promise<Sentinel> {
  return catalog.write((db) => {
    readSentinel(db); // fails with a hint when there is none
    const keys = Object.keys(patch) as (keyof Sentinel)[];
    if (keys.length > 0) {
      const sets = keys.map((key) => `${COLUMNS[key]} = ?`).join(", ");
      const values = keys.map((key) => {
        const value = patch[key]!;
        return typeof value === "boolean" ? (value ? 1 : 0) : formatLsn(value);
      });
      db.prepare(`update sentinel set ${sets} where id = 1`).run(...values);
    }
    return readSentinel(db);
  });
}
