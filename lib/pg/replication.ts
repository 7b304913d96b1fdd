/**
 * The replication connection: a minimal PostgreSQL v3 frontend over `Deno.connect`
 * that speaks exactly what logical decoding needs — startup with
 * `replication=database`, trust / cleartext / md5 / SCRAM-SHA-256 authentication,
 * optional TLS, simple queries (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, SQL)
 * and CopyBoth for `START_REPLICATION`.
 *
 * Why not postgres.js here: its CopyBoth stream goes through `node:net` and Node
 * streams, parses the replication sub-protocol nowhere, and gives no pull-based
 * backpressure we control. This module reads the socket only when the consumer
 * asks for the next message, so a slow consumer stops the server through TCP flow
 * control and memory stays at one receive buffer. Ordinary SQL uses postgres.js
 * (`connect.ts`).
 *
 * Frames (all integers big-endian): `type:u8 length:u32 body`, where `length`
 * counts itself but not `type`; the startup and SSL request have no type byte.
 */
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import {
  parseReplicationMessage,
  type ReplicationMessage,
  STANDBY_STATUS_UPDATE_SIZE,
  type StandbyStatusUpdate,
  TAG_XLOG_DATA,
  writeStandbyStatusUpdate,
} from "./replication_messages.ts";

// ---------------------------------------------------------------------------
// Errors

/** The fields of an ErrorResponse or NoticeResponse, named as in the protocol docs. */
export interface PgErrorFields {
  /** Non-localized severity: ERROR, FATAL, PANIC, WARNING, NOTICE, … */
  severity: string;
  /** SQLSTATE. */
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
  position?: string | undefined;
  where?: string | undefined;
  schema?: string | undefined;
  table?: string | undefined;
  column?: string | undefined;
  dataType?: string | undefined;
  constraint?: string | undefined;
  file?: string | undefined;
  line?: string | undefined;
  routine?: string | undefined;
}

/** An ErrorResponse from the server, with its SQLSTATE in `code`. */
export class PgError extends Error {
  override name = "PgError";
  /** SQLSTATE, e.g. `42704`. */
  readonly code: string;
  readonly severity: string;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly where: string | undefined;
  /** All fields as the server sent them. */
  readonly fields: PgErrorFields;

  /** `context` says what we were doing, e.g. `Cannot start replication from "0/0"`. */
  constructor(fields: PgErrorFields, context?: string) {
    super(context === undefined ? sentenceCase(fields.message) : `${context}: ${fields.message}`);
    this.code = fields.code;
    this.severity = fields.severity;
    this.detail = fields.detail;
    this.hint = fields.hint;
    this.where = fields.where;
    this.fields = fields;
  }
}

/**
 * The connection could not be made, was lost, or the server broke the protocol.
 * `code` is a SQLSTATE of class 08 (`08001` cannot connect, `08006` lost,
 * `08003` closed by us, `08P01` protocol violation), `28000` for an
 * authentication exchange we refuse, or `0A000` for an unsupported method.
 */
export class PgConnectionError extends Error {
  override name = "PgConnectionError";
  readonly code: string;
  /** What the operator can do about it, when we know. */
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
  }
}

function sentenceCase(text: string): string {
  return text.length === 0 ? text : text[0]!.toUpperCase() + text.slice(1);
}

// ---------------------------------------------------------------------------
// Connection strings

/** Where and how to connect, after reading a URI or keyword/value string and PG* defaults. */
export interface ConnectionParams {
  /** Host name, IP address, or a directory holding the Unix socket. */
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  sslmode: "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
  /** PEM file of trusted roots for TLS. */
  sslrootcert: string | undefined;
  connectTimeoutMs: number;
  /** Startup parameters (GUCs) sent to the server, e.g. `application_name`. */
  parameters: Record<string, string>;
}

const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;

// libpq keywords that mean nothing to this client; everything else unknown becomes a GUC,
// like postgres.js does with URI query parameters.
const IGNORED_KEYWORDS = new Set([
  "channel_binding",
  "client_encoding",
  "fallback_application_name",
  "gssencmode",
  "gsslib",
  "hostaddr",
  "keepalives",
  "keepalives_count",
  "keepalives_idle",
  "keepalives_interval",
  "krbsrvname",
  "load_balance_hosts",
  "passfile",
  "requirepeer",
  "require_auth",
  "service",
  "ssl_max_protocol_version",
  "ssl_min_protocol_version",
  "sslcert",
  "sslcompression",
  "sslcrl",
  "sslcrldir",
  "sslkey",
  "sslpassword",
  "sslsni",
  "target_session_attrs",
  "tcp_user_timeout",
]);

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: no defaults from the environment
  }
}

/**
 * Reads `postgres://user:pw@host:port/db?k=v` or `host=h port=p dbname=d …`, with
 * libpq's PG* environment defaults. Throws a `SyntaxError` that quotes the bad
 * value but never the connection string, so no password can leak into a log.
 */
export function parseConnectionString(text: string): ConnectionParams {
  const values = /^postgres(?:ql)?:\/\//i.test(text) ? parseUri(text) : parseKeywords(text);
  const get = (key: string, envName: string) => values.get(key) ?? env(envName);
  const user = get("user", "PGUSER") ?? env("USER") ?? "postgres";
  const portText = get("port", "PGPORT") ?? "5432";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SyntaxError(`Invalid port "${portText}" in the connection string`);
  }
  const sslmode = get("sslmode", "PGSSLMODE") ?? "prefer";
  if (!(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new SyntaxError(
      `Invalid sslmode "${sslmode}" in the connection string: expected one of ${
        SSL_MODES.join(", ")
      }`,
    );
  }
  const timeoutText = get("connect_timeout", "PGCONNECT_TIMEOUT");
  const timeoutSeconds = timeoutText === undefined ? 10 : Number(timeoutText);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) {
    throw new SyntaxError(`Invalid connect_timeout "${timeoutText}" in the connection string`);
  }
  const parameters: Record<string, string> = {};
  const applicationName = get("application_name", "PGAPPNAME");
  if (applicationName !== undefined) parameters.application_name = applicationName;
  const options = get("options", "PGOPTIONS");
  if (options !== undefined) parameters.options = options;
  for (const [key, value] of values) {
    if (!CONNECTION_KEYWORDS.has(key) && !IGNORED_KEYWORDS.has(key)) parameters[key] = value;
  }
  return {
    host: get("host", "PGHOST") || "localhost",
    port,
    user,
    password: get("password", "PGPASSWORD"),
    database: get("dbname", "PGDATABASE") || user,
    sslmode: sslmode as ConnectionParams["sslmode"],
    sslrootcert: get("sslrootcert", "PGSSLROOTCERT"),
    connectTimeoutMs: timeoutSeconds === 0 ? 0 : Math.max(2, timeoutSeconds) * 1000,
    parameters,
  };
}

