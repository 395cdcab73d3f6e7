/**
 * Gathers the reads of every RunTail of this process into batches (store/tail-reads.ts): one batch in flight at a
 * time, and every tail that wants a read meanwhile joins the next one, as the journal writer gathers writes. A burst
 * of changes to many watched runs becomes a few pairs of statements instead of three statements per run.
 */
import type { Db } from "../store/database.js";
import { readTails, type TailRead, type TailWanted } from "../store/tail-reads.js";

/** Tails per batch: the entries statement ORs one index range per tail. */
const maxBatch = 200;

interface Waiting {
  wanted: TailWanted;
  resolve(read: TailRead): void;
  reject(error: unknown): void;
}

export class TailReader {
  private queue: Waiting[] = [];
  private flushing = false;

  constructor(private readonly db: Db) {}

  read(wanted: TailWanted): Promise<TailRead> {
    return new Promise<TailRead>((resolve, reject) => {
      this.queue.push({ wanted, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // The rest of this turn's changes join the first batch too.
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, maxBatch);
      try {
        const reads = await readTails(this.db, batch.map((w) => w.wanted));
        batch.forEach((waiting, i) => waiting.resolve(reads[i]!));
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
      }
    }
    this.flushing = false;
  }
}
