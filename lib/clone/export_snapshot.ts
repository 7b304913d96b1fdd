/**
 * The clone's snapshot: `pg_export_snapshot()` in a REPEATABLE READ, READ ONLY
 * transaction on a connection that stays open (and idle) while pg_dump and the
 * COPY jobs `SET TRANSACTION SNAPSHOT` to it.
 */
import { CopyConnection } from "../pg/copy_connection.ts";
import { quoteLiteral } from "../pg/quote.ts";

/** An exported snapshot; `release()` ends the transaction that holds it. */
export interface HeldSnapshot extends AsyncDisposable {
  snapshot: string;
  release(): Promise<void>;
}

const HOLDER_SETTINGS = {
  application_name: "pgferry clone snapshot",
  idle_in_transaction_session_timeout: "0",
  statement_timeout: "0",
};

/** Exports a snapshot of the source and holds it. */
export async function exportSnapshot(source: string): Promise<HeldSnapshot> {
  const connection = await CopyConnection.connect(source, {
    role: "source",
    parameters: HOLDER_SETTINGS,
  });
  try {
    const result = await connection.query(
      "begin isolation level repeatable read read only; select pg_catalog.pg_export_snapshot()",
    );
    const snapshot = result.rows[0]?.[0];
    if (!snapshot) throw new TypeError("pg_export_snapshot() returned nothing");
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      try {
        await connection.query("commit");
      } finally {
        await connection.close();
      }
    };
    return { snapshot, release, [Symbol.asyncDispose]: release };
  } catch (err) {
    await connection.close();
    throw err;
  }
}

/** True when `snapshot` can still be imported (its exporting transaction is alive). */
export async function snapshotUsable(source: string, snapshot: string): Promise<boolean> {
  await using connection = await CopyConnection.connect(source, { role: "source" });
  try {
    await connection.query(
      `begin isolation level repeatable read read only; set transaction snapshot ${
        quoteLiteral(snapshot)
      }; commit`,
    );
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === "22023") return false;
    throw err;
  }
}
