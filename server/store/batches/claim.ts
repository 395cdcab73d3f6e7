/**
 * The batch lease: one server at a time works through a batch. A server claims a running batch whose lease is
 * free or lapsed (SKIP LOCKED, so servers looking at once take different batches); each chunk renews it under
 * the same fence. A server that dies holding it simply stops renewing: once `lease_until` passes, any server
 * claims the batch and goes on from its pending items.
 */
import { and, eq, sql } from "drizzle-orm";
import { type Db, queryRows } from "../database.js";
import { type BatchRow, batches } from "../schema.js";

export async function claimBatch(db: Db, owner: string, leaseMs: number): Promise<BatchRow | undefined> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`update batches set lease_owner = ${owner}, lease_until = now() + ${leaseMs} * interval '1 millisecond'
        where id = (
          select id from batches
          where status = 'running' and (lease_until is null or lease_until < now() or lease_owner = ${owner})
          order by created_at
          limit 1
          for update skip locked)
        returning id`,
  );
  const id = rows[0]?.id;
  if (!id) return undefined;
  const [batch] = await db.select().from(batches).where(eq(batches.id, id));
  return batch;
}

/**
 * The batch is done once no item is pending: completed (per-run failures are counted, not fatal). False when
 * items remain or the fence no longer holds.
 */
export async function completeBatch(db: Db, batchId: string, owner: string): Promise<boolean> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`update batches set status = 'completed', finished_at = now(), lease_owner = null, lease_until = null
        where id = ${batchId} and lease_owner = ${owner} and status = 'running'
          and not exists (select 1 from batch_items where batch_id = ${batchId} and outcome = 'pending')
        returning id`,
  );
  return rows.length > 0;
}

/** The batch cannot go on here or anywhere (e.g. an operation this server does not know): failed, with the reason. */
export async function failBatch(db: Db, batchId: string, owner: string, message: string): Promise<void> {
  await db
    .update(batches)
    .set({ status: "failed", finishedAt: sql`now()`, leaseOwner: null, leaseUntil: null, error: message })
    .where(and(eq(batches.id, batchId), eq(batches.leaseOwner, owner)));
}

/** Shutting down: others may take the batch at once instead of after the lease lapses. */
export async function releaseBatch(db: Db, batchId: string, owner: string): Promise<void> {
  await db
    .update(batches)
    .set({ leaseOwner: null, leaseUntil: null })
    .where(and(eq(batches.id, batchId), eq(batches.leaseOwner, owner), eq(batches.status, "running")));
}
