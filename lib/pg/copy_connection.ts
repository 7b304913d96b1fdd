/**
 * A plain SQL connection that moves COPY data as raw bytes: a minimal
 * PostgreSQL v3 frontend over `Deno.connect` (trust / cleartext / md5 /
 * SCRAM-SHA-256, optional TLS), simple queries, `COPY … TO STDOUT` and
 * `COPY … FROM STDIN`, and pipelines of simple queries with COPY data (apply's
 * target session: postgres.js's COPY-in loses an error that comes after the
 * data, and cannot share a round trip with other statements).
 *
 * Why not postgres.js here: its COPY streams hand out one Buffer per row and
 * frame every written chunk again, which is per-row JavaScript work on the hot
 * path of a clone. Here a backend's CopyData frames (`'d' len payload`) are
 * passed on untouched — the frontend CopyData frame has the same bytes — so
 * the table copy is: read a socket buffer, skip from frame header to frame
 * header, write the same buffer to the other socket. Memory stays at one
 * receive buffer per connection and TCP flow control slows the source down
 * when the target is slower.
 *
 * Frames (all integers big-endian): `type:u8 length:u32 body`, where `length`
 * counts itself but not `type`; the startup and SSL request have no type byte.
 * Other ordinary SQL uses postgres.js (`connect.ts`); the replication
 * protocol is in `replication.ts`.
 */
import {
  type ConnectionParams,
  md5PasswordResponse,
  parseConnectionString,
  parseErrorFields,
  PgConnectionError,
  PgError,
  ScramSha256,
} from "./replication.ts";

export { PgConnectionError, PgError };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NUL = new Uint8Array(1);
/** COPY data of a pipeline this large goes out after its frame header, uncopied. */
const LARGE_COPY_DATA = 64 * 1024;

const PROTOCOL_VERSION_3 = 196608;
const SSL_REQUEST_CODE = 80877103;
const CANCEL_REQUEST_CODE = 80877102;
const READ_SIZE = 256 * 1024;
const MAX_FRAME = 1024 * 1024 * 1024;

const AUTHENTICATION = 0x52; // R
const BACKEND_KEY_DATA = 0x4b; // K
const COMMAND_COMPLETE = 0x43; // C
const COPY_DATA = 0x64; // d
const COPY_DONE = 0x63; // c
const COPY_FAIL = 0x66; // f
const COPY_IN_RESPONSE = 0x47; // G
const COPY_OUT_RESPONSE = 0x48; // H
const COPY_BOTH_RESPONSE = 0x57; // W
const DATA_ROW = 0x44; // D
const EMPTY_QUERY_RESPONSE = 0x49; // I
const ERROR_RESPONSE = 0x45; // E
const NEGOTIATE_PROTOCOL_VERSION = 0x76; // v
const NOTICE_RESPONSE = 0x4e; // N
const NOTIFICATION_RESPONSE = 0x41; // A
const PARAMETER_STATUS = 0x53; // S
const QUERY = 0x51; // Q
const READY_FOR_QUERY = 0x5a; // Z
const ROW_DESCRIPTION = 0x54; // T
const TERMINATE = 0x58; // X
const PASSWORD = 0x70; // p

