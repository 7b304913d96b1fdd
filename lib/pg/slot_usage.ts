/**
 * How much WAL a replication slot holds back on the source: what fills the
 * source's disk when the pipeline stops or falls behind.
 */
import { type Lsn, parseLsn } from "../lsn.ts";
import type { Sql } from "./connect.ts";

/** The source's position and one slot's, read together. */
export interface SlotUsage {
  /** pg_current_wal_lsn() (the last received position on a standby). */
  currentLsn: Lsn;
  slot?: {
    active: boolean;
    restartLsn: Lsn | undefined;
    confirmedFlushLsn: Lsn | undefined;
    /** current - restart_lsn: the WAL the slot keeps the source from recycling. */
    retainedBytes: bigint | undefined;
  };
}

/** Reads the source's current WAL position and the slot named `slot`, if it exists. */
export async function readSlotUsage(sql: Sql, slot: string): Promise<SlotUsage> {
  const [row] = await sql`
    select (case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_lsn() end)::text as current,
           s.active, s.restart_lsn::text as restart, s.confirmed_flush_lsn::text as confirmed
      from (select 1) one left join pg_replication_slots s on s.slot_name = ${slot}`;
  const currentLsn = parseLsn(String(row!["current"]));
  if (row!["active"] === null || row!["active"] === undefined) return { currentLsn };
  const lsn = (value: unknown) => (typeof value === "string" ? parseLsn(value) : undefined);
  const restartLsn = lsn(row!["restart"]);
  return {
    currentLsn,
    slot: {
      active: row!["active"] === true,
      restartLsn,
      confirmedFlushLsn: lsn(row!["confirmed"]),
      retainedBytes: restartLsn === undefined || restartLsn > currentLsn
        ? undefined
        : currentLsn - restartLsn,
    },
  };
}
