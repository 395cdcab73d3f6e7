import { and, eq, inArray, isNull, sql } from "drizzle-orm";
import { LeaseLostError } from "../../core/errors.js";
import { type AgentWait, type ChildWait, type EventWait, deadlineOf, nextDeadline, onClockAlone, type PendingWait, waitRecord } from "../../core/waits.js";
import { findTurnOutcome, lockTurnKey } from "../agents.js";
import { eventLockKey, findEvent, lockChildKey, lockEventKey } from "../events.js";
import { type Db, queryRows, rawQuery } from "../database.js";
import { runs, type WaitingOn, waits } from "../schema.js";
import { type Fence } from "./lease.js";
import { findChildOutcome } from "./read.js";

/**
 * Parks a run on its waits and gives up the lease. Holds the advisory lock of
 * every event key it waits on and looks for a matching event first: if one
 * arrived since the activation last looked, nothing is parked and false is
 * returned so the activation consumes it. Throws LeaseLostError if the fence
 * no longer holds. If the process dies before this commits, the lease lapses
 * and the next activation replays to the same waits.
 */
export async function suspendRun(db: Db, fence: Fence, namespace: string, pending: readonly PendingWait[]): Promise<boolean> {
  const deadline = nextDeadline(pending);
  const first = pending[0];
  const waitingOn = first ? waitRecord(first) : null;
  if (onClockAlone(pending)) return parkOnClock(db, fence, waitingOn, deadline);
  if (pending.every((w) => w.kind === "event" || w.kind === "timer" || w.kind === "retry")) {
    return parkOnEvents(db, fence, namespace, pending, waitingOn, deadline);
  }
  return parkWithLocks(db, fence, namespace, pending, waitingOn, deadline);
}

/**
 * The general parking path, in TypeScript: locks every key a wait depends on (event keys, turns, children),
 * looks once more under the locks for what would resolve a wait, and parks only if nothing would. Waits on
 * events and the clock alone take `parkOnEvents` (cairn_park_on_events, one round trip) instead; the parity
 * test runs both on the same waits and checks they leave the same rows.
 */
export async function parkWithLocks(
  db: Db,
  fence: Fence,
  namespace: string,
  pending: readonly PendingWait[],
  waitingOn: WaitingOn | null,
  deadline: Date | undefined,
): Promise<boolean> {
  const eventWaits = pending.filter((w): w is EventWait => w.kind === "event");
  return db.transaction(async (tx) => {
    const keys = [...new Set(eventWaits.map((w) => JSON.stringify([w.eventType, w.correlationId])))].sort();
    for (const key of keys) {
      const [eventType, correlationId] = JSON.parse(key) as [string, string];
      await lockEventKey(tx, namespace, eventType, correlationId);
    }
    if (eventWaits.length > 0 && (await findEvent(tx, namespace, fence.runId, eventWaits))) return false;
    const agentWaits = pending.filter((w): w is AgentWait => w.kind === "agent");
    for (const turnId of [...new Set(agentWaits.map((w) => w.turnId))].sort()) await lockTurnKey(tx, turnId);
    if (agentWaits.length > 0 && (await findTurnOutcome(tx, namespace, agentWaits.map((w) => w.turnId)))) return false;
    const childWaits = pending.filter((w): w is ChildWait => w.kind === "child");
    for (const childRunId of [...new Set(childWaits.map((w) => w.childRunId))].sort()) await lockChildKey(tx, childRunId);
    if (childWaits.length > 0 && (await findChildOutcome(tx, namespace, childWaits.map((w) => w.childRunId)))) return false;
    // Only a child's end wakes its parent; a run waiting on some other run re-checks on a short deadline instead.
    const strangers = childWaits.length > 0 ? await notChildrenOf(tx, fence.runId, childWaits.map((w) => w.childRunId)) : 0;
    const wakeAt = strangers > 0 ? earliest(deadline, new Date(Date.now() + strangerRecheckMs)) : deadline;
    const parked = await tx
      .update(runs)
      .set({
        status: "waiting",
        waitingOn,
        availableAt: wakeAt ?? null,
        leaseOwner: null,
        leaseExpiresAt: null,
        updatedAt: sql`now()`,
      })
      .where(and(eq(runs.id, fence.runId), eq(runs.leaseOwner, fence.owner), eq(runs.leaseEpoch, fence.epoch), isNull(runs.cancelRequestedAt), isNull(runs.pauseRequestedAt)))
      .returning({ id: runs.id });
    if (parked.length === 0) throw new LeaseLostError(fence.runId);
    await tx.delete(waits).where(eq(waits.runId, fence.runId));
    if (pending.length > 0) {
      await tx.insert(waits).values(
        pending.map((w) => ({
          runId: fence.runId,
          name: w.name,
          namespace,
          kind: w.kind,
          eventType: w.kind === "event" ? w.eventType : null,
          correlationId: w.kind === "event" ? w.correlationId : null,
          deadline: deadlineOf(w) ?? null,
          targetRunId: w.kind === "child" ? w.childRunId : null,
          targetTurnId: w.kind === "agent" ? w.turnId : null,
        })),
      );
    }
    return true;
  });
}

