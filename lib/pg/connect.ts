/**
 * Ordinary SQL connections (postgres.js). The replication connection lives in
 * replication.ts.
 *
 * postgres.js is imported on the first connect, not with this module: loading
 * it (and Deno's Node compatibility layer under it) takes ~60 ms, and the
 * commands that never use it (clone's data path, the sentinel over SQLite, help)
 * should not wait for that at start-up.
 */
import type postgres from "postgres";
import { OperatorError } from "../errors.ts";
import { maskPassword, maskPasswordsIn } from "./uri.ts";

let postgresJs: typeof postgres | undefined;

/** A postgres.js client. */
export type Sql = postgres.Sql<Record<string, never>>;

export interface ConnectOptions {
  /** Connections in the pool (default 1). */
  max?: number;
  /** Which side this is, for error messages: "source" or "target". */
  role?: string;
  /** Seconds to wait for a connection (default 10). */
  connectTimeout?: number;
  /**
   * Send every parameter as the text it is, never through postgres.js's type
   * serializers (which would re-encode json, dates and bytea given as text).
   */
  textParameters?: boolean;
}

/**
 * Opens a client; nothing connects until the first query.
 *
 * A client of one connection (the default) is one session: callers set session
 * state on it (a replication origin session, `SET`, `PREPARE`, a snapshot)
 * and rely on it for every later statement. postgres.js would silently open a
 * new connection after losing one, or after `max_lifetime` (30 to 60 minutes
 * by default), and run the next statements in a session without that state.
 * So connections are never recycled, and once a one-connection client's
 * connection closes, the client ends: every later query fails with
 * `CONNECTION_ENDED` (retryable), and the caller starts over with a new client.
 */
export async function connect(pguri: string, options: ConnectOptions = {}): Promise<Sql> {
  const max = options.max ?? 1;
  postgresJs ??= (await import("postgres")).default;
  const { uri, ssl } = await clientFiles(pguri);
  const sql: postgres.Sql = postgresJs(uri, {
    ...(ssl === undefined ? {} : { ssl }),
    max,
    connect_timeout: options.connectTimeout ?? 10,
    onnotice: () => {},
    idle_timeout: 0,
    max_lifetime: 0,
    prepare: true,
    connection: { application_name: "pgferry" },
    ...(max === 1 ? { onclose: () => void sql.end({ timeout: 0 }) } : {}),
  });
  if (options.textParameters) {
    // No serializer ever applies, including the array ones postgres.js adds once connected.
    (sql.options as unknown as { serializers: object }).serializers = new Proxy({}, {
      has: () => false,
      get: () => undefined,
      set: () => true,
    });
  }
  return sql as unknown as Sql;
}

/** libpq parameters that name files on the client: postgres.js would send them to the server. */
const CLIENT_FILE_PARAMETERS = ["sslrootcert", "sslcert", "sslkey", "sslcrl"];

/**
 * Takes the client-side file parameters out of a URI for postgres.js (which
 * passes the parameters it does not know to the server as settings, and the
 * server refuses "sslrootcert"). `sslrootcert=FILE` with an sslmode that uses
 * TLS becomes postgres.js's `ssl` option, verifying the server against that CA
 * as our own connections do (the host name too with verify-full only).
 */
async function clientFiles(pguri: string): Promise<{ uri: string; ssl?: object }> {
  let url: URL;
  try {
    url = new URL(pguri);
  } catch {
    return { uri: pguri };
  }
  const rootCert = url.searchParams.get("sslrootcert");
  if (rootCert === "system") return { uri: pguri }; // postgres.js knows this one
  if (!CLIENT_FILE_PARAMETERS.some((name) => url.searchParams.has(name))) return { uri: pguri };
  for (const name of CLIENT_FILE_PARAMETERS) url.searchParams.delete(name);
  const mode = url.searchParams.get("sslmode") ?? "prefer";
  if (rootCert === null || !["require", "verify-ca", "verify-full"].includes(mode)) {
    return { uri: url.href };
  }
  return {
    uri: url.href,
    ssl: {
      ca: await Deno.readTextFile(rootCert),
      rejectUnauthorized: true,
      ...(mode === "verify-full" ? {} : { checkServerIdentity: () => undefined }),
    },
  };
}

/** Runs `fn` with a short-lived client, closing it afterwards, with errors that name the server. */
export async function withConnection<T>(
  pguri: string,
  role: string,
  fn: (sql: Sql) => Promise<T>,
): Promise<T> {
  const sql = await connect(pguri, { role });
  try {
    return await fn(sql);
  } catch (err) {
    throw describePgError(err, pguri, role);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Turns a connection failure into an operator error that names the (masked) server. */
export function describePgError(err: unknown, pguri: string, role: string): unknown {
  if (!(err instanceof Error)) return err;
  const code = (err as { code?: string }).code;
  const networkCodes = [
    "ECONNREFUSED",
    "ENOTFOUND",
    "ETIMEDOUT",
    "CONNECT_TIMEOUT",
    "EHOSTUNREACH",
  ];
  if (code !== undefined && networkCodes.includes(code)) {
    return new OperatorError(
      `Cannot connect to the ${role} database "${maskPassword(pguri)}": ${
        maskPasswordsIn(err.message)
      }`,
      { hint: `check the --${role} connection string and that the server is running`, cause: err },
    );
  }
  return err;
}
