/**
 * Pausing and resuming a run nobody holds. A paused run keeps its journal and its waits rows, but no claim
 * path takes it (they take queued or waiting runs only), and SendEvent's delivery skips it (waiting runs
 * only): an event sent meanwhile stays stored, and a due timer stays due. Resuming queues the run with
 * `available_at = now()`, so the next activation replays and sees whatever arrived. Both append a run-level
 * history entry under the row lock, like a cancel of a waiting run.
 */
import type { JsonValue } from "../../../sdk/workflow.js";
import { and, eq, isNotNull, sql } from "drizzle-orm";
import type { JournalEntry } from "../../core/journal.js";
import { type Db, queryRows } from "../database.js";
import { type RunRow, type RunStatus, runs } from "../schema.js";
import type { Fence } from "./lease.js";
import { appendRunEntry, lockRun } from "./run-entry.js";

export type PauseResult =
  /** `entry`: its `run_paused` or `run_resumed` entry, as a journal read gives it. */
  | { outcome: "changed"; run: RunRow; entry: JournalEntry }
  | { outcome: "unchanged"; run: RunRow }
  | { outcome: "refused"; run: RunRow }
  /** A running run: the request is recorded (pause), or withdrawn before its holder honoured it (resume). */
  | { outcome: "requested"; run: RunRow };

/**
 * queued or waiting → paused; an already paused run is unchanged; a running run gets a pause request, which
 * the fences of the journal writer and of parking honour (its holder's next durable operation is refused and
 * the executor calls `pauseHeld`); an ended run is refused.
 */
export async function pauseRun(db: Db, namespace: string, runId: string, reason: string): Promise<PauseResult | undefined> {
  const [requested] = await db
    .update(runs)
    .set({ pauseRequestedAt: sql`coalesce(${runs.pauseRequestedAt}, now())`, pauseReason: reason || null, updatedAt: sql`now()` })
    .where(and(eq(runs.namespace, namespace), eq(runs.id, runId), eq(runs.status, "running")))
    .returning();
  if (requested) return { outcome: "requested", run: requested };
  return transition(db, namespace, runId, {
    from: ["queued", "waiting"],
    to: "paused",
    kind: "run_paused",
    reason,
    // Unclaimable either way; available_at is set again on resume.
    availableAt: sql`null`,
  });
}

/** paused → queued (claimable now); a running run's pending pause request is withdrawn; any other status is refused. */
export async function resumeRun(db: Db, namespace: string, runId: string, reason: string): Promise<PauseResult | undefined> {
  const [withdrawn] = await db
    .update(runs)
    .set({ pauseRequestedAt: null, pauseReason: null, updatedAt: sql`now()` })
    .where(and(eq(runs.namespace, namespace), eq(runs.id, runId), eq(runs.status, "running"), isNotNull(runs.pauseRequestedAt)))
    .returning();
  if (withdrawn) return { outcome: "requested", run: withdrawn };
  return transition(db, namespace, runId, {
    from: ["paused"],
    to: "queued",
    kind: "run_resumed",
    reason,
    availableAt: sql`now()`,
  });
}

/**
 * The holder of a running run with a pause request stops: under its still-valid fence, the run is paused with
 * its `run_paused` entry and its lease given up. False when the fence no longer holds (lease lost, or a cancel
 * came first and the executor handles that instead).
 */
export async function pauseHeld(db: Db, fence: Fence): Promise<boolean> {
  return pauseUnderFence(db, fence, (run) =>
    run.pauseRequestedAt ? { error: run.pauseReason ? JSON.stringify({ name: "Paused", message: run.pauseReason }) : null } : undefined,
  );
}

/**
 * Pauses a running run its holder still holds under `fence`, in one transaction: the `run_paused` entry that
 * `entryOf` gives (undefined: no pause after all), then status paused with the lease given up (epoch bumped, so
 * a write in flight from the old holder is refused). False when the fence no longer holds, or a cancel request
 * came first (the executor handles that instead).
 */
export async function pauseUnderFence(
  db: Db,
  fence: Fence,
  entryOf: (run: RunRow) => { error: string | null; result?: JsonValue | null } | undefined,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [run] = await tx
      .select()
      .from(runs)
      .where(and(eq(runs.id, fence.runId), eq(runs.leaseOwner, fence.owner), eq(runs.leaseEpoch, fence.epoch), eq(runs.status, "running")))
      .for("update");
    if (!run || run.cancelRequestedAt) return false;
    const entry = entryOf(run);
    if (!entry) return false;
    await appendRunEntry(tx, run, "run_paused", entry.error, entry.result);
    await tx
      .update(runs)
      .set({
        status: "paused",
        pauseRequestedAt: null,
        pauseReason: null,
        leaseOwner: null,
        leaseExpiresAt: null,
        availableAt: null,
        waitingOn: null,
        leaseEpoch: sql`${runs.leaseEpoch} + 1`,
        updatedAt: sql`now()`,
      })
      .where(eq(runs.id, run.id));
    return true;
  });
}

async function transition(
  db: Db,
  namespace: string,
  runId: string,
  change: { from: readonly RunStatus[]; to: RunStatus; kind: "run_paused" | "run_resumed"; reason: string; availableAt: ReturnType<typeof sql> },
): Promise<PauseResult | undefined> {
  return db.transaction(async (tx) => {
    const run = await lockRun(tx, namespace, runId);
    if (!run) return undefined;
    if (run.status === change.to && change.to === "paused") return { outcome: "unchanged", run };
    if (!change.from.includes(run.status)) return { outcome: "refused", run };
    const note = change.reason ? JSON.stringify({ name: change.kind === "run_paused" ? "Paused" : "Resumed", message: change.reason }) : null;
    const entry = await appendRunEntry(tx, run, change.kind, note);
    const [changed] = await tx
      .update(runs)
      .set({
        status: change.to,
        availableAt: change.availableAt,
        // A request left by a holder that lost its lease is settled by this change.
        pauseRequestedAt: null,
        pauseReason: null,
        // A process that parked this run keeps its journal for a claim at exactly the next epoch; the entry
        // appended here is not in that copy, so the bump sends the next claim to the store (parked-journals.ts).
        leaseEpoch: sql`${runs.leaseEpoch} + 1`,
        // Resuming gives a run the poison-run breaker paused a fresh count of CAIRN_MAX_ABNORMAL_ACTIVATIONS tries.
        ...(change.to === "queued" ? { abnormalStreak: 0 } : {}),
        updatedAt: sql`now()`,
      })
      .where(eq(runs.id, runId))
      .returning();
    // Claimable now: idle processes hear it when this commits instead of at their next poll.
    if (change.to === "queued") await queryRows(tx, sql`select pg_notify('cairn_wake', '')`);
    return { outcome: "changed", run: changed ?? run, entry };
  });
}
