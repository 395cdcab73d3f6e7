import { and, eq, inArray, or, sql } from "drizzle-orm";
import { cancelTurnsOf } from "../agents.js";
import { lockChildKey } from "../events.js";
import { type Db, queryRows } from "../database.js";
import type { JournalEntry } from "../../core/journal.js";
import { type RunRow, runs, terminalStatuses, waits } from "../schema.js";
import { wakeParent } from "./finish.js";
import { appendRunEntry, lockRun, runEntryAsRead, type StoredRunEntry, storedRunEntryColumns } from "./run-entry.js";
import { type JsonRun, runRowFromJson } from "./rows.js";

/** Children of `runId` that end with it (not detached, not ended). */
export async function cancellableChildren(db: Db, runId: string): Promise<string[]> {
  const rows = await db
    .select({ id: runs.id })
    .from(runs)
    .where(and(eq(runs.parentRunId, runId), eq(runs.detached, false), inArray(runs.status, ["queued", "running", "waiting", "paused"])));
  return rows.map((r) => r.id);
}

export type CancelResult =
  /** `entry`: its `run_cancelled` entry, as a journal read gives it. */
  | { outcome: "cancelled"; run: RunRow; entry: JournalEntry }
  | { outcome: "requested"; run: RunRow }
  | { outcome: "finished"; run: RunRow };

/**
 * Cancels a run nobody is executing (queued or waiting) at once, with its
 * final journal entry; for a running run, records the request so its holder
 * stops at its next durable operation. The row lock orders this against a
 * concurrent claim.
 */
export async function cancelRun(db: Db, namespace: string, runId: string, reason: string): Promise<CancelResult | undefined> {
  return db.transaction(async (tx) => {
    const run = await lockRun(tx, namespace, runId);
    if (!run) return undefined;
    if (terminalStatuses.includes(run.status)) return { outcome: "finished", run };
    const error = JSON.stringify({ name: "CancelledError", message: reason });
    await cancelTurnsOf(tx, runId);
    if (run.status === "running") {
      const [requested] = await tx
        .update(runs)
        .set({ cancelRequestedAt: sql`coalesce(${runs.cancelRequestedAt}, now())`, cancelReason: reason, updatedAt: sql`now()` })
        .where(eq(runs.id, runId))
        .returning();
      return { outcome: "requested", run: requested ?? run };
    }
    const entry = await appendRunEntry(tx, run, "run_cancelled", error);
    await tx.delete(waits).where(eq(waits.runId, runId));
    if (run.parentRunId) {
      await lockChildKey(tx, runId);
      await wakeParent(tx, runId);
    }
    const [cancelled] = await tx
      .update(runs)
      .set({
        status: "cancelled",
        error: { name: "CancelledError", message: reason },
        cancelReason: reason,
        cancelRequestedAt: sql`now()`,
        waitingOn: null,
        availableAt: null,
        leaseOwner: null,
        leaseExpiresAt: null,
        completedAt: sql`now()`,
        updatedAt: sql`now()`,
      })
      .where(eq(runs.id, runId))
      .returning();
    return { outcome: "cancelled", run: cancelled ?? run, entry };
  });
}

/**
 * A batch's fast path: cancels, in two statements, those of `runIds` that need nothing but their own row changed —
 * queued, waiting or paused, not a child (no parent to wake), without children that end with them and without
 * open agent turns — exactly as `cancelRun` would (the same row values and `run_cancelled` entry). Runs are locked
 * first, in id order; the change then reads children and turns in a snapshot taken after the locks, when none of
 * these runs can start a child. Returns the runs it cancelled; the caller takes the others one by one.
 */
export async function cancelIdleRuns(db: Db, namespace: string, runIds: readonly string[], reason: string): Promise<{ run: RunRow; entry: JournalEntry }[]> {
  if (runIds.length === 0) return [];
  const ids = sql.param([...runIds]);
  await queryRows(db, sql`select id from runs where id = any(${ids}::uuid[]) and namespace = ${namespace} order by id for update`);
  const error = JSON.stringify({ name: "CancelledError", message: reason });
  // Each run's new row and its entry as stored, for this process's watchers (run-feed.ts): they need not read them.
  const rows = await queryRows<{ run: JsonRun } & StoredRunEntry>(
    db,
    sql`with idle as (
          select r.id, r.namespace from runs r
          where r.id = any(${ids}::uuid[]) and r.namespace = ${namespace}
            and r.status in ('queued', 'waiting', 'paused') and r.parent_run_id is null
            and not exists (select 1 from runs c where c.parent_run_id = r.id and not c.detached and c.status in ('queued', 'running', 'waiting', 'paused'))
            and not exists (select 1 from agent_turns t where t.run_id = r.id and t.status in ('pending', 'leased'))),
        entries as (
          insert into journal_entries (run_id, sequence, namespace, kind, name, error, attempt)
          select i.id, coalesce((select max(j.sequence) from journal_entries j where j.run_id = i.id), 0) + 1, i.namespace, 'run_cancelled', '', ${error}::jsonb, 1
          from idle i
          returning run_id, ${storedRunEntryColumns}),
        cleared as (delete from waits w using idle i where w.run_id = i.id)
        update runs r set status = 'cancelled', error = ${error}::jsonb, cancel_reason = ${reason}, cancel_requested_at = now(),
          waiting_on = null, available_at = null, lease_owner = null, lease_expires_at = null, completed_at = now(), updated_at = now()
        from idle i join entries e on e.run_id = i.id where r.id = i.id
        returning to_jsonb(r.*) as run, e.sequence, e.result, e.has_result, e.error, e.created_at`,
  );
  return rows.map(({ run, ...stored }) => {
    const row = runRowFromJson(run);
    return { run: row, entry: runEntryAsRead(row, "run_cancelled", stored) };
  });
}

/**
 * Cancels the children of `runId` that end with it (not detached), and theirs, each as CancelRun would;
 * answers what happened to each, so the caller can count the ended ones and notify the holders of running ones.
 * Used by CancelRun and by a run's timeout.
 */
export async function cancelDescendants(db: Db, namespace: string, runId: string, reason: string): Promise<CancelResult[]> {
  const results: CancelResult[] = [];
  for (const childId of await cancellableChildren(db, runId)) {
    const result = await cancelRun(db, namespace, childId, reason);
    if (result) results.push(result);
    results.push(...(await cancelDescendants(db, namespace, childId, reason)));
  }
  return results;
}