const CONNECTION_KEYWORDS = new Set([
  "host",
  "port",
  "user",
  "password",
  "dbname",
  "sslmode",
  "sslrootcert",
  "connect_timeout",
  "application_name",
  "options",
  "replication",
]);

// WHATWG URL refuses an empty host (`postgres://u@/db?host=/socket`), so this
// follows libpq's grammar: postgres[ql]://[userinfo@][host][:port][/dbname][?k=v&…]
const URI_PATTERN =
  /^postgres(?:ql)?:\/\/(?:([^/?#]*)@)?(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?(?:\/([^?#]*))?(?:\?([^#]*))?$/i;

function parseUri(text: string): Map<string, string> {
  const invalid = (why: string, cause?: unknown) =>
    new SyntaxError(
      `Invalid connection URI: ${why}`,
      cause === undefined ? {} : { cause },
    );
  const match = URI_PATTERN.exec(text);
  if (match === null) throw invalid("expected postgres://user:password@host:port/dbname");
  const [, userinfo, host, port, dbname, query] = match;
  const values = new Map<string, string>();
  const set = (key: string, raw: string | undefined) => {
    if (raw === undefined || raw === "") return;
    try {
      values.set(key, decodeURIComponent(raw));
    } catch (err) {
      throw invalid(`bad percent-encoding in ${key}`, err);
    }
  };
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(":");
    set("user", colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (colon >= 0) set("password", userinfo.slice(colon + 1));
  }
  if (host!.includes(",")) throw invalid("several hosts are not supported");
  set("host", host!.replace(/^\[(.*)\]$/, "$1"));
  set("port", port);
  set("dbname", dbname);
  for (const pair of (query ?? "").split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw invalid("expected key=value pairs after ?");
    let key: string;
    try {
      key = decodeURIComponent(pair.slice(0, eq));
    } catch (err) {
      throw invalid("bad percent-encoding in a query key", err);
    }
    set(key, pair.slice(eq + 1));
  }
  return values;
}

function parseKeywords(text: string): Map<string, string> {
  const values = new Map<string, string>();
  const pattern = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s']*))/y;
  let rest = text.trim();
  while (rest !== "") {
    pattern.lastIndex = 0;
    const match = pattern.exec(rest);
    if (match === null) {
      throw new SyntaxError(
        "Invalid connection string: expected keyword=value pairs or a postgres:// URI",
      );
    }
    values.set(match[1]!, match[2] !== undefined ? match[2].replace(/\\(.)/g, "$1") : match[3]!);
    rest = rest.slice(pattern.lastIndex).trimStart();
  }
  return values;
}

function describeServer(params: ConnectionParams): string {
  return params.host.startsWith("/")
    ? `socket "${params.host}/.s.PGSQL.${params.port}"`
    : `"${params.host}:${params.port}"`;
}

// ---------------------------------------------------------------------------
// Authentication

/**
 * PostgreSQL's md5 password answer: `"md5" + md5(md5(password + user) + salt)`.
 * node:crypto is imported here, not at start-up: loading it costs ~20 ms and
 * only md5 authentication needs it (WebCrypto has no MD5).
 */
export async function md5PasswordResponse(
  user: string,
  password: string,
  salt: Uint8Array,
): Promise<string> {
  const { createHash } = await import("node:crypto");
  const inner = createHash("md5").update(password + user).digest("hex");
  return "md5" + createHash("md5").update(inner).update(salt).digest("hex");
}

/**
 * A SCRAM-SHA-256 client exchange (RFC 5802, RFC 7677) without channel binding.
 * PostgreSQL ignores the SCRAM user name (it uses the startup user), so `user`
 * defaults to empty; tests pass the RFC's to check its test vector.
 */
export class ScramSha256 {
  readonly clientFirstMessageBare: string;
  #password: string;
  #clientNonce: string;
  #expectedServerSignature: Uint8Array | undefined;

  constructor(password: string, options: { user?: string; clientNonce?: string } = {}) {
    this.#password = saslPrep(password);
    this.#clientNonce = options.clientNonce ??
      base64(crypto.getRandomValues(new Uint8Array(18)));
    const user = (options.user ?? "").replaceAll("=", "=3D").replaceAll(",", "=2C");
    this.clientFirstMessageBare = `n=${user},r=${this.#clientNonce}`;
  }

  /** `n,,` (no channel binding) + the bare first message. */
  clientFirstMessage(): string {
    return `n,,${this.clientFirstMessageBare}`;
  }

  /** Computes the client-final-message (with proof) from the server-first-message. */
  async clientFinalMessage(serverFirstMessage: string): Promise<string> {
    const attrs = scramAttributes(serverFirstMessage);
    const nonce = attrs.get("r");
    const salt = attrs.get("s");
    const iterations = Number(attrs.get("i"));
    if (nonce === undefined || salt === undefined || !Number.isInteger(iterations)) {
      throw new PgConnectionError("08P01", "Invalid SCRAM server-first-message");
    }
    if (!nonce.startsWith(this.#clientNonce) || nonce.length === this.#clientNonce.length) {
      throw new PgConnectionError("28000", "SCRAM server nonce does not extend the client nonce");
    }
    const encoder = new TextEncoder();
    const passwordKey = await crypto.subtle.importKey(
      "raw",
      encoder.encode(this.#password),
      "PBKDF2",
      false,
      ["deriveBits"],
    );
    const saltedPassword = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "PBKDF2", hash: "SHA-256", salt: unbase64(salt), iterations },
        passwordKey,
        256,
      ),
    );
    const clientKey = await hmacSha256(saltedPassword, encoder.encode("Client Key"));
    const storedKey = new Uint8Array(await crypto.subtle.digest("SHA-256", clientKey));
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = encoder.encode(
      `${this.clientFirstMessageBare},${serverFirstMessage},${withoutProof}`,
    );
    const clientSignature = await hmacSha256(storedKey, authMessage);
    const proof = clientKey.map((byte, i) => byte ^ clientSignature[i]!);
    const serverKey = await hmacSha256(saltedPassword, encoder.encode("Server Key"));
    this.#expectedServerSignature = await hmacSha256(serverKey, authMessage);
    return `${withoutProof},p=${base64(proof)}`;
  }

  /** Checks the server-final-message; throws unless the server proved it knows the password. */
  verifyServerFinalMessage(serverFinalMessage: string): void {
    const attrs = scramAttributes(serverFinalMessage);
    const error = attrs.get("e");
    if (error !== undefined) {
      throw new PgConnectionError("28000", `SCRAM authentication failed: ${error}`);
    }
    const signature = attrs.get("v");
    const expected = this.#expectedServerSignature;
    if (signature === undefined || expected === undefined || signature !== base64(expected)) {
      throw new PgConnectionError("28000", "SCRAM server signature does not match");
    }
  }
}

function scramAttributes(message: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) attrs.set(part[0]!, part.slice(2));
  }
  return attrs;
}

