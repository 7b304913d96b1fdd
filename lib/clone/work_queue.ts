/**
 * A queue that a fixed number of workers drain while other work keeps adding
 * to it, the shape of every clone stage: COPY parts, index builds, vacuums.
 */

/** Items handed to workers in the order pushed; `close()` says no more will come. */
export class WorkQueue<T> {
  #items: T[] = [];
  #closed = false;
  #failure: { error: unknown } | undefined;
  #waiting: ((item: T | undefined) => void)[] = [];

  /** Adds work; a waiting worker takes it at once. */
  push(...items: T[]): void {
    if (this.#closed) throw new TypeError("Cannot add work to a closed queue");
    for (const item of items) {
      const waiter = this.#waiting.shift();
      if (waiter) waiter(item);
      else this.#items.push(item);
    }
  }

  /** No more work will be pushed: workers stop once the queue is empty. */
  close(): void {
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) waiter(undefined);
  }

  /** Drops queued work and stops the workers after their current item. */
  fail(error: unknown): void {
    this.#failure ??= { error };
    this.#items = [];
    this.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The next item, or undefined once the queue is closed and empty. */
  next(): Promise<T | undefined> {
    if (this.#failure) return Promise.resolve(undefined);
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.#closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /**
   * Runs `count` workers until the queue is closed and empty. Each worker gets
   * its own state from `open` (connections), released by `close` at the end. The
   * first failure stops the queue and is rethrown once every worker has stopped.
   */
  async run<S>(
    count: number,
    open: () => S,
    handle: (item: T, state: S) => Promise<void>,
    close: (state: S) => Promise<void>,
  ): Promise<void> {
    const worker = async () => {
      const state = open();
      try {
        for (let item = await this.next(); item !== undefined; item = await this.next()) {
          await handle(item, state);
        }
      } catch (err) {
        this.fail(err);
      } finally {
        await close(state);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, count) }, worker));
    if (this.#failure) throw this.#failure.error;
  }
}