/** One frontend frame. */
function frame(type: number | undefined, ...parts: (string | Uint8Array | number)[]): Uint8Array {
  const chunks = parts.map((part) => {
    if (typeof part === "number") {
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setInt32(0, part);
      return bytes;
    }
    if (typeof part === "string") {
      const text = encoder.encode(part);
      const withNul = new Uint8Array(text.length + 1);
      withNul.set(text);
      return withNul;
    }
    return part;
  });
  const size = chunks.reduce((sum, c) => sum + c.length, 0);
  const head = type === undefined ? 0 : 1;
  const out = new Uint8Array(head + 4 + size);
  if (type !== undefined) out[0] = type;
  new DataView(out.buffer).setInt32(head, 4 + size);
  let offset = head + 4;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

const COPY_DONE_FRAME = frame(COPY_DONE);

/** A Query frame of `sql` with one buffer: its text encoded in place. */
function queryFrame(sql: string | Uint8Array): Uint8Array {
  if (typeof sql !== "string") return frame(QUERY, sql, NUL);
  const out = new Uint8Array(5 + sql.length * 3 + 1); // 3 bytes of UTF-8 per UTF-16 unit at most
  const written = encoder.encodeInto(sql, out.subarray(5)).written;
  return setHeader(out, QUERY, written + 1).subarray(0, 5 + written + 1); // the NUL is already there
}

/** Writes a frame's type and length (of a body of `bodyLength` bytes) into `out`'s first 5 bytes. */
function setHeader(out: Uint8Array, type: number, bodyLength: number): Uint8Array {
  out[0] = type;
  new DataView(out.buffer, out.byteOffset).setInt32(1, 4 + bodyLength);
  return out;
}

function cstrings(body: Uint8Array, offset = 0): string[] {
  const out: string[] = [];
  while (offset < body.length) {
    const end = body.indexOf(0, offset);
    if (end < 0) break;
    out.push(decoder.decode(body.subarray(offset, end)));
    offset = end + 1;
  }
  return out;
}

/** Rows of a simple query, every value as text. */
export interface QueryResult {
  columns: string[];
  rows: (string | null)[][];
  /** The CommandComplete tag, e.g. `COPY 12`. */
  command: string;
}

/** One simple query of a pipeline; a `COPY … FROM STDIN` carries its data. */
export interface PipelineStep {
  /** The query's text, or its UTF-8 bytes. */
  sql: string | Uint8Array;
  /** The whole COPY data (text format lines); only for a `COPY … FROM STDIN`. */
  copyData?: Uint8Array;
}

/** What a COPY moved. */
export interface CopyCount {
  /** Rows, from the CommandComplete tag. */
  rows: number;
  /** Payload bytes of the CopyData frames (without their 5-byte headers). */
  bytes: number;
}

/**
 * Receives raw CopyData frames. The concatenation of every chunk given to a
 * sink is exactly the backend's sequence of CopyData frames, headers included;
 * a chunk may end or start in the middle of a frame. The chunk is only valid
 * until the returned promise settles.
 */
export type CopySink = (frames: Uint8Array) => void | Promise<void>;

export interface CopyConnectOptions {
  /** Startup parameters (GUCs) on top of the connection string's. */
  parameters?: Record<string, string>;
  /** Which side this is, for messages: "source" or "target". */
  role?: string;
}

type State = "idle" | "busy" | "copy-in" | "closed";

/** A connection for simple queries and raw COPY streams. */
export class CopyConnection implements AsyncDisposable {
  /** Server parameters (server_version, server_encoding, …). */
  readonly serverParameters: Map<string, string>;
  /** Backend process id. */
  readonly processId: number;
  #conn: Deno.Conn;
  #buffer = new Uint8Array(READ_SIZE);
  #view = new DataView(this.#buffer.buffer);
  #start = 0;
  #end = 0;
  #state: State = "idle";
  #failure: unknown;
  #params: ConnectionParams;
  #describe: string;
  /** The backend's cancel key (BackendKeyData). */
  #secret = 0;

  private constructor(conn: Deno.Conn, params: ConnectionParams) {
    this.#conn = conn;
    this.serverParameters = new Map();
    this.processId = 0;
    this.#params = params;
    this.#describe = describeServer(params);
  }

  /** Connects and authenticates. */
  static async connect(pguri: string, options: CopyConnectOptions = {}): Promise<CopyConnection> {
    const params = parseConnectionString(pguri);
    const where = describeServer(params);
    const context = `Cannot connect to the ${
      options.role ?? "PostgreSQL"
    } server ${where} as "${params.user}"`;
    const timeout = params.connectTimeoutMs > 0
      ? AbortSignal.timeout(params.connectTimeoutMs)
      : undefined;
    let conn: Deno.Conn | undefined;
    const onAbort = () => conn?.close();
    timeout?.addEventListener("abort", onAbort, { once: true });
    try {
      conn = await openSocket(params, timeout, context);
      const connection = new CopyConnection(conn, params);
      const processId = await connection.#startup(params, options.parameters ?? {}, context);
      (connection as { processId: number }).processId = processId;
      return connection;
    } catch (err) {
      try {
        conn?.close();
      } catch { /* closed by the timeout */ }
      if (err instanceof PgError || err instanceof PgConnectionError) throw err;
      const why = timeout?.aborted === true
        ? `timed out after ${params.connectTimeoutMs / 1000} s`
        : errorText(err);
      throw new PgConnectionError("08001", `${context}: ${why}`, { cause: err });
    } finally {
      timeout?.removeEventListener("abort", onAbort);
    }
  }

  /** The server's major version number (15 for "15.8"). */
  get serverMajor(): number {
    return Number((this.serverParameters.get("server_version") ?? "0").split(/[.\s]/)[0]);
  }

  /** Runs one simple-protocol query string (several statements allowed); returns the last result. */
  async query(sql: string): Promise<QueryResult> {
    this.#enter("idle", "busy");
    await this.#write(queryFrame(sql));
    let result: QueryResult = { columns: [], rows: [], command: "" };
    let error: PgError | undefined;
    for (;;) {
      const { type, body } = await this.#next();
      switch (type) {
        case ROW_DESCRIPTION:
          result = { columns: parseRowDescription(body), rows: [], command: "" };
          break;
        case DATA_ROW:
          result.rows.push(parseDataRow(body));
          break;
        case COMMAND_COMPLETE:
          result.command = cstrings(body)[0] ?? "";
          break;
        case EMPTY_QUERY_RESPONSE:
          break;
        case ERROR_RESPONSE:
          error = new PgError(parseErrorFields(body));
          break;
        case COPY_IN_RESPONSE:
          // Not ours to feed: refuse, the server answers with an error.
          await this.#write(frame(COPY_FAIL, "COPY FROM STDIN is not supported by query()"));
          break;
        case COPY_OUT_RESPONSE:
        case COPY_DATA:
        case COPY_DONE:
          break;
        case COPY_BOTH_RESPONSE:
          throw this.#fail(new PgConnectionError("08P01", "Unexpected CopyBothResponse"));
        case READY_FOR_QUERY:
          this.#state = "idle";
          if (error !== undefined) throw error;
          return result;
        default:
          throw this.#unexpected(type, "a query");
      }
    }
  }

  /**
   * Runs `COPY … TO STDOUT` and gives the raw CopyData frames to `sink`, one
   * socket read at a time, awaiting the sink before reading on.
   */
  async copyOut(sql: string, sink: CopySink): Promise<CopyCount> {
    this.#enter("idle", "busy");
    await this.#write(queryFrame(sql));
    let error: PgError | undefined;
    // Up to CopyOutResponse (or an error).
    for (;;) {
      const { type, body } = await this.#next();
      if (type === COPY_OUT_RESPONSE) break;
      if (type === ERROR_RESPONSE) error = new PgError(parseErrorFields(body));
      else if (type === READY_FOR_QUERY) {
        this.#state = "idle";
        throw error ?? new TypeError(`Not a COPY TO STDOUT statement: ${sql.slice(0, 80)}`);
      } else if (type !== ROW_DESCRIPTION && type !== DATA_ROW && type !== COMMAND_COMPLETE) {
        throw this.#unexpected(type, "COPY TO STDOUT");
      }
    }
    let bytes = 0;
    let frames = 0;
    // Bytes of the current CopyData frame not yet handed on (its header included).
    let pending = 0;
    for (;;) {
      const buffer = this.#buffer;
      let pos = this.#start;
      const end = this.#end;
      while (pos < end) {
        if (pending > 0) {
          const take = Math.min(pending, end - pos);
          pos += take;
          pending -= take;
          continue;
        }
        if (end - pos < 5 || buffer[pos] !== COPY_DATA) break;
        const length = this.#view.getUint32(pos + 1);
        if (length < 4 || length > MAX_FRAME) {
          throw this.#fail(new PgConnectionError("08P01", `Invalid CopyData length ${length}`));
        }
        bytes += length - 4;
        frames++;
        pending = 1 + length;
      }
      if (pos > this.#start) {
        const chunk = buffer.subarray(this.#start, pos);
        this.#start = pos;
        try {
          await sink(chunk);
        } catch (err) {
          // The rest of the copy is not wanted: cancel is not possible on this socket, so close it.
          throw this.#fail(err);
        }
      }
      if (pending === 0 && this.#end - this.#start >= 5 && buffer[this.#start] !== COPY_DATA) {
        // Something else than data: CopyDone, an error, a notice. Read it whole first.
        const length = this.#view.getUint32(this.#start + 1);
        if (length < 4 || length > MAX_FRAME) {
          throw this.#fail(new PgConnectionError("08P01", `Invalid message length ${length}`));
        }
        if (this.#end - this.#start < 1 + length) {
          await this.#fill();
          continue;
        }
        const type = buffer[this.#start]!;
        const body = buffer.subarray(this.#start + 5, this.#start + 1 + length);
        this.#start += 1 + length;
        if (type === COPY_DONE) break;
        if (type === ERROR_RESPONSE) {
          error = new PgError(parseErrorFields(body));
          break;
        }
        if (type === PARAMETER_STATUS) {
          const [name, value] = cstrings(body);
          if (name !== undefined) this.serverParameters.set(name, value ?? "");
        } else if (type !== NOTICE_RESPONSE && type !== NOTIFICATION_RESPONSE) {
          throw this.#unexpected(type, "COPY TO STDOUT");
        }
        continue;
      }
      await this.#fill();
    }
    let rows = frames;
    for (;;) {
      const { type, body } = await this.#next();
      if (type === COMMAND_COMPLETE) rows = copyRows(body, frames);
      else if (type === ERROR_RESPONSE) error ??= new PgError(parseErrorFields(body));
      else if (type === READY_FOR_QUERY) break;
      else if (type !== COPY_DATA && type !== COPY_DONE) throw this.#unexpected(type, "COPY");
    }
    this.#state = "idle";
    if (error !== undefined) throw error;
    return { rows, bytes };
  }

  /**
   * Sends simple queries back to back, each COPY's data right after its query,
   * then reads every answer: one round trip for all of them. A COPY that fails
   * before it reads its data leaves the server skipping that data (as the
   * protocol has it), so a failure never desynchronises the stream. Throws the
   * first error once every query has answered.
   */
  async pipeline(steps: readonly PipelineStep[]): Promise<void> {
    this.#enter("idle", "busy");
    for (const step of steps) {
      await this.#write(queryFrame(step.sql));
      const data = step.copyData;
      if (data === undefined) continue;
      if (data.length < LARGE_COPY_DATA) {
        await this.#write(frame(COPY_DATA, data));
      } else {
        // Its header, then the data as it is: no copy of megabytes of rows.
        await this.#write(setHeader(new Uint8Array(5), COPY_DATA, data.length));
        await this.#write(data);
      }
      await this.#write(COPY_DONE_FRAME);
    }
    let error: PgError | undefined;
    for (const step of steps) {
      for (;;) {
        const { type, body } = await this.#next();
        if (type === READY_FOR_QUERY) break;
        if (type === ERROR_RESPONSE) error ??= new PgError(parseErrorFields(body));
        else if (type === COPY_IN_RESPONSE && step.copyData === undefined) {
          // Its data would be the queries that follow: nothing sane is left.
          throw this.#unexpected(type, "a pipeline without COPY data");
        } else if (type === COPY_BOTH_RESPONSE) throw this.#unexpected(type, "a pipeline");
      }
    }
    this.#state = "idle";
    if (error !== undefined) throw error;
  }

  /**
   * Asks the server to cancel what this connection runs now (a CancelRequest
   * on a connection of its own); the command then fails with 57014.
   */
  async cancel(): Promise<void> {
    const conn = await openSocket(this.#params, undefined, `Cannot cancel on ${this.#describe}`);
    try {
      await writeAll(conn, frame(undefined, CANCEL_REQUEST_CODE, this.processId, this.#secret));
      await conn.read(new Uint8Array(1)); // the server closes it when done
    } finally {
      try {
        conn.close();
      } catch { /* closed by the server */ }
    }
  }

  /** Runs `COPY … FROM STDIN` and waits for the server to accept data. */
  async startCopyIn(sql: string): Promise<void> {
    this.#enter("idle", "busy");
    await this.#write(queryFrame(sql));
    let error: PgError | undefined;
    for (;;) {
      const { type, body } = await this.#next();
      if (type === COPY_IN_RESPONSE) {
        this.#state = "copy-in";
        return;
      }
      if (type === ERROR_RESPONSE) error = new PgError(parseErrorFields(body));
      else if (type === READY_FOR_QUERY) {
        this.#state = "idle";
        throw error ?? new TypeError(`Not a COPY FROM STDIN statement: ${sql.slice(0, 80)}`);
      } else if (type !== ROW_DESCRIPTION && type !== DATA_ROW && type !== COMMAND_COMPLETE) {
        throw this.#unexpected(type, "COPY FROM STDIN");
      }
    }
  }

  /** Sends raw CopyData frames (as `copyOut` hands them out) during `startCopyIn`. */
  async writeCopyFrames(frames: Uint8Array): Promise<void> {
    if (this.#state !== "copy-in") {
      throw this.#failure ??
        new TypeError(`Cannot send COPY data: the connection is ${this.#state}`);
    }
    await this.#write(frames);
  }

  /** Sends one CopyData frame with this payload. */
  writeCopyData(payload: Uint8Array): Promise<void> {
    return this.writeCopyFrames(frame(COPY_DATA, payload));
  }

  /** Ends COPY FROM STDIN with CopyDone; returns the number of rows the server took. */
  async endCopyIn(): Promise<number> {
    this.#enter("copy-in", "busy");
    await this.#write(frame(COPY_DONE));
    return await this.#copyInResult();
  }

  /** Aborts COPY FROM STDIN with CopyFail; the server rolls the COPY back. */
  async failCopyIn(reason: string): Promise<void> {
    if (this.#state !== "copy-in") return;
    this.#state = "busy";
    await this.#write(frame(COPY_FAIL, reason));
    try {
      await this.#copyInResult();
    } catch (err) {
      if (!(err instanceof PgError)) throw err;
    }
  }

  async #copyInResult(): Promise<number> {
    let error: PgError | undefined;
    let rows = 0;
    for (;;) {
      const { type, body } = await this.#next();
      if (type === COMMAND_COMPLETE) rows = copyRows(body, 0);
      else if (type === ERROR_RESPONSE) error = new PgError(parseErrorFields(body));
      else if (type === READY_FOR_QUERY) break;
      else throw this.#unexpected(type, "the end of COPY FROM STDIN");
    }
    this.#state = "idle";
    if (error !== undefined) throw error;
    return rows;
  }

  /** True until the connection is closed or broken. */
  get usable(): boolean {
    return this.#state !== "closed";
  }

  /** Sends Terminate and closes the socket. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    const usable = this.#failure === undefined;
    this.#state = "closed";
    this.#failure = new PgConnectionError("08003", "The connection is closed");
    if (usable) {
      try {
        await writeAll(this.#conn, frame(TERMINATE));
      } catch { /* closing anyway */ }
    }
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- internals -------------------------------------------------------------

  async #startup(
    params: ConnectionParams,
    extra: Record<string, string>,
    context: string,
  ): Promise<number> {
    const parameters: Record<string, string> = {
      user: params.user,
      database: params.database,
      application_name: "pgferry",
      client_encoding: "UTF8",
      ...params.parameters,
      ...extra,
    };
    const parts: string[] = [];
    for (const [key, value] of Object.entries(parameters)) parts.push(key, value);
    await writeAll(this.#conn, frame(undefined, PROTOCOL_VERSION_3, ...parts, new Uint8Array(1)));
    let processId = 0;
    let scram: ScramSha256 | undefined;
    const password = () => {
      if (params.password === undefined) {
        throw new PgConnectionError(
          "28000",
          `${context}: the server asks for a password and none was given`,
          { hint: "put the password in the connection string or in PGPASSWORD" },
        );
      }
      return params.password;
    };
    for (;;) {
      const { type, body } = await this.#next();
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      switch (type) {
        case AUTHENTICATION: {
          const kind = view.getInt32(0);
          if (kind === 0) break;
          if (kind === 3) {
            await this.#write(frame(PASSWORD, password()));
          } else if (kind === 5) {
            const answer = await md5PasswordResponse(params.user, password(), body.subarray(4, 8));
            await this.#write(frame(PASSWORD, answer));
          } else if (kind === 10) {
            const mechanisms = cstrings(body, 4).filter((m) => m !== "");
            if (!mechanisms.includes("SCRAM-SHA-256")) {
              throw new PgConnectionError(
                "0A000",
                `${context}: unsupported SASL mechanisms ${mechanisms.join(", ")}`,
              );
            }
            scram = new ScramSha256(password());
            const first = encoder.encode(scram.clientFirstMessage());
            await this.#write(frame(PASSWORD, "SCRAM-SHA-256", first.length, first));
          } else if (kind === 11 && scram !== undefined) {
            const final = await scram.clientFinalMessage(decoder.decode(body.subarray(4)));
            await this.#write(frame(PASSWORD, encoder.encode(final)));
          } else if (kind === 12 && scram !== undefined) {
            scram.verifyServerFinalMessage(decoder.decode(body.subarray(4)));
          } else {
            throw new PgConnectionError(
              "0A000",
              `${context}: unsupported authentication method (code ${kind})`,
            );
          }
          break;
        }
        case BACKEND_KEY_DATA:
          processId = view.getInt32(0);
          this.#secret = view.getInt32(4);
          break;
        case NEGOTIATE_PROTOCOL_VERSION:
          break;
        case ERROR_RESPONSE:
          throw new PgError(parseErrorFields(body), context);
        case READY_FOR_QUERY:
          return processId;
        default:
          throw new PgConnectionError(
            "08P01",
            `${context}: unexpected message "${String.fromCharCode(type)}" during startup`,
          );
      }
    }
  }

  #enter(from: State, to: State): void {
    if (this.#state !== from) {
      throw this.#failure ??
        new TypeError(`Cannot run a command: the connection is ${this.#state}`);
    }
    this.#state = to;
  }

  /** The next whole message, with notices and parameter changes handled on the way. */
  async #next(): Promise<{ type: number; body: Uint8Array }> {
    for (;;) {
      const available = this.#end - this.#start;
      if (available >= 5) {
        const length = this.#view.getUint32(this.#start + 1);
        if (length < 4 || length > MAX_FRAME) {
          throw this.#fail(new PgConnectionError("08P01", `Invalid message length ${length}`));
        }
        if (available >= 1 + length) {
          const type = this.#buffer[this.#start]!;
          const body = this.#buffer.subarray(this.#start + 5, this.#start + 1 + length);
          this.#start += 1 + length;
          if (type === NOTICE_RESPONSE || type === NOTIFICATION_RESPONSE) continue;
          if (type === PARAMETER_STATUS) {
            const [name, value] = cstrings(body);
            if (name !== undefined) this.serverParameters.set(name, value ?? "");
            continue;
          }
          return { type, body };
        }
      }
      await this.#fill();
    }
  }

  /** Reads more bytes, first moving what is left to the front (or into a bigger buffer). */
  async #fill(): Promise<void> {
    const pending = this.#end - this.#start;
    const needed = pending >= 5 ? 1 + this.#view.getUint32(this.#start + 1) : 5;
    if (pending === 0) {
      this.#start = this.#end = 0;
    } else if (
      this.#start + needed > this.#buffer.length || this.#buffer.length - this.#end < 16384
    ) {
      if (needed <= this.#buffer.length && pending < this.#buffer.length) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        const next = new Uint8Array(Math.max(READ_SIZE, needed, pending + READ_SIZE));
        next.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = next;
        this.#view = new DataView(next.buffer);
      }
      this.#start = 0;
      this.#end = pending;
    }
    let count: number | null;
    try {
      count = await this.#conn.read(this.#buffer.subarray(this.#end));
    } catch (err) {
      throw this.#failure ?? this.#fail(this.#lost(err));
    }
    if (count === null) throw this.#failure ?? this.#fail(this.#lost());
    this.#end += count;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    if (this.#state === "closed") throw this.#failure;
    try {
      await writeAll(this.#conn, bytes);
    } catch (err) {
      throw this.#failure ?? this.#fail(this.#lost(err));
    }
  }

  #lost(cause?: unknown): PgConnectionError {
    return new PgConnectionError(
      "08006",
      `Lost the connection to ${this.#describe}${
        cause === undefined ? ": the server closed it" : `: ${errorText(cause)}`
      }`,
      cause === undefined ? {} : { cause },
    );
  }

  #unexpected(type: number, during: string): unknown {
    return this.#fail(
      new PgConnectionError(
        "08P01",
        `Unexpected message "${String.fromCharCode(type)}" from the server during ${during}`,
      ),
    );
  }

  /** Marks the connection unusable with `reason`, closes the socket, returns the reason. */
  #fail(reason: unknown): unknown {
    if (this.#failure === undefined) this.#failure = reason;
    this.#state = "closed";
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    return reason;
  }
}