/**
 * Parks a run that only the clock can wake (timers, retry backoffs): one
 * statement, no lock (nothing but time can race it) and no waits rows (nothing
 * looks timers up by key; `waiting_on` says what it waits for).
 */
async function parkOnClock(db: Db, fence: Fence, waitingOn: WaitingOn | null, deadline: Date | undefined): Promise<boolean> {
  const rows = await queryRows<{ parked: number }>(
    db,
    sql`with parked as (
          update runs set status = 'waiting', waiting_on = ${waitingOn ? JSON.stringify(waitingOn) : null}::jsonb,
                 available_at = ${deadline?.toISOString() ?? null}::timestamptz,
                 lease_owner = null, lease_expires_at = null, updated_at = now()
          where id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch}
            and cancel_requested_at is null and pause_requested_at is null
          returning id),
        dropped as (delete from waits where run_id in (select id from parked))
        select count(*)::int as parked from parked`,
  );
  if (rows[0]?.parked !== 1) throw new LeaseLostError(fence.runId);
  return true;
}

/**
 * Parks a run whose waits are events (and clocks) in one round trip: the
 * server-side function (migration 0005) takes the event keys' locks, looks for
 * an unconsumed event, and parks, exactly as the transaction in suspendRun does.
 */
async function parkOnEvents(
  db: Db,
  fence: Fence,
  namespace: string,
  pending: readonly PendingWait[],
  waitingOn: WaitingOn | null,
  deadline: Date | undefined,
): Promise<boolean> {
  const lockKeys = [...new Set(pending.flatMap((w) => (w.kind === "event" ? [eventLockKey(namespace, w.eventType, w.correlationId)] : [])))].sort();
  const waitRows = pending.map((w) => ({
    name: w.name,
    kind: w.kind,
    event_type: w.kind === "event" ? w.eventType : null,
    correlation_id: w.kind === "event" ? w.correlationId : null,
    deadline: deadlineOf(w)?.toISOString() ?? null,
    lookback_from: w.kind === "event" ? (w.lookbackFrom?.toISOString() ?? null) : null,
  }));
  const [row] = await rawQuery<{ outcome: "parked" | "event" | "lost" }>(
    db,
    "select cairn_park_on_events($1, $2, $3, $4, $5::text[], $6::jsonb, $7::timestamptz, $8::jsonb) as outcome",
    [fence.runId, fence.owner, fence.epoch, namespace, lockKeys, waitingOn ? JSON.stringify(waitingOn) : null, deadline?.toISOString() ?? null, JSON.stringify(waitRows)],
    "cairn_park_on_events",
  );
  if (row?.outcome === "lost") throw new LeaseLostError(fence.runId);
  return row?.outcome === "parked";
}

const strangerRecheckMs = 2000;

function earliest(a: Date | undefined, b: Date): Date {
  return a && a < b ? a : b;
}

async function notChildrenOf(db: Db, parentRunId: string, runIds: readonly string[]): Promise<number> {
  const rows = await db
    .select({ id: runs.id })
    .from(runs)
    .where(and(inArray(runs.id, [...runIds]), eq(runs.parentRunId, parentRunId)));
  return new Set(runIds).size - rows.length;
}
