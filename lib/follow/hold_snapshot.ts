/**
 * `pgferry snapshot`: export a snapshot of the source, record it in the
 * catalog, and hold it until told to stop, so that other commands (clone, or
 * its steps run one by one) can `SET TRANSACTION SNAPSHOT` to it.
 *
 * - Without a slot: `pg_export_snapshot()` in a REPEATABLE READ, READ ONLY
 *   transaction on an ordinary connection; the snapshot lives as long as that
 *   transaction.
 * - With a slot (`--follow`): `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` on a
 *   replication connection, the only snapshot that a later stream can start
 *   from without losing or repeating a change. It lives while that connection
 *   stays idle. The slot is recorded so that `stream setup`, `follow` and
 *   `stream receive` in the same work directory use it instead of making one.
 */
import type { Catalog } from "../catalog/catalog.ts";
import { formatLsn } from "../lsn.ts";
import { logger } from "../log.ts";
import { connect } from "../pg/connect.ts";
import { ReplicationConnection } from "../pg/replication.ts";
import { stripPassword } from "../pg/uri.ts";
import type { Plugin } from "./decoder_for.ts";
import { createSlot, ensurePublication } from "./setup.ts";

const log = logger("snapshot");

/** How often a held plain snapshot checks that its session is still there. */
const CHECK_MS = 10_000;

// Sessions that hold a snapshot sit idle inside a transaction for hours.
const NO_TIMEOUTS = { idle_in_transaction_session_timeout: "0", statement_timeout: "0" };

export interface HoldSnapshotOptions {
  catalog: Catalog;
  source: string;
  /** Create this logical replication slot and hold its exported snapshot. */
  slot?: { name: string; plugin: Plugin; publication: string } | undefined;
  /** Release the snapshot and return when this aborts. */
  signal: AbortSignal;
  /** Called once the snapshot is exported and recorded, with its id. */
  onSnapshot: (snapshot: string) => void;
}

/** Exports a snapshot, records it, and holds it until `signal` aborts. */
export async function holdSnapshot(options: HoldSnapshotOptions): Promise<void> {
  if (options.slot !== undefined) return await holdSlotSnapshot(options, options.slot);
  const sql = await connect(options.source, { role: "source" });
  try {
    await sql.begin("isolation level repeatable read read only", async (tx) => {
      await tx.unsafe("set local idle_in_transaction_session_timeout = 0");
      const [row] = await tx`select pg_export_snapshot() as snapshot`;
      const snapshot = row!["snapshot"] as string;
      await options.catalog.write((db) => {
        db.prepare(
          `insert into setup (id, source_pguri, snapshot) values (1, ?, ?)
           on conflict (id) do update set source_pguri = excluded.source_pguri,
                                          snapshot = excluded.snapshot`,
        ).run(stripPassword(options.source), snapshot);
      });
      log.info(`exported snapshot "${snapshot}"`);
      options.onSnapshot(snapshot);
      // A query inside the exporting transaction keeps the snapshot valid and
      // notices a lost session, which would have taken the snapshot with it.
      while (!options.signal.aborted) {
        await untilAborted(options.signal, CHECK_MS);
        if (!options.signal.aborted) await tx`select 1`;
      }
    });
  } finally {
    await sql.end({ timeout: 5 });
  }
  log.info("released the snapshot");
}

async function holdSlotSnapshot(
  options: HoldSnapshotOptions,
  slot: { name: string; plugin: Plugin; publication: string },
): Promise<void> {
  if (slot.plugin === "pgoutput") await ensurePublication(options.source, slot.publication);
  await using replication = await ReplicationConnection.connect(options.source, {
    parameters: { ...NO_TIMEOUTS, application_name: "pgferry snapshot" },
  });
  const created = await createSlot(replication, slot.name, slot.plugin);
  const snapshot = created.snapshotName ?? "";
  await options.catalog.write((db) => {
    // origin stays null: "a slot made by pgferry snapshot, not yet set up" (see heldSlot()).
    db.prepare(
      `insert or replace into setup (id, source_pguri, snapshot, plugin, slot_name, origin, publication, consistent_point)
       values (1, ?, ?, ?, ?, null, ?, ?)`,
    ).run(
      stripPassword(options.source),
      snapshot,
      slot.plugin,
      slot.name,
      slot.publication,
      formatLsn(created.consistentPoint),
    );
  });
  log.info(
    `created slot "${slot.name}" at ${formatLsn(created.consistentPoint)}, snapshot "${snapshot}"`,
  );
  options.onSnapshot(snapshot);
  // Any command on this connection would end the snapshot: just wait.
  await untilAborted(options.signal);
  log.info("released the snapshot");
}

/** Resolves when `signal` aborts, or after `ms` milliseconds when given. */
function untilAborted(signal: AbortSignal, ms?: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
