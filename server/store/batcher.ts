/**
 * Group commit: items submitted while earlier statements are in flight are
 * written together by one statement, so many runs share a round trip and a
 * commit. Each item's promise settles only after the statement that carried
 * it has committed (or failed). Under light load a batch holds one item and
 * costs one turn of the event loop.
 *
 * When a batch statement fails, nothing of it was written (one statement is
 * one transaction). Each item is then tried alone, so one run's bad value (or
 * a deadlock with another statement) cannot fail another run's write.
 */
export interface BatcherOptions {
  /** The most items in one statement. */
  maxBatch?: number;
  /** The most statements in flight at once; items arriving meanwhile wait for the next batch. */
  maxInFlight?: number;
}

/**
 * How long a batch gathers items before its statement goes: `flush` is called once the producers that are about to
 * add items have had their turn.
 */
export type Gather = (flush: () => void) => void;

/** One turn of the event loop lets every activation on this thread that is ready add its item first. */
export const oneTurn: Gather = (flush) => setImmediate(flush);

interface Pending<T, R> {
  item: T;
  resolve(result: R): void;
  reject(error: unknown): void;
}

export class Batcher<T, R> {
  private queue: Pending<T, R>[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private gather: Gather = oneTurn;

  /** `write` answers one result per item, in the items' order. */
  constructor(
    private readonly write: (items: T[]) => Promise<R[]>,
    options: BatcherOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 256;
    this.maxInFlight = options.maxInFlight ?? 4;
  }

  /** Replaces how batches gather items (activations on other threads add theirs later than one turn of this one). */
  gatherWith(gather: Gather): void {
    this.gather = gather;
  }

  submit(item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** The items queued for the next statement, oldest first. */
  queued(): T[] {
    return this.queue.map((pending) => pending.item);
  }

  /**
   * Takes back the queued items that `match` picks before any statement carries them (the caller writes them another
   * way): each one's promise resolves with `answer`. Items in flight are not touched.
   */
  withdraw(match: (item: T) => boolean, answer: R): T[] {
    const taken: Pending<T, R>[] = [];
    this.queue = this.queue.filter((pending) => {
      if (!match(pending.item)) return true;
      taken.push(pending);
      return false;
    });
    for (const pending of taken) pending.resolve(answer);
    return taken.map((pending) => pending.item);
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    this.gather(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.schedule();
      });
      // Keep the rest for when a statement finishes: bigger batches, fewer commits.
      if (this.queue.length < this.maxBatch) break;
    }
  }

  private async run(batch: Pending<T, R>[]): Promise<void> {
    let results: R[];
    try {
      results = await this.write(batch.map((p) => p.item));
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // Nothing of the batch committed: find the culprit by writing each alone.
      await Promise.all(batch.map((p) => this.run([p])));
      return;
    }
    batch.forEach((p, i) => p.resolve(results[i]!));
  }
}