// SASLprep (RFC 4013) is NFKC plus prohibitions; PostgreSQL falls back to the raw
// password when SASLprep fails, so NFKC of non-ASCII input covers real passwords.
function saslPrep(password: string): string {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(password) ? password : password.normalize("NFKC");
}

async function hmacSha256(
  key: Uint8Array<ArrayBuffer>,
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, data));
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function unbase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

// ---------------------------------------------------------------------------
// Frames

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const PROTOCOL_VERSION_3 = 196608;
const SSL_REQUEST_CODE = 80877103;
const READ_SIZE = 256 * 1024;
/**
 * While streaming, a read that brought less than PACE_BELOW is followed by a
 * pause of PACE_MS before the next read, so that the next one brings a batch.
 * A reader that takes every message as it comes costs the walsender a send()
 * per message (and a wakeup of the reader for most), and costs us a read, a spool
 * write and an event-loop turn for a few messages each. Letting the socket fill
 * makes the walsender write in batches: it decodes faster. Measured on stream
 * receive alone to endpos (bulk, 10 × 100k rows): receive's CPU 5.6-6.9 s reading
 * at once, 1.2-1.3 s with 20 ms pauses; walsender CPU, pauses of 2 / 5 / 10 / 20 /
 * 50 ms, 2 runs each: 7.2-8.3 / 6.2-7.2 / 6.4-6.6 / 6.3-6.5 / 5.9-6.4 s. follow to
 * endpos, 3 runs each, 2 ms → 20 ms: bulk 8.1-9.3 → 7.0-7.9 s, tiny 1.37-1.47 →
 * 1.25-1.35 s, pgbench 3.74-3.78 → 3.33-3.67 s. The cost: up to PACE_MS of latency.
 * Over TLS a read gives what Deno decrypted from one read of the socket, about
 * 3.3 kB of 140-byte messages when they wait there, and one message when they
 * do not. So there a read below TLS_SMALL counts as small, and the pause comes
 * after TLS_RUN small reads within PACE_MS (a stream of messages read one by
 * one; a transaction of a few messages does not wait), at most once per PACE_MS
 * of reading: whatever the reads give, pauses can at most halve the rate.
 * (Pausing after every read below PACE_BELOW stalled TLS streams: no progress in
 * 40 s on a bulk backlog; after every read below 1 kB, 9.5 s once and 20.9 s
 * once.) Measured over TLS, runs in alternation: stream receive alone to endpos,
 * bulk 11.3 / 13.1 → 10.6 / 10.1 s, receive's CPU 6.4-7.9 → 2.9 s; follow to
 * endpos, bulk 12.0 / 14.9 → 10.3 / 10.1 s, pgferry's CPU 6.2-7.9 → 3.5-3.7 s;
 * one row inserted and awaited on the target, 20 times: median 17 → 17-18 ms.
 */
const PACE_BELOW = READ_SIZE / 4;
const PACE_MS = 20;
const TLS_SMALL = 1024;
const TLS_RUN = 8;
const PACER = new Int32Array(new SharedArrayBuffer(4));
// The server never sends anything near this; a bigger length means a broken stream.
const MAX_FRAME = 1024 * 1024 * 1024;

const B = {
  AUTHENTICATION: 0x52, // R
  BACKEND_KEY_DATA: 0x4b, // K
  COMMAND_COMPLETE: 0x43, // C
  COPY_BOTH_RESPONSE: 0x57, // W
  COPY_DATA: 0x64, // d
  COPY_DONE: 0x63, // c
  COPY_IN_RESPONSE: 0x47, // G
  COPY_OUT_RESPONSE: 0x48, // H
  DATA_ROW: 0x44, // D
  EMPTY_QUERY_RESPONSE: 0x49, // I
  ERROR_RESPONSE: 0x45, // E
  NEGOTIATE_PROTOCOL_VERSION: 0x76, // v
  NOTICE_RESPONSE: 0x4e, // N
  NOTIFICATION_RESPONSE: 0x41, // A
  PARAMETER_STATUS: 0x53, // S
  READY_FOR_QUERY: 0x5a, // Z
  ROW_DESCRIPTION: 0x54, // T
} as const;

class FrameBuilder {
  #parts: Uint8Array[] = [];
  #size = 0;

  constructor(readonly type: number | undefined) {}

  cstr(text: string): this {
    return this.bytes(encoder.encode(text)).byte(0);
  }

  bytes(bytes: Uint8Array): this {
    this.#parts.push(bytes);
    this.#size += bytes.length;
    return this;
  }

  byte(value: number): this {
    return this.bytes(Uint8Array.of(value));
  }

  int32(value: number): this {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setInt32(0, value);
    return this.bytes(bytes);
  }

