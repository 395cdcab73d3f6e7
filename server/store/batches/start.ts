/**
 * Starting a batch: the runs a filter selects are frozen into `batch_items` in the transaction that inserts the
 * batch row (one INSERT … SELECT), so the count is exact and every selected run is handled once, whatever runs
 * are created or change meanwhile. If the process dies before the commit, nothing is stored.
 */
import { and, count, desc, sql } from "drizzle-orm";
import { type Db, queryRows } from "../database.js";
import { runFilterConditions, type RunFilter } from "../runs/read.js";
import { type BatchOperation, type BatchRow, batches, runs } from "../schema.js";

/** A dry run: how many runs the filter selects now, and the newest `sampleSize` of their ids. */
export async function previewBatch(db: Db, namespace: string, filter: RunFilter, sampleSize: number): Promise<{ count: number; sample: string[] }> {
  const where = and(...runFilterConditions(namespace, filter));
  const [counted] = await db.select({ n: count() }).from(runs).where(where);
  const sample = await db
    .select({ id: runs.id })
    .from(runs)
    .where(where)
    .orderBy(desc(runs.createdAt), desc(runs.id))
    .limit(sampleSize);
  return { count: counted?.n ?? 0, sample: sample.map((r) => r.id) };
}

export interface NewBatch {
  id: string;
  namespace: string;
  operation: BatchOperation;
  filter: RunFilter;
  /** The filter as stored and shown (dates as ISO strings). */
  filterJson: Record<string, unknown>;
  reason: string;
}

export async function startBatch(db: Db, batch: NewBatch): Promise<BatchRow> {
  return db.transaction(async (tx) => {
    await tx.insert(batches).values({ id: batch.id, namespace: batch.namespace, operation: batch.operation, filter: batch.filterJson, reason: batch.reason });
    const where = and(...runFilterConditions(batch.namespace, batch.filter));
    const selected = await queryRows<{ n: number }>(
      tx,
      sql`with frozen as (
            insert into batch_items (batch_id, run_id)
            select ${batch.id}::uuid, ${runs.id} from ${runs} where ${where}
            returning 1)
          select count(*)::int as n from frozen`,
    );
    const n = selected[0]?.n ?? 0;
    // Nothing selected: the batch is complete at once (no runner needs to look at it).
    const [row] = await tx
      .update(batches)
      .set(n === 0 ? { selectedCount: 0, status: "completed", finishedAt: sql`now()` } : { selectedCount: n })
      .where(sql`${batches.id} = ${batch.id}`)
      .returning();
    // Every server's batch runner hears of it when this commits (and finds it at its next poll otherwise).
    if (n > 0) await queryRows(tx, sql`select pg_notify('cairn_batches', ${batch.id})`);
    return row!;
  });
}
