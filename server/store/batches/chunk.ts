/**
 * One chunk of a batch, in one transaction: up to `size` pending items are locked (SKIP LOCKED), the operation is
 * applied to each run in a savepoint, each item's outcome is written next to the run's change, and the counters
 * and the lease are updated under the batch's fence. Killed anywhere before the commit, nothing of the chunk is
 * kept (neither the run changes nor the outcomes), so the next holder applies it once; after the commit, the
 * items are no longer pending.
 */
import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../database.js";
import type { LocalCommits } from "../local-commits.js";
import type { BatchItemOutcome } from "../schema.js";

export interface ItemResult {
  outcome: Exclude<BatchItemOutcome, "pending">;
  /** Why it failed, shown by GetBatch. */
  error?: string;
  /** Notices to send once the chunk has committed (wake a worker, stop an activation, tell watchers). */
  afterCommit?: () => Promise<void> | void;
}

/** Applies the operation to one run inside the given transaction (a savepoint of the chunk's). */
export type ApplyToRun = (tx: Db, runId: string) => Promise<ItemResult>;

/**
 * An operation: `one` for any run; `many`, optional, a set-based fast path over the whole chunk that handles the
 * runs it can (answering their results) and leaves the others to `one`.
 */
export interface BatchApply {
  one: ApplyToRun;
  many?: (tx: Db, runIds: readonly string[]) => Promise<Map<string, ItemResult>>;
}

export class BatchLeaseLostError extends Error {
  constructor(batchId: string) {
    super(`batch ${batchId}: its lease passed to another server`);
  }
}

export interface ChunkOutcome {
  processed: number;
  /** Runs by outcome in this chunk. */
  outcomes: Record<Exclude<BatchItemOutcome, "pending">, number>;
  afterCommit: (() => Promise<void> | void)[];
}

export async function processChunk(
  db: Db,
  batch: { id: string; owner: string; leaseMs: number },
  size: number,
  apply: BatchApply,
  onFastPathError: (error: unknown) => void = () => {},
  /** Where the chunk's runs are marked while it commits; their mark ends after the last `afterCommit` notice. */
  commits?: LocalCommits,
  /** How many of the pending runs taken (in order) this chunk applies; the rest stay pending for the next. */
  take?: (runIds: readonly string[]) => number,
): Promise<ChunkOutcome> {
  let settle: (() => void) | undefined;
  try {
    return await chunkTransaction(db, batch, size, apply, onFastPathError, take, (runIds) => {
      settle = commits?.begin(runIds);
      return settle;
    });
  } catch (error) {
    settle?.();
    throw error;
  }
}

async function chunkTransaction(
  db: Db,
  batch: { id: string; owner: string; leaseMs: number },
  size: number,
  apply: BatchApply,
  onFastPathError: (error: unknown) => void,
  take: ((runIds: readonly string[]) => number) | undefined,
  mark: (runIds: readonly string[]) => (() => void) | undefined,
): Promise<ChunkOutcome> {
  return db.transaction(async (tx) => {
    // Run id order is the order the runs' rows are locked in, as the store's other multi-run writers do.
    const locked = await queryRows<{ run_id: string }>(
      tx,
      sql`select run_id from batch_items where batch_id = ${batch.id} and outcome = 'pending'
          order by run_id limit ${size} for update skip locked`,
    );
    // (Those left out stay pending; their locks go with this transaction.)
    const items = take ? locked.slice(0, Math.max(1, take(locked.map((i) => i.run_id)))) : locked;
    if (items.length === 0) return { processed: 0, outcomes: { done: 0, skipped: 0, failed: 0 }, afterCommit: [] };
    // From here until the notices below are out, watchers here of these runs wait for them rather than read.
    const settle = mark(items.map((i) => i.run_id));
    const results: { runId: string; result: ItemResult }[] = [];
    let handled = new Map<string, ItemResult>();
    if (apply.many) {
      const many = apply.many;
      // In a savepoint too: if the fast path fails, every run of the chunk goes the one-by-one way instead.
      handled = await tx.transaction((savepoint) => many(savepoint, items.map((i) => i.run_id))).catch((error: unknown) => {
        onFastPathError(error);
        return new Map<string, ItemResult>();
      });
    }
    for (const { run_id: runId } of items) {
      let result = handled.get(runId);
      if (!result) {
        try {
          // A savepoint: a run whose change throws is rolled back alone and recorded as failed.
          result = await tx.transaction((savepoint) => apply.one(savepoint, runId));
        } catch (error) {
          // A deadlock or a lost connection says nothing about the run: the whole chunk is tried again later.
          if (isTransient(error)) throw error;
          result = { outcome: "failed", error: error instanceof Error ? error.message : String(error) };
        }
      }
      results.push({ runId, result });
    }
    await queryRows(
      tx,
      sql`update batch_items set outcome = u.outcome, error = u.error
          from unnest(${sql.param(results.map((r) => r.runId))}::uuid[], ${sql.param(results.map((r) => r.result.outcome))}::text[],
                      ${sql.param(results.map((r) => r.result.error ?? null))}::text[]) as u(run_id, outcome, error)
          where batch_items.batch_id = ${batch.id} and batch_items.run_id = u.run_id`,
    );
    const skipped = results.filter((r) => r.result.outcome === "skipped").length;
    const failed = results.filter((r) => r.result.outcome === "failed").length;
    const fenced = await queryRows<{ id: string }>(
      tx,
      sql`update batches set processed_count = processed_count + ${results.length}, skipped_count = skipped_count + ${skipped},
            failed_count = failed_count + ${failed}, lease_until = now() + ${batch.leaseMs} * interval '1 millisecond'
          where id = ${batch.id} and lease_owner = ${batch.owner} and status = 'running'
          returning id`,
    );
    // Another server holds the batch now (this one stalled past its lease): roll the whole chunk back.
    if (fenced.length === 0) throw new BatchLeaseLostError(batch.id);
    const outcomes = { done: results.length - skipped - failed, skipped, failed };
    const notices = results.flatMap((r) => (r.result.afterCommit ? [r.result.afterCommit] : []));
    return { processed: results.length, outcomes, afterCommit: settle ? [...notices, settle] : notices };
  });
}

/** SQLSTATEs of a failure that a later attempt may not meet: deadlock, serialization, lock or statement timeouts, and connection classes. */
function isTransient(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (["40P01", "40001", "55P03", "57014", "57P01"].includes(code) || code.startsWith("08"))) return true;
  }
  return false;
}
