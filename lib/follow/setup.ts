/**
 * Setting up and tearing down what streaming needs: the source's slot (and,
 * for pgoutput, its publication), the target's replication origin advanced to
 * the slot's consistent point, and the sentinel's startpos.
 */
import type { Catalog } from "../catalog/catalog.ts";
import { setupSentinel, updateSentinel } from "../catalog/sentinel_store.ts";
import { OperatorError } from "../errors.ts";
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import { logger } from "../log.ts";
import { withConnection } from "../pg/connect.ts";
import { CopyConnection } from "../pg/copy_connection.ts";
import { quoteIdent, quoteLiteral } from "../pg/quote.ts";
import { type CreatedSlot, ReplicationConnection } from "../pg/replication.ts";
import { stripPassword } from "../pg/uri.ts";
import type { Plugin } from "./decoder_for.ts";

const log = logger("setup");

/** What `stream setup` records in the catalog, and what follow reads back. */
export interface StreamSetup {
  source: string;
  target: string;
  slot: string;
  origin: string;
  plugin: Plugin;
  publication: string;
  consistentPoint: Lsn;
  snapshot: string | null;
}

/** The setup recorded in the catalog, or undefined. */
export function readSetup(catalog: Catalog): Omit<StreamSetup, "source" | "target"> | undefined {
  const row = catalog.db.prepare(
    "select slot_name, origin, plugin, publication, consistent_point, snapshot from setup where id = 1",
  ).get() as Record<string, string | null> | undefined;
  // No origin name yet: a slot that "pgferry snapshot --follow" made, not set up (heldSlot()).
  if (row === undefined || row["slot_name"] === null || row["origin"] === null) return undefined;
  return {
    slot: row["slot_name"]!,
    origin: row["origin"]!,
    plugin: row["plugin"] as Plugin,
    publication: row["publication"]!,
    consistentPoint: parseLsn(row["consistent_point"] ?? "0/0"),
    snapshot: row["snapshot"] ?? null,
  };
}

/**
 * The slot that `pgferry snapshot --follow` created in this work directory and
 * that no stream has been set up with yet, or undefined. Setting up a stream
 * with that slot name uses it (and its consistent point) without --resume.
 */
export function heldSlot(
  catalog: Catalog,
): { slot: string; plugin: Plugin; consistentPoint: Lsn; snapshot: string | null } | undefined {
  const row = catalog.db.prepare(
    "select slot_name, plugin, consistent_point, snapshot from setup where id = 1 and origin is null",
  ).get() as Record<string, string | null> | undefined;
  if (row === undefined || row["slot_name"] === null || row["consistent_point"] === null) {
    return undefined;
  }
  return {
    slot: row["slot_name"]!,
    plugin: row["plugin"] as Plugin,
    consistentPoint: parseLsn(row["consistent_point"]!),
    snapshot: row["snapshot"] ?? null,
  };
}

// The steps a follow takes at every start use plain protocol connections:
// postgres.js costs ~60 ms to load, on the way to streaming.

async function slotExists(
  sql: CopyConnection,
  slot: string,
): Promise<{ plugin: string; confirmed: Lsn } | undefined> {
  const { rows: [row] } = await sql.query(
    `select plugin, coalesce(confirmed_flush_lsn, restart_lsn)::text
       from pg_catalog.pg_replication_slots where slot_name = ${quoteLiteral(slot)}`,
  );
  return row === undefined ? undefined : { plugin: row[0]!, confirmed: parseLsn(row[1]!) };
}

/**
 * Creates the slot with an exported snapshot on `replication` and returns it.
 * The snapshot stays valid while that connection is open and idle.
 */
