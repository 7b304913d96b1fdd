/**
 * Copying one table part: `COPY … TO STDOUT` inside the clone's snapshot on
 * the source, piped byte for byte into `COPY … FROM STDIN` on the target.
 *
 * A table copied in one part is truncated in the same transaction as its COPY,
 * which lets the COPY use FREEZE (rows land frozen and all-visible: the later
 * VACUUM has nothing to rewrite) and makes a retried copy start clean. Parts of
 * a split table share one TRUNCATE done before the first; a part retried after
 * a crash deletes its own key range first.
 */
import { type CopyConnection, type CopyCount, pipeCopy } from "../pg/copy_connection.ts";
import { quoteIdent, quoteLiteral } from "../pg/quote.ts";
import type { SourceTable } from "./inventory.ts";
import { sqlName } from "./inventory.ts";

/** One COPY of a table or of one of its parts. */
export interface CopyPartSpec {
  table: SourceTable;
  /** WHERE clause of the part; null for the whole table. */
  where: string | null;
  format: "text" | "binary";
  /** Truncate in the COPY's transaction and COPY with FREEZE (whole tables only). */
  truncate: boolean;
  /** Delete the part's rows first (a split part retried after a crash). */
  deleteFirst: boolean;
  /** The snapshot to read in; undefined reads the current data. */
  snapshot: string | undefined;
  /** Hears the bytes passed so far. */
  onProgress?: (bytes: number) => void;
}

/** The column list COPY names, or "" for a table without (non-generated) columns. */
function columnList(table: SourceTable): string {
  return table.columns.length === 0 ? "" : ` (${table.columns.map(quoteIdent).join(", ")})`;
}

/** `COPY … TO STDOUT` for a part. */
export function copyOutSql(table: SourceTable, where: string | null, format: string): string {
  const options = format === "binary" ? " with (format binary)" : "";
  if (where === null) return `copy ${sqlName(table)}${columnList(table)} to stdout${options}`;
  const columns = table.columns.map(quoteIdent).join(", ");
  return `copy (select ${columns} from only ${sqlName(table)} where ${where}) to stdout${options}`;
}

/** `COPY … FROM STDIN` for a part. */
export function copyInSql(table: SourceTable, format: string, freeze: boolean): string {
  const options = [format === "binary" ? "format binary" : "", freeze ? "freeze" : ""].filter(
    Boolean,
  );
  return `copy ${sqlName(table)}${columnList(table)} from stdin${
    options.length > 0 ? ` with (${options.join(", ")})` : ""
  }`;
}

/** Starts a read-only transaction in `snapshot` (or a plain one without). */
export async function beginInSnapshot(
  source: CopyConnection,
  snapshot: string | undefined,
): Promise<void> {
  await source.query(
    `begin isolation level repeatable read read only${
      snapshot === undefined ? "" : `; set transaction snapshot ${quoteLiteral(snapshot)}`
    }`,
  );
}

/** Rolls back whatever transaction a failed step left open, when the connection still works. */
export async function rollbackQuietly(connection: CopyConnection): Promise<void> {
  if (!connection.usable) return;
  try {
    await connection.query("rollback");
  } catch {
    // the connection is broken: the server rolls back on its own
  }
}

/** Copies one part; the target commits only when every row is in. */
export async function copyTablePart(
  source: CopyConnection,
  target: CopyConnection,
  spec: CopyPartSpec,
): Promise<CopyCount> {
  const table = spec.table;
  try {
    await beginInSnapshot(source, spec.snapshot);
    const prelude = ["begin"];
    if (spec.truncate) prelude.push(`truncate only ${sqlName(table)}`);
    else if (spec.deleteFirst && spec.where !== null) {
      prelude.push(`delete from only ${sqlName(table)} where ${spec.where}`);
    }
    await target.query(prelude.join("; "));
    const count = await pipeCopy(
      source,
      copyOutSql(table, spec.where, spec.format),
      target,
      copyInSql(table, spec.format, spec.truncate),
      spec.onProgress,
    );
    await target.query("commit");
    await source.query("commit");
    return count;
  } catch (err) {
    await rollbackQuietly(target);
    await rollbackQuietly(source);
    throw err;
  }
}
