/**
 * What scripts/test.sh sets up for the tests: the clusters' URIs and a scratch
 * directory. Tests start nothing themselves except pgferry processes.
 */
import postgres from "postgres";

function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) {
    throw new Error(`${name} is not set: run the tests through scripts/test.sh`);
  }
  return value;
}

/** postgres://… of the source cluster's `postgres` database (wal_level=logical). */
export function sourceUri(): string {
  return required("PGFERRY_TEST_SOURCE_PGURI");
}

/** postgres://… of the target cluster's `postgres` database. */
export function targetUri(): string {
  return required("PGFERRY_TEST_TARGET_PGURI");
}

/** postgres://… of the TLS source's `postgres` database (wal_level=logical, ssl = on). */
export function tlsSourceUri(): string {
  return required("PGFERRY_TEST_TLS_PGURI");
}

/** `uri` with sslmode=verify-ca and the TLS source's CA as sslrootcert: never without TLS. */
export function verifyCa(uri: string): string {
  const url = new URL(uri);
  url.searchParams.set("sslmode", "verify-ca");
  url.searchParams.set("sslrootcert", required("PGFERRY_TEST_TLS_CA"));
  return url.toString();
}

/** The same server, another database. */
export function withDatabase(uri: string, database: string): string {
  const url = new URL(uri);
  url.pathname = `/${database}`;
  return url.toString();
}

/** A new empty scratch directory for one test. */
export async function tempDir(prefix: string): Promise<string> {
  const base = Deno.env.get("PGFERRY_TEST_TMP") ?? Deno.env.get("TMPDIR") ?? "/tmp";
  await Deno.mkdir(base, { recursive: true });
  return await Deno.makeTempDir({ dir: base, prefix: `${prefix}-` });
}

/**
 * Creates (or re-creates) a database named `name` on both clusters and returns
 * their URIs, so that tests do not see each other's tables.
 */
export async function freshDatabases(name: string): Promise<{ source: string; target: string }> {
  return {
    source: await freshDatabase(sourceUri(), name),
    target: await freshDatabase(targetUri(), name),
  };
}

/** Creates (or re-creates) a database named `name` on the server of `uri`; returns its URI. */
export async function freshDatabase(uri: string, name: string): Promise<string> {
  const sql = postgres(uri, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`drop database if exists "${name}" with (force)`);
    await sql.unsafe(`create database "${name}"`);
  } finally {
    await sql.end();
  }
  return withDatabase(uri, name);
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