export async function createSlot(
  replication: ReplicationConnection,
  slot: string,
  plugin: Plugin,
): Promise<CreatedSlot> {
  try {
    return await replication.createLogicalSlot(slot, plugin, { exportSnapshot: true });
  } catch (err) {
    if ((err as { code?: string }).code === "42710") {
      throw new OperatorError(`Replication slot "${slot}" already exists on the source`, {
        hint: 'pass --resume to use it, or run "pgferry stream cleanup" to drop it',
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Creates the pgoutput publication (for all tables) unless it exists. Call it
 * before creating the slot: pgoutput reads publications as of each change's
 * WAL position, so changes made before the publication existed cannot be
 * decoded ("publication … does not exist").
 */
export async function ensurePublication(source: string, publication: string): Promise<void> {
  await using sql = await CopyConnection.connect(source, { role: "source" });
  await ensurePublicationOn(sql, publication);
}

async function ensurePublicationOn(sql: CopyConnection, publication: string): Promise<void> {
  const found = await sql.query(
    `select 1 from pg_catalog.pg_publication where pubname = ${quoteLiteral(publication)}`,
  );
  if (found.rows.length === 0) {
    await sql.query(`create publication ${quoteIdent(publication)} for all tables`);
    log.info(`created publication "${publication}" for all tables`);
  }
}

/**
 * Everything but the slot and the publication: origin, sentinel, catalog
 * record. With `resume`, existing objects are reused.
 */
async function finishSetup(
  catalog: Catalog,
  servers: Servers,
  setup: StreamSetup,
  options: { resume: boolean; apply: boolean },
): Promise<void> {
  // Receive alone has no target: the origin is made by the first run that applies.
  if (servers.target !== undefined) await createOrigin(servers.target, setup, options.resume);
  await catalog.write((db) => {
    db.prepare(
      `insert or replace into setup (id, source_pguri, target_pguri, snapshot, plugin, slot_name, origin, publication, consistent_point)
       values (1, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      stripPassword(setup.source),
      stripPassword(setup.target),
      setup.snapshot,
      setup.plugin,
      setup.slot,
      setup.origin,
      setup.publication,
      formatLsn(setup.consistentPoint),
    );
  });
  const hasSentinel = catalog.db.prepare("select 1 from sentinel").get() !== undefined;
  if (!hasSentinel || !options.resume) {
    await setupSentinel(catalog, setup.consistentPoint, 0n);
  }
  if (options.apply) await updateSentinel(catalog, { apply: true });
}

/** Creates the target's replication origin at the consistent point (reused with `resume`). */
async function createOrigin(
  sql: CopyConnection,
  setup: StreamSetup,
  resume: boolean,
): Promise<void> {
  const origin = quoteLiteral(setup.origin);
  const found = await sql.query(
    `select 1 from pg_catalog.pg_replication_origin where roname = ${origin}`,
  );
  if (found.rows.length > 0 && !resume) {
    throw new OperatorError(`Replication origin "${setup.origin}" already exists on the target`, {
      hint: 'pass --resume to continue from its progress, or run "pgferry stream cleanup"',
    });
  }
  if (found.rows.length === 0) {
    await sql.query(
      `select pg_catalog.pg_replication_origin_create(${origin}); select pg_catalog.pg_replication_origin_advance(${origin}, ${
        quoteLiteral(formatLsn(setup.consistentPoint))
      }::pg_lsn)`,
    );
    log.info(`created origin "${setup.origin}" at ${formatLsn(setup.consistentPoint)}`);
  }
}

/** Creates slot, publication, origin and sentinel (`stream setup`, `follow`). */
export async function setupStream(
  catalog: Catalog,
  wanted: Omit<StreamSetup, "consistentPoint" | "snapshot">,
  options: { resume: boolean; apply: boolean },
): Promise<StreamSetup> {
  await using servers = await connectServers(wanted.source, wanted.target);
  const existing = await slotExists(servers.source, wanted.slot);
  let setup: StreamSetup;
  const held = heldSlot(catalog);
  if (existing !== undefined) {
    if (!options.resume && held?.slot !== wanted.slot) {
      throw new OperatorError(`Replication slot "${wanted.slot}" already exists on the source`, {
        hint: 'pass --resume to continue with it, or run "pgferry stream cleanup" to drop it',
      });
    }
    if (existing.plugin !== wanted.plugin) {
      throw new OperatorError(
        `Replication slot "${wanted.slot}" uses plugin "${existing.plugin}", not "${wanted.plugin}"`,
        {
          hint: `pass --plugin ${existing.plugin}, or drop the slot with "pgferry stream cleanup"`,
        },
      );
    }
    const recorded = readSetup(catalog);
    const made = held?.slot === wanted.slot ? held : undefined;
    setup = {
      ...wanted,
      consistentPoint: recorded?.consistentPoint ?? made?.consistentPoint ?? existing.confirmed,
      snapshot: recorded?.snapshot ?? made?.snapshot ?? null,
    };
    if (wanted.plugin === "pgoutput") await ensurePublicationOn(servers.source, wanted.publication);
    log.info(`reusing slot "${wanted.slot}"`);
  } else {
    if (wanted.plugin === "pgoutput") await ensurePublicationOn(servers.source, wanted.publication);
    await using replication = await ReplicationConnection.connect(wanted.source);
    const created = await createSlot(replication, wanted.slot, wanted.plugin);
    log.info(`created slot "${wanted.slot}" at ${formatLsn(created.consistentPoint)}`);
    setup = { ...wanted, consistentPoint: created.consistentPoint, snapshot: created.snapshotName };
  }
  await finishSetup(catalog, servers, setup, options);
  return setup;
}

/** A connection to the source, and to the target unless there is none (receive alone). */
interface Servers extends AsyncDisposable {
  source: CopyConnection;
  target: CopyConnection | undefined;
}

/**
 * Connects to both servers at once: each connection costs more than the few
 * queries of the setup, and follow waits for them on the way to streaming.
 */
async function connectServers(source: string, target: string): Promise<Servers> {
  const [s, t] = await Promise.allSettled([
    CopyConnection.connect(source, { role: "source" }),
    target === "" ? undefined : CopyConnection.connect(target, { role: "target" }),
  ]);
  if (s.status === "rejected" || t.status === "rejected") {
    for (const r of [s, t]) if (r.status === "fulfilled") await r.value?.close();
    throw s.status === "rejected" ? s.reason : (t as PromiseRejectedResult).reason;
  }
  return {
    source: s.value,
    target: t.value,
    async [Symbol.asyncDispose]() {
      await Promise.all([s.value.close(), t.value?.close()]);
    },
  };
}

/** Drops the slot, the publication (when pgferry made it) and the origin. Missing ones are fine. */
export async function cleanupStream(
  source: string,
  target: string | undefined,
  names: { slot: string; origin: string; publication: string },
): Promise<void> {
  await withConnection(source, "source", async (sql) => {
    const [slot] = await sql`
      select active_pid from pg_replication_slots where slot_name = ${names.slot}`;
    if (slot !== undefined) {
      if (slot["active_pid"] !== null) {
        await sql`select pg_terminate_backend(${slot["active_pid"] as number})`;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await sql`select pg_drop_replication_slot(${names.slot})`;
      log.info(`dropped slot "${names.slot}"`);
    }
    await sql.unsafe(`drop publication if exists ${quoteIdent(names.publication)}`);
  });
  if (target !== undefined) {
    await withConnection(target, "target", async (sql) => {
      const [found] = await sql`select 1 from pg_replication_origin where roname = ${names.origin}`;
      if (found !== undefined) {
        await sql`select pg_replication_origin_drop(${names.origin})`;
        log.info(`dropped origin "${names.origin}"`);
      }
    });
  }
}