/**
 * Copies with `COPY … TO STDOUT` on `source` into `COPY … FROM STDIN` on
 * `target`, passing the CopyData frames through as they arrive. A failure on
 * either side aborts the target's COPY (CopyFail) and is rethrown.
 * `onProgress` hears the bytes passed so far (frame headers included).
 */
export async function pipeCopy(
  source: CopyConnection,
  copyOutSql: string,
  target: CopyConnection,
  copyInSql: string,
  onProgress?: (bytes: number) => void,
): Promise<CopyCount> {
  await target.startCopyIn(copyInSql);
  let count: CopyCount;
  let passed = 0;
  try {
    count = await source.copyOut(copyOutSql, (frames) => {
      passed += frames.length;
      onProgress?.(passed);
      return target.writeCopyFrames(frames);
    });
  } catch (err) {
    if (target.usable) await target.failCopyIn(`source failed: ${errorText(err)}`).catch(() => {});
    throw err;
  }
  const rows = await target.endCopyIn();
  return { rows, bytes: count.bytes };
}

function copyRows(body: Uint8Array, fallback: number): number {
  const tag = cstrings(body)[0] ?? "";
  const match = /^COPY (\d+)$/.exec(tag);
  return match === null ? fallback : Number(match[1]);
}

function parseRowDescription(body: Uint8Array): string[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = view.getInt16(0);
  const columns: string[] = [];
  let offset = 2;
  for (let i = 0; i < count; i++) {
    const end = body.indexOf(0, offset);
    columns.push(decoder.decode(body.subarray(offset, end)));
    offset = end + 1 + 18;
  }
  return columns;
}

