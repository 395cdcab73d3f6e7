import { and, eq, inArray, or, sql } from "drizzle-orm";
import { cancelTurnsOf } from "../agents.js";
import { lockChildKey } from "../events.js";
import type { Db } from "../database.js";
import { type RunRow, runs, terminalStatuses, waits } from "../schema.js";
import { wakeParent } from "./finish.js";
import { appendRunEntry, lockRun } from "./run-entry.js";

/** Children of `runId` that end with it (not detached, not ended). */
export async function cancellableChildren(db: Db, runId: string): Promise<string[]> {
  const rows = await db
    .select({ id: runs.id })
    .from(runs)
    .where(and(eq(runs.parentRunId, runId), eq(runs.detached, false), inArray(runs.status, ["queued", "running", "waiting", "paused"])));
  return rows.map((r) => r.id);
}

export type CancelResult =
  | { outcome: "cancelled"; run: RunRow }
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
    await appendRunEntry(tx, run, "run_cancelled", error);
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
    return { outcome: "cancelled", run: cancelled ?? run };
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
