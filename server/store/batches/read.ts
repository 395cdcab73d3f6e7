/** Reading batches for GetBatch and ListBatches. */
import { and, asc, desc, eq } from "drizzle-orm";
import type { Db } from "../database.js";
import { type BatchRow, batchItems, batches } from "../schema.js";

export interface BatchFailureRow {
  runId: string;
  error: string;
}

/** The batch and its first `maxFailures` per-run failures (in run id order); undefined if not in this namespace. */
export async function getBatch(db: Db, namespace: string, batchId: string, maxFailures: number): Promise<{ batch: BatchRow; failures: BatchFailureRow[] } | undefined> {
  const [batch] = await db
    .select()
    .from(batches)
    .where(and(eq(batches.namespace, namespace), eq(batches.id, batchId)));
  if (!batch) return undefined;
  const failures = await db
    .select({ runId: batchItems.runId, error: batchItems.error })
    .from(batchItems)
    .where(and(eq(batchItems.batchId, batchId), eq(batchItems.outcome, "failed")))
    .orderBy(asc(batchItems.runId))
    .limit(maxFailures);
  return { batch, failures: failures.map((f) => ({ runId: f.runId, error: f.error ?? "" })) };
}

export async function listBatches(db: Db, namespace: string, limit: number): Promise<BatchRow[]> {
  return db
    .select()
    .from(batches)
    .where(eq(batches.namespace, namespace))
    .orderBy(desc(batches.createdAt), desc(batches.id))
    .limit(limit);
}
