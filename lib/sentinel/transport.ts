/**
 * How `stream sentinel` commands reach the sentinel: straight through the
 * SQLite catalog (default) or over TCP to the coordinator (`--host`).
 */
import { Catalog } from "../catalog/catalog.ts";
import { readSentinel, type Sentinel, updateSentinel } from "../catalog/sentinel_store.ts";
import { formatLsn, type Lsn } from "../lsn.ts";

/** The operations both transports offer. */
export interface SentinelTransport extends AsyncDisposable {
  get(): Promise<Sentinel>;
  setStartpos(lsn: Lsn, reason: string): Promise<void>;
  setEndpos(lsn: Lsn, reason: string): Promise<void>;
  setApply(apply: boolean): Promise<void>;
}

/** The sentinel in `<dir>/catalog.db`, written under the catalog write lock. */
export class SqliteSentinelTransport implements SentinelTransport {
  readonly #catalog: Catalog;

  private constructor(catalog: Catalog) {
    this.#catalog = catalog;
  }

  static async open(dir: string): Promise<SqliteSentinelTransport> {
    return new SqliteSentinelTransport(await Catalog.open(dir));
  }

  get(): Promise<Sentinel> {
    return Promise.resolve(readSentinel(this.#catalog.db));
  }

  async setStartpos(lsn: Lsn, reason: string): Promise<void> {
    await updateSentinel(this.#catalog, { startpos: lsn });
    await this.#catalog.log("sentinel set startpos", `${formatLsn(lsn)}: ${reason}`);
  }

  async setEndpos(lsn: Lsn, reason: string): Promise<void> {
    await updateSentinel(this.#catalog, { endpos: lsn });
    await this.#catalog.log("sentinel set endpos", `${formatLsn(lsn)}: ${reason}`);
  }

  async setApply(apply: boolean): Promise<void> {
    await updateSentinel(this.#catalog, { apply });
    await this.#catalog.log("sentinel set apply", apply ? "apply" : "prefetch");
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#catalog.close();
    return Promise.resolve();
  }
}
