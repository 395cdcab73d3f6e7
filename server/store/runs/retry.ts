/**
 * RetryRun in the store: a failed run goes back to the queue with its whole journal kept. One transaction under
 * the run's row lock appends `run_retried` (naming the entries replay now skips, core/superseded.ts) and queues
 * the run; if the process dies before the commit nothing changed, after it the run is an ordinary queued run.
 */
import { and, eq, sql } from "drizzle-orm";
import { retrySupersedes } from "../../core/superseded.js";
import { type Db, queryRows } from "../database.js";
import { lockChildKey } from "../events.js";
import { loadJournal } from "../journal.js";
import { type RunRow, journalEntries, runs } from "../schema.js";
import { appendRunEntry, lockRun } from "./run-entry.js";

export type RetryResult =
  | { outcome: "retried"; run: RunRow; supersedes: number[] }
  /** Nothing changed; `why` says so for the caller. */
  | { outcome: "refused"; run: RunRow; why: string };

export async function retryRun(db: Db, namespace: string, runId: string, reason: string): Promise<RetryResult | undefined> {
  return db.transaction(async (tx) => {
    const run = await lockRun(tx, namespace, runId);
    if (!run) return undefined;
    if (run.status !== "failed") {
      return { outcome: "refused", run, why: `run ${runId} is ${run.status.toUpperCase()}; only a FAILED run can be retried` };
    }
    if (run.parentRunId) {
      // Ordered against the parent's wait on this child like a child's end is (finish.ts).
      await lockChildKey(tx, runId);
      const [consumed] = await tx
        .select({ sequence: journalEntries.sequence })
        .from(journalEntries)
        .where(and(eq(journalEntries.runId, run.parentRunId), eq(journalEntries.kind, "child_failed"), eq(journalEntries.targetRunId, runId)))
        .limit(1);
      if (consumed) {
        return {
          outcome: "refused",
          run,
          why: `run ${runId} is a child whose parent ${run.parentRunId} already received its failure (entry ${consumed.sequence}); retry the parent, or fork it`,
        };
      }
    }
    const supersedes = retrySupersedes(await loadJournal(tx, runId), run.error);
    const note = reason ? JSON.stringify({ name: "Retried", message: reason }) : null;
    await appendRunEntry(tx, run, "run_retried", note, { supersedes });
    const [queued] = await tx
      .update(runs)
      .set({
        status: "queued",
        output: null,
        error: null,
        completedAt: null,
        waitingOn: null,
        availableAt: sql`now()`,
        leaseOwner: null,
        leaseExpiresAt: null,
        cancelRequestedAt: null,
        cancelReason: null,
        pauseRequestedAt: null,
        pauseReason: null,
        abnormalStreak: 0,
        // A run-level timeout starts afresh, as long as it was at creation: a run failed by its timeout would
        // otherwise be failed again the moment it was queued.
        timeoutAt: sql`${runs.timeoutAt} - ${runs.createdAt} + now()`,
        // A parked journal copy of this run (if any) lacks run_retried: the bump sends the next claim to the store.
        leaseEpoch: sql`${runs.leaseEpoch} + 1`,
        updatedAt: sql`now()`,
      })
      .where(eq(runs.id, runId))
      .returning();
    // Claimable now: idle processes hear it when this commits instead of at their next poll.
    await queryRows(tx, sql`select pg_notify('cairn_wake', '')`);
    return { outcome: "retried", run: queued ?? run, supersedes };
  });
}
