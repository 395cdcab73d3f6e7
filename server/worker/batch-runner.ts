/**
 * Works through stored batches (StartBatch): claims one under its lease, applies its operation chunk by chunk
 * (store/batches/chunk.ts: each chunk one transaction, outcomes committed with the run changes), and marks it
 * completed when no item is pending. Every server runs one. It wakes on NOTIFY `cairn_batches` (committed with a
 * new batch) and on a poll, which also picks up batches whose holder died: their lease lapses and the pending
 * items are all that is left to do.
 */
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { type BatchApply, BatchLeaseLostError, type ChunkOutcome, processChunk } from "../store/batches/chunk.js";
import { claimBatch, completeBatch, failBatch, releaseBatch } from "../store/batches/claim.js";
import type { LocalCommits } from "../store/local-commits.js";
import type { BatchRow } from "../store/schema.js";

const batchChannel = "cairn_batches";

export interface BatchRunnerOptions {
  database: Pick<Database, "db" | "listen">;
  /** This process's lease owner (the worker's). */
  owner: string;
  logger: Logger;
  leaseMs: number;
  pollMs: number;
  /** Runs per chunk (one transaction each), at most. */
  chunkSize: number;
  /** Waiters in this process on a run (watch streams, AwaitRun): a chunk with many applies fewer runs (`runsToTake`). */
  waitersOf?: (runId: string) => number;
  /** The operation of a batch; undefined fails the batch (an operation this server does not know). */
  operationFor: (batch: BatchRow) => BatchApply | undefined;
  /** Where each chunk's runs are marked while it commits (watchers here then wait for its notices, not read). */
  commits?: LocalCommits;
  /** Called after each committed chunk, with its runs by outcome (metrics). */
  onChunk?: (batch: BatchRow, outcomes: ChunkOutcome["outcomes"]) => void;
}

export class BatchRunner {
  private stopped = true;
  private running: Promise<void> | undefined;
  private again = false;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private held: string | undefined;

  constructor(private readonly options: BatchRunnerOptions) {}

  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.options.database.listen(batchChannel, () => this.wake());
    } catch (error) {
      this.options.logger.warn({ err: error }, "LISTEN cairn_batches failed; batches start at the next poll");
    }
    this.pollTimer = setInterval(() => this.wake(), this.options.pollMs);
    this.pollTimer.unref();
    this.wake();
  }

  /** Look for a batch to work on now (one was started, or a holder's lease may have lapsed). */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => (this.running = undefined));
  }

  /** Stops after the chunk under way commits and hands the batch over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    await this.running;
  }

  private async loop(): Promise<void> {
    const { database, owner, logger, leaseMs } = this.options;
    do {
      this.again = false;
      try {
        for (let batch = await claimBatch(database.db, owner, leaseMs); batch && !this.stopped; batch = await claimBatch(database.db, owner, leaseMs)) {
          this.held = batch.id;
          const finished = await this.work(batch);
          // Stopping mid-batch: others may take it at once instead of after the lease lapses.
          if (this.stopped) await releaseBatch(database.db, batch.id, owner).catch(() => undefined);
          this.held = undefined;
          // Items still locked by a stalled earlier holder, or the lease lost: look again at the next poll rather
          // than claiming the same batch again at once.
          if (!finished) break;
        }
      } catch (error) {
        // The lease is kept: this server tries again at its next poll, others once it lapses.
        logger.warn({ err: error, batch: this.held }, "batch runner: will try again at the next poll");
        this.held = undefined;
      }
    } while (this.again && !this.stopped);
  }

  /** True when the batch ended here (completed or failed); false when it was left for later or for others. */
  private async work(batch: BatchRow): Promise<boolean> {
    const { database, owner, logger, leaseMs, chunkSize, waitersOf } = this.options;
    const apply = this.options.operationFor(batch);
    if (!apply) {
      await failBatch(database.db, batch.id, owner, `operation "${batch.operation}" is not known to this server`);
      return true;
    }
    while (!this.stopped) {
      let chunk;
      try {
        chunk = await processChunk(
          database.db,
          { id: batch.id, owner, leaseMs },
          chunkSize,
          apply,
          (error) => logger.warn({ err: error, batch: batch.id }, "batch fast path failed; this chunk's runs are taken one by one"),
          this.options.commits,
          waitersOf && ((runIds) => runsToTake(runIds, waitersOf)),
        );
      } catch (error) {
        if (error instanceof BatchLeaseLostError) {
          logger.warn({ batch: batch.id }, error.message);
          return false;
        }
        throw error;
      }
      for (const notice of chunk.afterCommit) await Promise.resolve(notice()).catch(() => undefined);
      if (chunk.processed > 0) {
        this.options.onChunk?.(batch, chunk.outcomes);
        continue;
      }
      // No pending item this holder could lock: done, unless a stalled earlier holder still has some locked.
      if (!(await completeBatch(database.db, batch.id, owner))) return false;
      logger.info({ batch: batch.id, operation: batch.operation }, "batch completed");
      return true;
    }
    return false;
  }
}

/**
 * Runs with waiters in this process to tell per chunk, at most. Telling a watch stream costs this thread ~0.65 ms (the
 * row and the entry to protobuf, the HTTP/2 writes, the stream's end), and a chunk's waiters are told one after another
 * once it commits: with 200 watched runs per chunk the last heard ~190 ms after the commit, with 50 within ~75 ms
 * (bench/watch-crowd.ts, 10,000 streams).
 */
const waitedRunsPerChunk = 50;

/**
 * How many of a chunk's runs (in the order they are taken) to take: all of them, or up to the one that makes
 * `waitedRunsPerChunk` runs that someone here waits on. The rest stay pending for the next chunk. A batch over runs
 * nobody here waits on keeps its full chunks.
 */
export function runsToTake(runIds: readonly string[], waitersOf: (runId: string) => number): number {
  let waited = 0;
  for (let i = 0; i < runIds.length; i++) {
    if (waitersOf(runIds[i]!) > 0 && ++waited === waitedRunsPerChunk) return i + 1;
  }
  return runIds.length;
}
