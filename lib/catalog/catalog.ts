/**
 * The SQLite catalog, `<dir>/catalog.db`.
 *
 * Every writer, in any Worker or any separate process, holds an exclusive
 * flock on `<dir>/catalog.lock` around its write transaction; creating and
 * migrating the schema happens under the same lock. Readers need no lock (WAL).
 * Each connection sets `busy_timeout` before anything else, so that the first
 * statements of concurrent openers wait instead of failing "database is locked".
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { OperatorError } from "../errors.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "./schema.ts";

const BUSY_TIMEOUT_MS = 30_000;

export interface OpenOptions {
  /** Create the directory and the catalog when missing (default: fail with a hint). */
  create?: boolean;
}

/** An open catalog: one SQLite connection and this thread's handle on the write lock. */
export class Catalog {
  readonly dir: string;
  readonly db: DatabaseSync;
  readonly #lockFile: Deno.FsFile;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, db: DatabaseSync, lockFile: Deno.FsFile) {
    this.dir = dir;
    this.db = db;
    this.#lockFile = lockFile;
  }

  /** Opens `<dir>/catalog.db`, creating or migrating its schema under the write lock. */
  static async open(dir: string, options: OpenOptions = {}): Promise<Catalog> {
    const path = catalogPath(dir);
    if (!options.create && !(await exists(path))) {
      throw new OperatorError(`No catalog in "${dir}": "${path}" does not exist`, {
        hint:
          'run "pgferry stream sentinel setup" or "pgferry clone" with this --dir first, or pass the --dir (PGFERRY_DIR) of the running pgferry',
      });
    }
    await Deno.mkdir(dir, { recursive: true });
    const lockFile = await Deno.open(catalogLockPath(dir), {
      read: true,
      write: true,
      create: true,
    });
    await lockFile.lock(true);
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path);
      db.exec(`pragma busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.exec("pragma journal_mode = wal");
      db.exec("pragma synchronous = normal");
      migrate(db, path);
    } catch (err) {
      db?.close();
      lockFile.close();
      throw err;
    } finally {
      await lockFile.unlock().catch(() => {});
    }
    return new Catalog(dir, db, lockFile);
  }

  /**
   * Runs `fn` in one write transaction under the catalog write lock. Calls from
   * the same thread queue up; other threads and processes wait on the flock.
   */
  write<T>(fn: (db: DatabaseSync) => T): Promise<T> {
    const run = async () => {
      await this.#lockFile.lock(true);
      try {
        this.db.exec("begin immediate");
        try {
          const result = fn(this.db);
          this.db.exec("commit");
          return result;
        } catch (err) {
          if (this.db.isTransaction) this.db.exec("rollback");
          throw err;
        }
      } finally {
        await this.#lockFile.unlock();
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Records what a command did, for the operator's audit trail. */
  log(command: string, detail: string): Promise<void> {
    return this.write((db) => {
      db.prepare("insert into command_log (command, detail) values (?, ?)").run(command, detail);
    });
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
    try {
      this.#lockFile.close();
    } catch {
      // already closed
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Where the catalog of a work directory lives. */
export function catalogPath(dir: string): string {
  return join(dir, "catalog.db");
}

/** The file whose flock serialises the catalog's writers. */
export function catalogLockPath(dir: string): string {
  return join(dir, "catalog.lock");
}

function migrate(db: DatabaseSync, path: string): void {
  db.exec("create table if not exists schema_version (version integer not null)");
  const row = db.prepare("select version from schema_version").get() as
    | { version: number }
    | undefined;
  const version = row?.version ?? 0;
  if (version > SCHEMA_VERSION) {
    throw new OperatorError(
      `Catalog "${path}" has schema version ${version}, newer than this pgferry knows (${SCHEMA_VERSION})`,
      { hint: "use the pgferry release that created this catalog, or a newer one" },
    );
  }
  if (version === SCHEMA_VERSION) return;
  db.exec("begin immediate");
  try {
    for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
    db.exec("delete from schema_version");
    db.prepare("insert into schema_version (version) values (?)").run(SCHEMA_VERSION);
    db.exec("commit");
  } catch (err) {
    db.exec("rollback");
    throw err;
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