function parseDataRow(body: Uint8Array): (string | null)[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = view.getInt16(0);
  const row: (string | null)[] = [];
  let offset = 2;
  for (let i = 0; i < count; i++) {
    const length = view.getInt32(offset);
    offset += 4;
    if (length < 0) {
      row.push(null);
    } else {
      row.push(decoder.decode(body.subarray(offset, offset + length)));
      offset += length;
    }
  }
  return row;
}

function describeServer(params: ConnectionParams): string {
  return params.host.startsWith("/")
    ? `socket "${params.host}/.s.PGSQL.${params.port}"`
    : `"${params.host}:${params.port}"`;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

async function openSocket(
  params: ConnectionParams,
  signal: AbortSignal | undefined,
  context: string,
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
  await writeAll(tcp, frame(undefined, SSL_REQUEST_CODE));
  const answer = new Uint8Array(1);
  const count = await tcp.read(answer);
  if (count === 1 && answer[0] === 0x4e /* N */) {
    if (params.sslmode === "prefer") return tcp;
    tcp.close();
    throw new PgConnectionError(
      "08001",
      `${context}: the server does not support TLS (sslmode=${params.sslmode})`,
    );
  }
  if (count !== 1 || answer[0] !== 0x53 /* S */) {
    tcp.close();
    // Closed before it answered (a restart, a proxy): a lost connection, retried like one.
    throw count === null
      ? new PgConnectionError("08006", `${context}: closed before answering the TLS request`)
      : new PgConnectionError("08P01", `${context}: invalid answer to the TLS request`);
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
      return await openSocket({ ...params, sslmode: "disable" }, signal, context);
    }
    throw new PgConnectionError("08001", `${context}: TLS handshake failed: ${errorText(err)}`, {
      cause: err,
      hint: params.sslrootcert === undefined
        ? `sslmode=${params.sslmode} verifies the server certificate against the system's roots here: pass sslrootcert=<CA file>`
        : `check that "${params.sslrootcert}" holds the CA that signed the server certificate`,
    });
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
