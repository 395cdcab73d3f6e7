import { and, eq, inArray, or, sql } from "drizzle-orm";
import { cancelTurnsOf } from "../agents.js";
import { lockChildKey } from "../events.js";
import { type Db, queryRows } from "../database.js";
import { type RunRow, runs, terminalStatuses, waits } from "../schema.js";
import { wakeParent } from "./finish.js";

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
    const [run] = await tx
      .select()
      .from(runs)
      .where(and(eq(runs.namespace, namespace), eq(runs.id, runId)))
      .for("update");
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
    await queryRows(
      tx,
      sql`insert into journal_entries (run_id, sequence, namespace, kind, name, error, attempt)
          select ${runId}::uuid, coalesce(max(sequence), 0) + 1, ${namespace}, 'run_cancelled', '', ${error}::jsonb, 1
          from journal_entries where run_id = ${runId}::uuid`,
    );
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
