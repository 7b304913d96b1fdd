/**
 * Catalog backup and restore, safe while the pipeline runs.
 *
 * Backup is `VACUUM INTO` on a read-only connection: one read transaction, so
 * the copy is a consistent snapshot even while the workers write (WAL mode),
 * and it takes no write lock. It is written next to FILE and renamed into
 * place once complete and synced, so FILE is never half a backup.
 *
 * Restore checks the file (`PRAGMA quick_check`, a schema version this pgferry
 * knows), then copies it into `<dir>/catalog.db` with SQLite's online backup
 * API under the catalog write lock: the copy goes through SQLite's own
 * journal, so a crash leaves the old catalog or the new one, and open readers
 * see one or the other. An older schema version is migrated at the next open.
 */
import { backup, DatabaseSync } from "node:sqlite";
import { basename, dirname, join } from "node:path";
import { errorMessage, OperatorError } from "../errors.ts";
import { catalogLockPath, catalogPath } from "./catalog.ts";
import { SCHEMA_VERSION } from "./schema.ts";

const BUSY_TIMEOUT_MS = 30_000;
const SQLITE_CORRUPT = 11;

/** What a checked catalog file is. */
export interface CatalogFileInfo {
  path: string;
  bytes: number;
  schemaVersion: number;
}

/** Copies the live catalog of `dir` to `file` (which must not exist). */
export async function backupCatalog(dir: string, file: string): Promise<CatalogFileInfo> {
  const live = catalogPath(dir);
  if (!(await exists(live))) {
    throw new OperatorError(`No catalog to back up in "${dir}": "${live}" does not exist`, {
      hint: "pass the --dir (PGFERRY_DIR) of the pgferry run to back up",
    });
  }
  if (await exists(file)) {
    throw new OperatorError(`Cannot back up the catalog to "${file}": the file exists`, {
      hint: "choose a new file name, or remove the old backup first",
    });
  }
  const partial = join(dirname(file), `.${basename(file)}.partial-${Deno.pid}`);
  const db = new DatabaseSync(live, { readOnly: true });
  try {
    db.exec(`pragma busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.prepare("vacuum into ?").run(partial);
  } catch (err) {
    await Deno.remove(partial).catch(() => {});
    throw new OperatorError(`Cannot back up "${live}" to "${file}": ${errorMessage(err)}`, {
      cause: err,
    });
  } finally {
    db.close();
  }
  try {
    await checkCatalogFile(partial);
    await syncFile(partial);
    await Deno.rename(partial, file);
    await syncFile(dirname(file)).catch(() => {}); // the rename, where directories can be synced
  } catch (err) {
    await Deno.remove(partial).catch(() => {});
    throw err;
  }
  return await checkCatalogFile(file);
}

export interface RestoreOptions {
  /** Runs under the catalog write lock just before the catalog is replaced: throw to refuse. */
  beforeReplace?: () => Promise<void>;
}

/** What a restore did. */
export interface RestoreResult extends CatalogFileInfo {
  /** Where the old catalog was moved when SQLite could not write over it (it was damaged). */
  movedAside: string | undefined;
}

/** Puts the catalog backup `file` in place as the catalog of `dir`, after checking it. */
export async function restoreCatalog(
  dir: string,
  file: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  await checkCatalogFile(file);
  await Deno.mkdir(dir, { recursive: true });
  const live = catalogPath(dir);
  const lock = await Deno.open(catalogLockPath(dir), { read: true, write: true, create: true });
  try {
    await lock.lock(true);
    await options.beforeReplace?.();
    let movedAside: string | undefined;
    const source = openChecked(file); // checked again: this connection is what gets copied
    try {
      try {
        await backup(source, live);
      } catch (err) {
        if (!(await exists(live))) throw err;
        // SQLite cannot write over the old catalog (damaged): keep it aside and start afresh.
        movedAside = `${live}.damaged-${new Date().toISOString().replace(/[:.]/g, "-")}`;
        await Deno.rename(live, movedAside);
        for (const suffix of ["-wal", "-shm"]) {
          await Deno.rename(live + suffix, movedAside + suffix).catch(() => {});
        }
        await backup(source, live);
      }
    } catch (err) {
      throw new OperatorError(`Cannot restore "${file}" into "${live}": ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      source.close();
    }
    return { ...(await checkCatalogFile(live)), movedAside };
  } finally {
    lock.close(); // drops the lock
  }
}

/** Checks that `path` is an intact pgferry catalog this release can open. */
export async function checkCatalogFile(path: string): Promise<CatalogFileInfo> {
  let bytes: number;
  try {
    bytes = (await Deno.stat(path)).size;
  } catch (err) {
    throw new OperatorError(`Cannot read the catalog file "${path}": ${errorMessage(err)}`, {
      cause: err,
    });
  }
  const db = openChecked(path);
  try {
    return { path, bytes, schemaVersion: schemaVersionOf(db, path) };
  } finally {
    db.close();
  }
}

/** Opens `path` read-only and runs quick_check and the version check on it. */
function openChecked(path: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    db.exec(`pragma busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const problems = (db.prepare("pragma quick_check").all() as { quick_check: string }[])
      .map((row) => row.quick_check.replace(/\s*\n\s*/g, " "))
      .filter((line) => line !== "ok");
    if (problems.length > 0) {
      throw new OperatorError(
        `The catalog file "${path}" is damaged: quick_check says ${
          problems.slice(0, 3).join("; ")
        }`,
        { hint: "restore an earlier backup" },
      );
    }
    schemaVersionOf(db, path);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof OperatorError) throw err;
    if ((err as { errcode?: number }).errcode === SQLITE_CORRUPT) {
      throw new OperatorError(`The catalog file "${path}" is damaged: ${errorMessage(err)}`, {
        hint: "restore an earlier backup",
        cause: err,
      });
    }
    throw new OperatorError(`The file "${path}" is not a usable catalog: ${errorMessage(err)}`, {
      hint: 'give a file written by "pgferry catalog backup"',
      cause: err,
    });
  }
}

function schemaVersionOf(db: DatabaseSync, path: string): number {
  const table = db.prepare(
    "select 1 from sqlite_master where type = 'table' and name = 'schema_version'",
  ).get();
  if (table === undefined) {
    throw new OperatorError(
      `The file "${path}" is not a pgferry catalog: it has no schema_version`,
      {
        hint: 'give a file written by "pgferry catalog backup"',
      },
    );
  }
  const row = db.prepare("select version from schema_version").get() as
    | { version: number }
    | undefined;
  const version = Number(row?.version ?? 0);
  if (version > SCHEMA_VERSION) {
    throw new OperatorError(
      `The catalog file "${path}" has schema version ${version}, newer than this pgferry knows (${SCHEMA_VERSION})`,
      { hint: "restore it with the pgferry release that wrote it, or a newer one" },
    );
  }
  return version;
}

async function syncFile(path: string): Promise<void> {
  const file = await Deno.open(path, { read: true });
  try {
    await file.sync();
  } finally {
    file.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