  end(): Uint8Array {
    const head = this.type === undefined ? 0 : 1;
    const out = new Uint8Array(head + 4 + this.#size);
    if (this.type !== undefined) out[0] = this.type;
    new DataView(out.buffer).setInt32(head, 4 + this.#size);
    let offset = head + 4;
    for (const part of this.#parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}

/** Reads a backend message body field by field. */
class BodyReader {
  #view: DataView;
  offset = 0;

  constructor(readonly body: Uint8Array) {
    this.#view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }

  int16(): number {
    const value = this.#view.getInt16(this.offset);
    this.offset += 2;
    return value;
  }

  int32(): number {
    const value = this.#view.getInt32(this.offset);
    this.offset += 4;
    return value;
  }

  cstr(): string {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) throw new SyntaxError("Unterminated string in a server message");
    const text = decoder.decode(this.body.subarray(this.offset, end));
    this.offset = end + 1;
    return text;
  }

  bytes(length: number): Uint8Array {
    const bytes = this.body.subarray(this.offset, this.offset + length);
    this.offset += length;
    return bytes;
  }

  rest(): Uint8Array {
    return this.bytes(this.body.length - this.offset);
  }
}

const ERROR_FIELD_NAMES: Record<string, keyof PgErrorFields> = {
  V: "severity",
  C: "code",
  M: "message",
  D: "detail",
  H: "hint",
  P: "position",
  W: "where",
  s: "schema",
  t: "table",
  c: "column",
  d: "dataType",
  n: "constraint",
  F: "file",
  L: "line",
  R: "routine",
};

/** Parses the body of an ErrorResponse or NoticeResponse. */
export function parseErrorFields(body: Uint8Array): PgErrorFields {
  const fields: PgErrorFields = { severity: "ERROR", code: "XX000", message: "" };
  const reader = new BodyReader(body);
  let localizedSeverity: string | undefined;
  let hasSeverity = false;
  while (reader.offset < body.length) {
    const type = body[reader.offset++]!;
    if (type === 0) break;
    const value = reader.cstr();
    const key = String.fromCharCode(type);
    if (key === "S") localizedSeverity = value;
    const name = ERROR_FIELD_NAMES[key];
    if (name !== undefined) fields[name] = value;
    if (key === "V") hasSeverity = true;
  }
  if (!hasSeverity && localizedSeverity !== undefined) fields.severity = localizedSeverity;
  return fields;
}

/**
 * Buffered frame reader. A frame body handed out (XLogData payloads are views
 * into it) stays valid until the next `fill`: that moves what is left of the
 * buffer to its start, and allocates a new buffer only for a frame larger than
 * the current one.
 */
class FrameReader {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  #view = new DataView(this.#buffer.buffer);
  #start = 0;
  #end = 0;
  /** The last read says the stream is thin: while streaming, pause before the next (PACE_MS). */
  #thin = false;
  /** TLS: small reads in a row within PACE_MS of the first, when it came, when the last pause ended. */
  #smallReads = 0;
  #runStart = 0;
  #pausedAt = 0;
  /** Reads come from the socket as they are, not through TLS. */
  readonly #plain: boolean;
  /** Type of the frame `tryNext` found. */
  type = 0;
  /** Body of the frame `tryNext` found. */
  body: Uint8Array = this.#buffer;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#plain = !("handshake" in conn);
  }

  /** A complete frame is in the buffer: the next `tryNext` needs no socket read. */
  get buffered(): boolean {
    const available = this.#end - this.#start;
    return available >= 5 && available >= 1 + this.#view.getUint32(this.#start + 1);
  }

  /** The next complete frame is CopyData whose payload starts with `first`. */
  nextIsCopyData(first: number): boolean {
    return this.buffered && this.#buffer[this.#start] === B.COPY_DATA &&
      this.#end - this.#start > 5 && this.#buffer[this.#start + 5] === first;
  }

  /** Takes the next complete frame from the buffer, without reading the socket. */
  tryNext(): boolean {
    const available = this.#end - this.#start;
    if (available < 5) return false;
    const length = this.#view.getUint32(this.#start + 1);
    if (length < 4 || length > MAX_FRAME) {
      throw new PgConnectionError("08P01", `Invalid message length ${length} from the server`);
    }
    if (available < length + 1) return false;
    this.type = this.#buffer[this.#start]!;
    this.body = this.#buffer.subarray(this.#start + 5, this.#start + 1 + length);
    this.#start += 1 + length;
    return true;
  }

  /** Reads more bytes; false at end of stream. `paced`: while streaming (see PACE_MS). */
  async fill(paced = false): Promise<boolean> {
    const pending = this.#end - this.#start;
    const needed = pending >= 5 ? 1 + this.#view.getUint32(this.#start + 1) : 5;
    if (this.#start + Math.max(needed, pending + 1) > this.#buffer.length) {
      const size = Math.max(READ_SIZE, needed);
      if (size <= this.#buffer.length) {
        // The frames handed out before are used up (see XLogData.data): reuse the buffer.
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        const next = new Uint8Array(size);
        next.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = next;
        this.#view = new DataView(next.buffer);
      }
      this.#start = 0;
      this.#end = pending;
    }
    // Atomics.wait blocks this thread without a socket wakeup; the event loop waits too.
    if (paced && this.#thin && (this.#plain || performance.now() - this.#pausedAt >= PACE_MS)) {
      Atomics.wait(PACER, 0, 0, PACE_MS);
      this.#pausedAt = performance.now();
    }
    const count = await this.#conn.read(this.#buffer.subarray(this.#end));
    if (count === null) return false;
    this.#thin = this.#plain ? count < PACE_BELOW : this.#smallRun(count) >= TLS_RUN;
    this.#end += count;
    return true;
  }

  /** TLS: how many small reads in a row, this one included, came within PACE_MS of the first. */
  #smallRun(count: number): number {
    if (count >= TLS_SMALL) return this.#smallReads = 0;
    const now = performance.now();
    if (this.#smallReads === 0 || now - this.#runStart > PACE_MS) {
      this.#smallReads = 0;
      this.#runStart = now;
    }
    return ++this.#smallReads;
  }

  /** One byte straight from the socket (the answer to an SSLRequest). */
  async readByte(): Promise<number | null> {
    const one = new Uint8Array(1);
    const count = await this.#conn.read(one);
    return count === null || count === 0 ? null : one[0]!;
  }
}

// ---------------------------------------------------------------------------
// The connection

/** A notice (or warning) the server sent. */
export type PgNotice = PgErrorFields;

export interface ReplicationConnectOptions {
  /** Aborting closes the connection; pending and later calls reject with the reason. */
  signal?: AbortSignal;
  /** Overrides the password of the connection string. */
  password?: string;
  /** Extra startup parameters (GUCs), e.g. `{ wal_sender_timeout: "30s" }`. */
  parameters?: Record<string, string>;
  /** Called for each NoticeResponse; notices are dropped by default. */
  onNotice?: (notice: PgNotice) => void;
}

/** The answer to `IDENTIFY_SYSTEM`. */
export interface SystemIdentification {
  systemId: string;
  timeline: number;
  /** Current WAL flush position. */
  xlogpos: Lsn;
  /** The database connected to (null for physical replication). */
  dbname: string | null;
}

export interface CreateLogicalSlotOptions {
  /** Export a snapshot for `SET TRANSACTION SNAPSHOT` (default false). */
  exportSnapshot?: boolean;
  /** Dropped when this connection closes (default false). */
  temporary?: boolean;
}

/** The answer to `CREATE_REPLICATION_SLOT`. */
export interface CreatedSlot {
  slotName: string;
  /** Decoding of the slot starts here; the exported snapshot shows the data as of here. */
  consistentPoint: Lsn;
  /** Valid while this connection stays open and idle; null without `exportSnapshot`. */
  snapshotName: string | null;
  plugin: string;
}

/** Rows of a simple query, all values as text. */
export interface SimpleQueryResult {
  columns: string[];
  rows: (string | null)[][];
  /** The CommandComplete tag, e.g. `SELECT 1`. */
  command: string;
}

export interface StartLogicalOptions {
  /** Output plugin options, e.g. `{ proto_version: "1", publication_names: "pgferry" }`. */
  pluginOptions?: Record<string, string>;
  /**
   * Answer keepalives that request a reply with the positions last given to
   * `sendStatus` (never further), so the server does not time the connection out
   * while the consumer keeps reading. Default true.
   */
  autoReply?: boolean;
}

type State = "idle" | "busy" | "streaming" | "closed";

/** A `replication=database` connection: slots, snapshots and logical streaming. */
export class ReplicationConnection implements AsyncDisposable {
  /** Server parameters reported at startup (server_version, …). */
  readonly serverParameters: ReadonlyMap<string, string>;
  /** Backend process id, for `pg_terminate_backend`. */
  readonly processId: number;
  #conn: Deno.Conn;
  #reader: FrameReader;
  #params: ConnectionParams;
  #state: State = "idle";
  #writing: Promise<void> = Promise.resolve();
  #failure: unknown = undefined;
  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;
  #onNotice: ((notice: PgNotice) => void) | undefined;
  #lastStatus: StandbyStatusUpdate = { write: 0n, flush: 0n, apply: 0n };
  #pendingNext: Promise<ReplicationMessage | undefined> | undefined;
  #stopRequested = false;
  #closedByUs = false;

  private constructor(
    conn: Deno.Conn,
    reader: FrameReader,
    params: ConnectionParams,
    serverParameters: Map<string, string>,
    processId: number,
    options: ReplicationConnectOptions,
  ) {
    this.#conn = conn;
    this.#reader = reader;
    this.#params = params;
    this.serverParameters = serverParameters;
    this.processId = processId;
    this.#onNotice = options.onNotice;
    this.#signal = options.signal;
    if (this.#signal !== undefined) {
      this.#onAbort = () => this.#fail(this.#signal?.reason);
      this.#signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Connects with `replication=database` and authenticates. */
  static async connect(
    connectionString: string,
    options: ReplicationConnectOptions = {},
  ): Promise<ReplicationConnection> {
    options.signal?.throwIfAborted();
    const params = parseConnectionString(connectionString);
    if (options.password !== undefined) params.password = options.password;
    const timeout = params.connectTimeoutMs > 0
      ? AbortSignal.timeout(params.connectTimeoutMs)
      : undefined;
    const signals = [options.signal, timeout].filter((s) => s !== undefined);
    const signal = signals.length === 0 ? undefined : AbortSignal.any(signals);
    let conn: Deno.Conn | undefined;
    const onAbort = () => conn?.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      conn = await openSocket(params, signal);
      signal?.throwIfAborted();
      const reader = new FrameReader(conn);
      const { serverParameters, processId } = await startup(conn, reader, params, options);
      signal?.removeEventListener("abort", onAbort);
      return new ReplicationConnection(
        conn,
        reader,
        params,
        serverParameters,
        processId,
        options,
      );
    } catch (err) {
      signal?.removeEventListener("abort", onAbort);
      try {
        conn?.close();
      } catch { /* already closed by the abort */ }
      if (options.signal?.aborted) throw options.signal.reason;
      if (err instanceof PgError || err instanceof PgConnectionError) throw err;
      const why = timeout?.aborted === true
        ? `timed out after ${params.connectTimeoutMs / 1000} s`
        : errorText(err);
      throw new PgConnectionError(
        "08001",
        `Cannot connect to ${describeServer(params)} as "${params.user}": ${why}`,
        { cause: err },
      );
    }
  }

  /** The server's `server_version`, e.g. `15.8 (Debian 15.8-1)`. */
  get serverVersion(): string {
    return this.serverParameters.get("server_version") ?? "";
  }

  /** Runs `IDENTIFY_SYSTEM`. */
  async identifySystem(): Promise<SystemIdentification> {
    const result = await this.query("IDENTIFY_SYSTEM");
    const row = result.rows[0];
    if (row === undefined) throw new PgConnectionError("08P01", "IDENTIFY_SYSTEM returned no row");
    return {
      systemId: row[0] ?? "",
      timeline: Number(row[1]),
      xlogpos: parseLsn(row[2] ?? ""),
      dbname: row[3] ?? null,
    };
  }

  /**
   * Runs `CREATE_REPLICATION_SLOT … LOGICAL`. With `exportSnapshot`, the snapshot
   * stays usable (`SET TRANSACTION SNAPSHOT`) until this connection runs another
   * command or closes.
   */
  async createLogicalSlot(
    slotName: string,
    plugin: string,
    options: CreateLogicalSlotOptions = {},
  ): Promise<CreatedSlot> {
    const temporary = options.temporary === true ? " TEMPORARY" : "";
    const snapshot = options.exportSnapshot === true ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT";
    const result = await this.query(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slotName)}${temporary} LOGICAL ${
        quoteIdent(plugin)
      } ${snapshot}`,
      `Cannot create replication slot "${slotName}" with plugin "${plugin}"`,
    );
    const row = result.rows[0];
    if (row === undefined) {
      throw new PgConnectionError("08P01", "CREATE_REPLICATION_SLOT returned no row");
    }
    return {
      slotName: row[0] ?? slotName,
      consistentPoint: parseLsn(row[1] ?? ""),
      snapshotName: row[2] ?? null,
      plugin: row[3] ?? plugin,
    };
  }

  /**
   * Runs one simple-protocol statement (replication commands or SQL) and returns
   * its last result set. `context` prefixes a server error's message.
   */
  async query(sql: string, context?: string): Promise<SimpleQueryResult> {
    this.#enter("idle", "busy");
    try {
      await this.#write(new FrameBuilder(0x51 /* Q */).cstr(sql).end());
      let result: SimpleQueryResult = { columns: [], rows: [], command: "" };
      let error: PgError | undefined;
      for (;;) {
        const { type, body } = await this.#nextFrame();
        switch (type) {
          case B.ROW_DESCRIPTION:
            result = { columns: parseRowDescription(body), rows: [], command: "" };
            break;
          case B.DATA_ROW:
            result.rows.push(parseDataRow(body));
            break;
          case B.COMMAND_COMPLETE:
            result.command = new BodyReader(body).cstr();
            break;
          case B.EMPTY_QUERY_RESPONSE:
            break;
          case B.ERROR_RESPONSE:
            error = this.#serverError(body, context);
            break;
          case B.COPY_BOTH_RESPONSE:
          case B.COPY_IN_RESPONSE:
          case B.COPY_OUT_RESPONSE:
            throw this.#fail(
              new PgConnectionError("08P01", "Unexpected COPY from a query: use startLogical()"),
            );
          case B.READY_FOR_QUERY:
            this.#state = "idle";
            if (error !== undefined) throw error;
            return result;
          default:
            throw this.#unexpected(type, "a query");
        }
      }
    } catch (err) {
      // A failure in the middle of an exchange leaves the protocol state unknown.
      if (this.#state === "busy") this.#fail(err);
      throw err;
    }
  }

  /**
   * Runs `START_REPLICATION SLOT … LOGICAL startLsn (options)` and returns the
   * stream of messages. Pass `0n` to start where the slot's confirmed_flush_lsn is.
   */
  async startLogical(
    slotName: string,
    startLsn: Lsn,
    options: StartLogicalOptions = {},
  ): Promise<ReplicationStream> {
    const pluginOptions = Object.entries(options.pluginOptions ?? {})
      .map(([key, value]) => `${quoteIdent(key)} ${quoteLiteral(value)}`);
    const sql = `START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL ${formatLsn(startLsn)}${
      pluginOptions.length > 0 ? ` (${pluginOptions.join(", ")})` : ""
    }`;
    const context = `Cannot start replication from "${formatLsn(startLsn)}" on slot "${slotName}"`;
    this.#enter("idle", "busy");
    try {
      await this.#write(new FrameBuilder(0x51 /* Q */).cstr(sql).end());
      let error: PgError | undefined;
      for (;;) {
        const { type, body } = await this.#nextFrame();
        if (type === B.COPY_BOTH_RESPONSE) {
          this.#state = "streaming";
          return new ReplicationStream(this, options.autoReply ?? true);
        } else if (type === B.ERROR_RESPONSE) {
          error = this.#serverError(body, context);
        } else if (type === B.READY_FOR_QUERY) {
          this.#state = "idle";
          throw error ?? new PgConnectionError("08P01", `${context}: no CopyBothResponse`);
        } else if (type !== B.COMMAND_COMPLETE) {
          throw this.#unexpected(type, "START_REPLICATION");
        }
      }
    } catch (err) {
      // A failure in the middle of an exchange leaves the protocol state unknown.
      if (this.#state === "busy") this.#fail(err);
      throw err;
    }
  }

  /**
   * Sends a StandbyStatusUpdate. The slot's confirmed_flush_lsn moves to `flush`:
   * only report what is durable. Later automatic keepalive replies repeat these
   * positions.
   */
  async sendStatus(status: StandbyStatusUpdate): Promise<void> {
    if (this.#state !== "streaming" || this.#stopRequested) {
      throw this.#failure ?? new TypeError(
        `Cannot send a status update: the connection is ${
          this.#stopRequested ? "stopping streaming" : this.#state
        }`,
      );
    }
    this.#lastStatus = { write: status.write, flush: status.flush, apply: status.apply };
    const frame = new Uint8Array(5 + STANDBY_STATUS_UPDATE_SIZE);
    frame[0] = B.COPY_DATA;
    new DataView(frame.buffer).setUint32(1, 4 + STANDBY_STATUS_UPDATE_SIZE);
    writeStandbyStatusUpdate(frame, 5, status);
    await this.#write(frame);
  }

  /** The positions last given to `sendStatus`. */
  get lastStatus(): Readonly<StandbyStatusUpdate> {
    return this.#lastStatus;
  }

  /** Sends Terminate and closes the socket. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#state === "closed") {
      this.#detachSignal();
      return;
    }
    const wasUsable = this.#failure === undefined;
    this.#closedByUs = true;
    this.#state = "closed";
    this.#failure = new PgConnectionError("08003", "The replication connection is closed");
    if (wasUsable) {
      try {
        await this.#write(new FrameBuilder(0x58 /* X */).end(), true);
      } catch { /* closing anyway */ }
    }
    this.#closeSocket();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- for ReplicationStream -------------------------------------------------

  /** @internal A whole message is buffered: the stream's next one comes without waiting. */
  get buffered(): boolean {
    return this.#reader.buffered;
  }

  /**
   * @internal The next message when it is an XLogData already received, else
   * undefined (then `nextMessage` reads on): a consumer drains what one socket
   * read brought without a promise per message.
   */
  nextXLogData(): ReplicationMessage | undefined {
    if (
      this.#pendingNext !== undefined || this.#state !== "streaming" || this.#stopRequested ||
      !this.#reader.nextIsCopyData(TAG_XLOG_DATA)
    ) return undefined;
    this.#reader.tryNext();
    try {
      return parseReplicationMessage(this.#reader.body);
    } catch (err) {
      throw this.#fail(new PgConnectionError("08P01", errorText(err), { cause: err }));
    }
  }

  /**
   * @internal Next message of the stream, or undefined once streaming has ended
   * (the server's CopyDone, our `stop()`, or our `close()`).
   */
  nextMessage(autoReply: boolean): Promise<ReplicationMessage | undefined> {
    if (this.#pendingNext !== undefined) {
      return Promise.reject(
        new TypeError("Cannot read the stream twice at once: await the previous next() first"),
      );
    }
    const next = this.#nextMessage(autoReply);
    const clear = () => {
      this.#pendingNext = undefined;
    };
    this.#pendingNext = next;
    next.then(clear, clear);
    return next;
  }

  async #nextMessage(autoReply: boolean): Promise<ReplicationMessage | undefined> {
    const reader = this.#reader;
    for (;;) {
      if (this.#stopRequested) {
        await this.#skipToReadyForQuery();
        return undefined;
      }
      if (this.#state !== "streaming") {
        if (this.#closedByUs) return undefined;
        throw this.#failure ?? new TypeError("Cannot read the stream: streaming has ended");
      }
      let found: boolean;
      try {
        found = reader.tryNext();
      } catch (err) {
        throw this.#fail(err);
      }
      if (!found) {
        try {
          await this.#fill();
        } catch (err) {
          if (this.#closedByUs) return undefined;
          throw err;
        }
        continue;
      }
      const type = reader.type;
      if (type === B.COPY_DATA) {
        if (this.#stopRequested) continue; // in flight after our CopyDone: nobody wants it
        let message: ReplicationMessage;
        try {
          message = parseReplicationMessage(reader.body);
        } catch (err) {
          throw this.#fail(new PgConnectionError("08P01", errorText(err), { cause: err }));
        }
        if (message.tag === "PrimaryKeepalive" && message.replyRequested && autoReply) {
          await this.sendStatus(this.#lastStatus);
        }
        return message;
      }
      if (type === B.COPY_DONE) {
        // The server ended the copy: answer with our CopyDone, then wait for ReadyForQuery.
        if (!this.#stopRequested) {
          this.#stopRequested = true;
          await this.#write(new FrameBuilder(B.COPY_DONE).end());
        }
        continue;
      }
      if (type === B.COMMAND_COMPLETE && this.#stopRequested) continue;
      if (type === B.COMMAND_COMPLETE) {
        // A walsender asked to stop by a server shutdown ends the copy this way, with no
        // CopyDone, once we have confirmed everything it sent, and then exits
        // (WalSndDone): the stream is over, and the connection with it.
        throw this.#fail(
          new PgConnectionError(
            "08006",
            `The server ${describeServer(this.#params)} ended streaming: it is shutting down`,
          ),
        );
      }
      await this.#handleAsync(type, reader.body, "streaming");
    }
  }

  /**
   * @internal Sends CopyDone, skips what is still in flight, and returns to idle.
   * A `next()` waiting meanwhile resolves as done.
   */
  async stopStreaming(): Promise<void> {
    if (this.#state !== "streaming") return;
    if (!this.#stopRequested) {
      this.#stopRequested = true;
      await this.#write(new FrameBuilder(B.COPY_DONE).end());
    }
    const pending = this.#pendingNext;
    if (pending !== undefined) {
      await pending; // it sees the stop request and reads up to ReadyForQuery itself
    } else {
      await this.#skipToReadyForQuery();
    }
  }

  /**
   * After our CopyDone the server sends CopyDone, CommandComplete and ReadyForQuery —
   * except that PostgreSQL 15 may skip its CopyDone when ours arrives in the middle
   * of a transaction, so anything up to ReadyForQuery ends the copy (libpq is as
   * lenient). Data still in flight is dropped.
   */
  async #skipToReadyForQuery(): Promise<void> {
    for (;;) {
      const { type, body } = await this.#nextFrame();
      if (type === B.READY_FOR_QUERY) break;
      if (type === B.ERROR_RESPONSE) throw await this.#serverErrorAfterCopy(body);
      if (
        type !== B.COPY_DATA && type !== B.COPY_DONE && type !== B.COMMAND_COMPLETE &&
        type !== B.ROW_DESCRIPTION && type !== B.DATA_ROW
      ) {
        throw this.#unexpected(type, "the end of streaming");
      }
    }
    this.#state = "idle";
    this.#stopRequested = false;
  }

  // --- internals -------------------------------------------------------------

  #enter(from: State, to: State): void {
    if (this.#state !== from) {
      throw this.#failure ?? new TypeError(
        `Cannot run a command: the replication connection is ${this.#state}`,
      );
    }
    this.#state = to;
  }

  async #serverErrorAfterCopy(body: Uint8Array): Promise<PgError> {
    const error = this.#serverError(body);
    if (this.#state === "closed") return error;
    // After an ERROR the server sends ReadyForQuery; skip to it so the connection is usable.
    try {
      for (;;) {
        const { type } = await this.#nextFrame();
        if (type === B.READY_FOR_QUERY) break;
      }
      this.#state = "idle";
      this.#stopRequested = false;
    } catch { /* the connection is gone: report the server's error, not the loss */ }
    return error;
  }

  /** The next frame, handling notices and parameter changes in between. */
  async #nextFrame(): Promise<{ type: number; body: Uint8Array }> {
    const reader = this.#reader;
    for (;;) {
      let found: boolean;
      try {
        found = reader.tryNext();
      } catch (err) {
        throw this.#fail(err);
      }
      if (!found) {
        await this.#fill();
        continue;
      }
      if (this.#handledInline(reader.type, reader.body)) continue;
      return { type: reader.type, body: reader.body };
    }
  }

  async #handleAsync(type: number, body: Uint8Array, during: string): Promise<void> {
    if (this.#handledInline(type, body)) return;
    if (type === B.ERROR_RESPONSE) {
      throw await this.#serverErrorAfterCopy(body);
    }
    throw this.#unexpected(type, during);
  }

  #handledInline(type: number, body: Uint8Array): boolean {
    if (type === B.NOTICE_RESPONSE) {
      this.#onNotice?.(parseErrorFields(body));
      return true;
    }
    if (type === B.PARAMETER_STATUS) {
      const reader = new BodyReader(body);
      const name = reader.cstr();
      (this.serverParameters as Map<string, string>).set(name, reader.cstr());
      return true;
    }
    return type === B.NOTIFICATION_RESPONSE;
  }

  async #fill(): Promise<void> {
    let more: boolean;
    try {
      more = await this.#reader.fill(this.#state === "streaming");
    } catch (err) {
      throw this.#failure !== undefined ? this.#failure : this.#fail(this.#lost(err));
    }
    if (!more) throw this.#failure !== undefined ? this.#failure : this.#fail(this.#lost());
  }

  #lost(cause?: unknown): PgConnectionError {
    return new PgConnectionError(
      "08006",
      `Lost the replication connection to ${describeServer(this.#params)}${
        cause === undefined ? ": the server closed it" : `: ${errorText(cause)}`
      }`,
      cause === undefined ? {} : { cause },
    );
  }

  #serverError(body: Uint8Array, context?: string): PgError {
    const error = new PgError(parseErrorFields(body), context);
    if (error.severity === "FATAL" || error.severity === "PANIC") this.#fail(error);
    return error;
  }

  #unexpected(type: number, during: string): PgConnectionError {
    return this.#fail(
      new PgConnectionError(
        "08P01",
        `Unexpected message "${String.fromCharCode(type)}" from the server during ${during}`,
      ),
    ) as PgConnectionError;
  }

  /** Marks the connection unusable with `reason`, closes the socket, returns the reason. */
  #fail(reason: unknown): unknown {
    if (this.#failure === undefined) this.#failure = reason;
    this.#state = "closed";
    this.#closeSocket();
    return reason;
  }

  #closeSocket(): void {
    this.#detachSignal();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  #detachSignal(): void {
    if (this.#onAbort !== undefined) {
      this.#signal?.removeEventListener("abort", this.#onAbort);
      this.#onAbort = undefined;
    }
  }

  #write(bytes: Uint8Array, evenIfClosed = false): Promise<void> {
    if (this.#state === "closed" && !evenIfClosed) {
      return Promise.reject(this.#failure ?? new TypeError("The connection is closed"));
    }
    const write = this.#writing.then(async () => {
      let offset = 0;
      try {
        while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
      } catch (err) {
        if (evenIfClosed) throw err;
        throw this.#failure !== undefined ? this.#failure : this.#fail(this.#lost(err));
      }
    });
    this.#writing = write.catch(() => {});
    return write;
  }
}

