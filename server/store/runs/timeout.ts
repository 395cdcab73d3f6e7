/**
 * Run-level timeouts (`runs.timeout_at`). A run nobody holds (queued, waiting, paused) that is past its
 * timeout fails at once, under its row lock, with `run_failed` in its journal, like a cancel of a waiting
 * run. A running run gets a cancel request instead, whose reason is the timeout message: the fences of the
 * journal writer and of parking refuse its holder's next durable operation, and the executor, seeing that
 * the request was made at or after `timeout_at` (`timedOut`), fails the run with RunTimeoutError instead of
 * cancelling it. If the holder dies first, its lease lapses, the run is requeued, and the next firing fails
 * it as a queued run.
 */
import { eq, sql } from "drizzle-orm";
import { RunTimeoutError } from "../../core/errors.js";
import { cancelTurnsOf } from "../agents.js";
import { type Db, queryRows, rawQuery } from "../database.js";
import { lockChildKey } from "../events.js";
import { type RunRow, runs, terminalStatuses, waits } from "../schema.js";
import { wakeParent } from "./finish.js";
import { appendRunEntry, lockRun } from "./run-entry.js";

/** Runs past their timeout that still need the timer: not ended, and not already asked to stop for it. */
const pendingTimeouts = `timeout_at is not null and status in ('queued', 'running', 'waiting', 'paused')
  and not (status = 'running' and cancel_requested_at is not null)`;

/** The earliest timeout still to fire (runs_timeout_idx), so the timer sleeps exactly until then. */
export async function nextTimeoutAt(db: Db): Promise<Date | undefined> {
  const [row] = await rawQuery<{ at: Date }>(db, `select timeout_at as at from runs where ${pendingTimeouts} order by timeout_at limit 1`, [], "cairn_next_timeout");
  return row?.at ? new Date(row.at) : undefined;
}

/** Up to `limit` runs whose timeout has passed, earliest first. */
export async function dueTimeouts(db: Db, limit: number): Promise<{ id: string; namespace: string }[]> {
  return rawQuery<{ id: string; namespace: string }>(
    db,
    `select id, namespace from runs where ${pendingTimeouts} and timeout_at <= now() order by timeout_at limit $1`,
    [limit],
    "cairn_due_timeouts",
  );
}

export type TimeoutResult =
  /** The run failed now (it was queued, waiting or paused). */
  | { outcome: "failed"; run: RunRow }
  /** The run is running: its holder was asked to stop, and fails it when it does. */
  | { outcome: "requested"; run: RunRow };

/** A run's timeout message, from its row (the timeout is what the run was given: timeout_at - created_at). */
export function timeoutError(run: Pick<RunRow, "id" | "createdAt" | "timeoutAt">): RunTimeoutError {
  return new RunTimeoutError(run.id, Math.max(0, (run.timeoutAt?.getTime() ?? 0) - run.createdAt.getTime()));
}

/** True when the run's cancel request is its timeout (made at or after `timeout_at`), not a CancelRun. */
export function timedOut(run: Pick<RunRow, "timeoutAt" | "cancelRequestedAt">): boolean {
  return run.timeoutAt !== null && run.cancelRequestedAt !== null && run.cancelRequestedAt.getTime() >= run.timeoutAt.getTime();
}

/**
 * Fails (or, running, asks to stop) one run whose timeout has passed; undefined when there is nothing to do
 * any more (it ended meanwhile, or another process fired the timeout first).
 */
export async function timeOutRun(db: Db, namespace: string, runId: string): Promise<TimeoutResult | undefined> {
  return db.transaction(async (tx) => {
    const run = await lockRun(tx, namespace, runId);
    if (!run || terminalStatuses.includes(run.status) || run.timeoutAt === null) return undefined;
    // Decided with the database's clock, which set timeout_at, and the same instant cancel_requested_at gets.
    const [{ due } = { due: false }] = await queryRows<{ due: boolean }>(tx, sql`select ${run.timeoutAt.toISOString()}::timestamptz <= now() as due`);
    if (!due) return undefined;
    const error = timeoutError(run);
    const failure = { name: error.name, message: error.message };
    if (run.status === "running" && run.cancelRequestedAt) return undefined;
    // Its agent turns are withdrawn either way, as CancelRun does.
    await cancelTurnsOf(tx, runId);
    if (run.status === "running") {
      const [requested] = await tx
        .update(runs)
        .set({ cancelRequestedAt: sql`now()`, cancelReason: error.message, updatedAt: sql`now()` })
        .where(eq(runs.id, runId))
        .returning();
      return { outcome: "requested", run: requested ?? run };
    }
    await appendRunEntry(tx, run, "run_failed", JSON.stringify(failure));
    await tx.delete(waits).where(eq(waits.runId, runId));
    if (run.parentRunId) {
      await lockChildKey(tx, runId);
      await wakeParent(tx, runId);
    }
    const [failed] = await tx
      .update(runs)
      .set({
        status: "failed",
        error: failure,
        waitingOn: null,
        availableAt: null,
        leaseOwner: null,
        leaseExpiresAt: null,
        pauseRequestedAt: null,
        completedAt: sql`now()`,
        updatedAt: sql`now()`,
      })
      .where(eq(runs.id, runId))
      .returning();
    return { outcome: "failed", run: failed ?? run };
  });
}
