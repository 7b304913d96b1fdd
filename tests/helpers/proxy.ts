/**
 * A TCP proxy run by a test between pgferry and a server: every connection
 * accepted on its own port is piped both ways to the server's port, and
 * `cut()` closes all of them at once — what a network blip, a load balancer
 * timing out or a NAT table flush does to a long-lived connection.
 */

/** One client connection and its server connection, piped both ways. */
interface Pair {
  client: Deno.Conn;
  server: Deno.Conn;
  done: Promise<void>;
}

export class TcpProxy implements AsyncDisposable {
  readonly #listener: Deno.Listener;
  readonly #upstream: { hostname: string; port: number };
  /** Connections not cut yet. */
  readonly #pairs = new Set<Pair>();
  /** Every pair's pipes, cut or not, for `close()` to wait on. */
  readonly #pipes = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  #closed = false;
  /** Connections accepted so far. */
  accepted = 0;
  /** Connections closed by `cut()` so far. */
  cuts = 0;

  private constructor(upstream: { hostname: string; port: number }) {
    this.#upstream = upstream;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** Starts a proxy on a free loopback port in front of `uri`'s host and port. */
  static start(uri: string): TcpProxy {
    const url = new URL(uri);
    return new TcpProxy({ hostname: url.hostname, port: Number(url.port || 5432) });
  }

  /** The port pgferry connects to. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** `uri` with its host and port replaced by the proxy's. */
  uriFor(uri: string): string {
    const url = new URL(uri);
    url.hostname = "127.0.0.1";
    url.port = String(this.port);
    return url.toString();
  }

  /** Connections open right now. */
  get open(): number {
    return this.#pairs.size;
  }

  /** Closes every open connection, both sides; returns how many it cut. */
  cut(): number {
    const pairs = [...this.#pairs];
    for (const pair of pairs) {
      closePair(pair);
      this.#pairs.delete(pair);
    }
    this.cuts += pairs.length;
    return pairs.length;
  }

  /** Stops accepting, cuts what is open, and waits for every pipe to finish. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    await this.#accepting;
    for (const pair of this.#pairs) closePair(pair);
    this.#pairs.clear();
    await Promise.all(this.#pipes);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // the listener is closed
      }
      this.accepted++;
      let server: Deno.Conn;
      try {
        server = await Deno.connect(this.#upstream);
      } catch {
        client.close(); // the server is down: the client sees its connection refused, closed
        continue;
      }
      if (this.#closed) {
        client.close();
        server.close();
        continue;
      }
      const pair: Pair = { client, server, done: Promise.resolve() };
      pair.done = Promise.all([pump(client, server), pump(server, client)]).then(() => {
        closePair(pair);
        this.#pairs.delete(pair);
        this.#pipes.delete(pair.done);
      });
      this.#pairs.add(pair);
      this.#pipes.add(pair.done);
    }
  }
}

/** Copies `from` to `to` until either side ends or fails, then closes both. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      let offset = 0;
      while (offset < n) offset += await to.write(buffer.subarray(offset, n));
    }
  } catch {
    // cut, or the other side went away
  }
  for (const conn of [from, to]) {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

function closePair(pair: Pair): void {
  for (const conn of [pair.client, pair.server]) {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}