/**
 * Messages of one `START_REPLICATION`, read from the socket only as fast as they
 * are consumed. Leaving a `for await` loop early keeps the stream open: iterate
 * again to continue, or call `stop()` / close the connection.
 */
export class ReplicationStream implements AsyncIterableIterator<ReplicationMessage> {
  #connection: ReplicationConnection;
  #autoReply: boolean;
  #done = false;

  /** @internal */
  constructor(connection: ReplicationConnection, autoReply: boolean) {
    this.#connection = connection;
    this.#autoReply = autoReply;
  }

  async next(): Promise<IteratorResult<ReplicationMessage, undefined>> {
    if (this.#done) return { done: true, value: undefined };
    const message = await this.#connection.nextMessage(this.#autoReply);
    if (message === undefined) {
      this.#done = true;
      return { done: true, value: undefined };
    }
    return { done: false, value: message };
  }

  /**
   * The next message, without waiting, when it is an XLogData already received;
   * undefined otherwise (then `next()`).
   */
  nextBuffered(): ReplicationMessage | undefined {
    return this.#done ? undefined : this.#connection.nextXLogData();
  }

  /**
   * The next message is already received (the next `next()` does not wait on
   * the network): a consumer can hold back work that batching makes cheaper
   * until this is false.
   */
  get buffered(): boolean {
    return this.#connection.buffered;
  }

  /** Called when a `for await` loop exits early: the stream stays open. */
  return(): Promise<IteratorResult<ReplicationMessage, undefined>> {
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Ends streaming (CopyDone both ways); the connection can run commands again. */
  async stop(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#connection.stopStreaming();
  }

  /** Same as the connection's `sendStatus`. */
  sendStatus(status: StandbyStatusUpdate): Promise<void> {
    return this.#connection.sendStatus(status);
  }
}

// ---------------------------------------------------------------------------
// Helpers

async function openSocket(
  params: ConnectionParams,
  signal: AbortSignal | undefined,
): Promise<Deno.Conn> {
  if (params.host.startsWith("/")) {
    return await Deno.connect({
      transport: "unix",
      path: `${params.host}/.s.PGSQL.${params.port}`,
    });
  }
  const tcp = await Deno.connect({
    hostname: params.host,
    port: params.port,
    ...(signal === undefined ? {} : { signal }),
  });
  tcp.setNoDelay(true);
  tcp.setKeepAlive(true);
  if (params.sslmode === "disable" || params.sslmode === "allow") return tcp;
  return await negotiateTls(tcp, params, signal);
}

async function negotiateTls(
  tcp: Deno.TcpConn,
  params: ConnectionParams,
  signal: AbortSignal | undefined,
): Promise<Deno.Conn> {
  await writeAll(tcp, new FrameBuilder(undefined).int32(SSL_REQUEST_CODE).end());
  const answer = await new FrameReader(tcp).readByte();
  if (answer === 0x4e /* N */) {
    if (params.sslmode === "prefer") return tcp;
    tcp.close();
    throw new PgConnectionError(
      "08001",
      `Cannot connect to ${
        describeServer(params)
      }: the server does not support TLS (sslmode=${params.sslmode})`,
    );
  }
  if (answer !== 0x53 /* S */) {
    tcp.close();
    // Closed before it answered (a restart, a proxy): a lost connection, retried like one.
    throw answer === null
      ? new PgConnectionError(
        "08006",
        `Cannot connect to ${describeServer(params)}: closed before answering the TLS request`,
      )
      : new PgConnectionError("08P01", "Invalid answer to the TLS request");
  }
  const caCerts = params.sslrootcert === undefined
    ? undefined
    : [await Deno.readTextFile(params.sslrootcert)];
  const tls = await Deno.startTls(tcp, {
    hostname: params.host,
    ...(caCerts === undefined ? {} : { caCerts }),
    unsafelyDisableHostnameVerification: params.sslmode !== "verify-full",
  });
  try {
    await tls.handshake();
    return tls;
  } catch (err) {
    tls.close();
    if (params.sslmode === "prefer" && signal?.aborted !== true) {
      // libpq's "prefer" falls back to plain text when TLS fails; so do we, on a new socket.
      return await openSocket({ ...params, sslmode: "disable" }, signal);
    }
    throw new PgConnectionError(
      "08001",
      `Cannot connect to ${describeServer(params)} as "${params.user}": TLS handshake failed: ${
        errorText(err)
      }`,
      {
        cause: err,
        hint: params.sslrootcert === undefined
          ? `sslmode=${params.sslmode} verifies the server certificate against the system's roots here (libpq does not for "require"): pass sslrootcert=<CA file>`
          : `check that "${params.sslrootcert}" holds the CA that signed the server certificate`,
      },
    );
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

async function startup(
  conn: Deno.Conn,
  reader: FrameReader,
  params: ConnectionParams,
  options: ReplicationConnectOptions,
): Promise<{ serverParameters: Map<string, string>; processId: number }> {
  const startupParameters: Record<string, string> = {
    user: params.user,
    database: params.database,
    replication: "database",
    application_name: "pgferry",
    client_encoding: "UTF8",
    ...params.parameters,
    ...options.parameters,
  };
  const message = new FrameBuilder(undefined).int32(PROTOCOL_VERSION_3);
  for (const [key, value] of Object.entries(startupParameters)) message.cstr(key).cstr(value);
  await writeAll(conn, message.byte(0).end());

  const serverParameters = new Map<string, string>();
  let processId = 0;
  let scram: ScramSha256 | undefined;
  const context = `Cannot connect to ${describeServer(params)} as "${params.user}"`;
  const password = () => {
    if (params.password === undefined) {
      throw new PgConnectionError(
        "28000",
        `${context}: the server asks for a password and none was given`,
      );
    }
    return params.password;
  };
  for (;;) {
    while (!reader.tryNext()) {
      if (!(await reader.fill())) {
        throw new PgConnectionError("08006", `${context}: the server closed the connection`);
      }
    }
    const body = reader.body;
    switch (reader.type) {
      case B.AUTHENTICATION: {
        const auth = new BodyReader(body);
        const kind = auth.int32();
        if (kind === 0) break; // AuthenticationOk
        if (kind === 3) {
          await writeAll(conn, new FrameBuilder(0x70 /* p */).cstr(password()).end());
        } else if (kind === 5) {
          const answer = await md5PasswordResponse(params.user, password(), auth.bytes(4));
          await writeAll(conn, new FrameBuilder(0x70).cstr(answer).end());
        } else if (kind === 10) {
          const mechanisms: string[] = [];
          for (let name = auth.cstr(); name !== ""; name = auth.cstr()) mechanisms.push(name);
          if (!mechanisms.includes("SCRAM-SHA-256")) {
            throw new PgConnectionError(
              "0A000",
              `${context}: unsupported SASL mechanisms ${mechanisms.join(", ")}`,
            );
          }
          scram = new ScramSha256(password());
          const first = encoder.encode(scram.clientFirstMessage());
          await writeAll(
            conn,
            new FrameBuilder(0x70).cstr("SCRAM-SHA-256").int32(first.length).bytes(first).end(),
          );
        } else if (kind === 11 && scram !== undefined) {
          const final = await scram.clientFinalMessage(decoder.decode(auth.rest()));
          await writeAll(conn, new FrameBuilder(0x70).bytes(encoder.encode(final)).end());
        } else if (kind === 12 && scram !== undefined) {
          scram.verifyServerFinalMessage(decoder.decode(auth.rest()));
        } else {
          throw new PgConnectionError(
            "0A000",
            `${context}: unsupported authentication method (code ${kind})`,
          );
        }
        break;
      }
      case B.PARAMETER_STATUS: {
        const fields = new BodyReader(body);
        const name = fields.cstr();
        serverParameters.set(name, fields.cstr());
        break;
      }
      case B.BACKEND_KEY_DATA:
        processId = new BodyReader(body).int32();
        break;
      case B.NOTICE_RESPONSE:
        options.onNotice?.(parseErrorFields(body));
        break;
      case B.NEGOTIATE_PROTOCOL_VERSION:
        break;
      case B.ERROR_RESPONSE:
        throw new PgError(parseErrorFields(body), context);
      case B.READY_FOR_QUERY:
        return { serverParameters, processId };
      default:
        throw new PgConnectionError(
          "08P01",
          `${context}: unexpected message "${String.fromCharCode(reader.type)}" during startup`,
        );
    }
  }
}

function parseRowDescription(body: Uint8Array): string[] {
  const reader = new BodyReader(body);
  const count = reader.int16();
  const columns: string[] = [];
  for (let i = 0; i < count; i++) {
    columns.push(reader.cstr());
    reader.offset += 18; // table oid, column number, type oid, size, modifier, format
  }
  return columns;
}

function parseDataRow(body: Uint8Array): (string | null)[] {
  const reader = new BodyReader(body);
  const count = reader.int16();
  const row: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const length = reader.int32();
    row.push(length < 0 ? null : decoder.decode(reader.bytes(length)));
  }
  return row;
}

/** Quotes an identifier for a replication command or SQL. */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
