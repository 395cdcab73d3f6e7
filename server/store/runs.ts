/**
 * Runs: creation (with idempotency), reads, and the lease protocol the
 * scheduler uses. Every statement that acts for a lease holder names the
 * owner and epoch it claimed with; when another process has claimed the run
 * since, the statement matches no row and the caller learns it lost the run.
 */
import { and, eq, gte, inArray, isNull, lt, or, sql, type SQL } from "drizzle-orm";
import type { JsonValue } from "../../sdk/workflow.js";
import { LeaseLostError } from "../core/errors.js";
import { type AgentWait, type ChildOutcome, type ChildWait, type EventWait, nextDeadline, type PendingWait } from "../core/journal.js";
import type { FailureInfo } from "../core/json.js";
import { cancelTurnsOf, findTurnOutcome, lockTurnKey } from "./agents.js";
import { eventLockKey, findEvent, lockChildKey, lockEventKey } from "./events.js";
import { type Db, queryRows, rawQuery } from "./database.js";
import { claimRunRows, finishRunRow, insertRunRow, selectRun } from "./run-writes.js";
import { type RunRow, type RunStatus, runs, terminalStatuses, type WaitingOn, waits } from "./schema.js";

/** Identifies one claim of a run: writes carrying a stale fence are refused. */
export interface Fence {
  runId: string;
  owner: string;
  epoch: number;
}

export interface NewRun {
  id: string;
  namespace: string;
  workflowName: string;
  input: JsonValue;
  idempotencyKey?: string | undefined;
  metadata: Record<string, string>;
  parentRunId?: string | undefined;
}

export interface CreateRunResult {
  run: RunRow;
  /** An earlier run with the same idempotency key was returned instead. */
  deduplicated: boolean;
}

/**
 * Inserts the run, queued — or already claimed by `claimFor` (eager start), so
 * no other process picks it up. Committed before the caller replies, so an
 * accepted run survives any crash after this returns.
 */
export async function insertRun(
  db: Db,
  run: NewRun,
  claimFor?: { owner: string; leaseMs: number },
): Promise<CreateRunResult> {
  const inserted = await insertRunRow(db, {
    id: run.id,
    namespace: run.namespace,
    workflowName: run.workflowName,
    input: run.input,
    idempotencyKey: run.idempotencyKey ?? null,
    metadata: run.metadata,
    parentRunId: run.parentRunId ?? null,
    claimFor,
  });
  if (inserted) return { run: inserted, deduplicated: false };
  if (run.idempotencyKey === undefined) throw new Error(`run id ${run.id} collided`);
  const [existing] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, run.namespace), eq(runs.idempotencyKey, run.idempotencyKey)));
  if (!existing) throw new Error(`idempotency key ${run.idempotencyKey} conflicted but no run holds it`);
  return { run: existing, deduplicated: true };
}

export async function getRun(db: Db, namespace: string, runId: string): Promise<RunRow | undefined> {
  return selectRun(db, namespace, runId);
}

export async function getRuns(db: Db, namespace: string, runIds: readonly string[]): Promise<RunRow[]> {
  if (runIds.length === 0) return [];
  return db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, namespace), inArray(runs.id, [...runIds])));
}

export interface RunFilter {
  workflowName?: string | undefined;
  statuses?: readonly RunStatus[] | undefined;
  parentRunId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
  /** Only runs parked on a wait of this kind and/or event key. */
  waitingFor?: "timer" | "event" | "retry" | "child" | "agent" | undefined;
  waitingEventType?: string | undefined;
  waitingCorrelationId?: string | undefined;
  /** Only runs whose metadata contains all these pairs. */
  metadata?: Readonly<Record<string, string>> | undefined;
}

/** Keyset position: the last run of the previous page. */
export interface RunCursor {
  createdAt: Date;
  id: string;
}

/** Newest first; returns one row more than `limit` when a further page exists. */
export async function listRuns(
  db: Db,
  namespace: string,
  filter: RunFilter,
  limit: number,
  after?: RunCursor,
): Promise<RunRow[]> {
  return listRunsQuery(db, namespace, filter, limit, after);
}

/** listRuns' query, unexecuted: tests EXPLAIN it (`.toSQL()`) to check each page is an index walk. */
export function listRunsQuery(db: Db, namespace: string, filter: RunFilter, limit: number, after?: RunCursor) {
  const conditions: (SQL | undefined)[] = [eq(runs.namespace, namespace)];
  if (filter.workflowName) conditions.push(eq(runs.workflowName, filter.workflowName));
  if (filter.statuses && filter.statuses.length > 0) conditions.push(inArray(runs.status, [...filter.statuses]));
  if (filter.parentRunId) conditions.push(eq(runs.parentRunId, filter.parentRunId));
  if (filter.createdAfter) conditions.push(gte(runs.createdAt, filter.createdAfter));
  if (filter.createdBefore) conditions.push(lt(runs.createdAt, filter.createdBefore));
  if (filter.waitingFor || filter.waitingEventType || filter.waitingCorrelationId) {
    conditions.push(
      eq(runs.status, "waiting"),
      or(
        sql`exists (select 1 from waits w where w.run_id = ${runs.id}
                      and (${filter.waitingFor ?? null}::text is null or w.kind = ${filter.waitingFor ?? null})
                      and (${filter.waitingEventType ?? null}::text is null or w.event_type = ${filter.waitingEventType ?? null})
                      and (${filter.waitingCorrelationId ?? null}::text is null or w.correlation_id = ${filter.waitingCorrelationId ?? null}))`,
        // Runs parked on the clock alone keep no waits rows: their first wait is in waiting_on.
        filter.waitingFor === "timer" || filter.waitingFor === "retry"
          ? sql`${runs.waitingOn}->>'kind' = ${filter.waitingFor}`
          : undefined,
      ),
    );
  }
  if (filter.metadata) conditions.push(sql`${runs.metadata} @> ${JSON.stringify(filter.metadata)}::jsonb`);
  if (after) {
    conditions.push(
      or(lt(runs.createdAt, after.createdAt), and(eq(runs.createdAt, after.createdAt), lt(runs.id, after.id))),
    );
  }
  return db
    .select()
    .from(runs)
    .where(and(...conditions))
    // NULLS LAST as runs_list_idx and runs_workflow_list_idx are built (drizzle's .desc() in an index): a plain
    // DESC means NULLS FIRST, which those indexes cannot serve, and PostgreSQL sorted every run for each page.
    // Both columns are NOT NULL, so the order is the same.
    .orderBy(sql`${runs.createdAt} desc nulls last`, sql`${runs.id} desc nulls last`)
    .limit(limit + 1);
}

/**
 * Claims up to `limit` due runs (queued, or waiting with a deadline or a
 * wake-up that has come) of the given workflows for `owner`, bumping each
 * one's epoch. SKIP LOCKED lets several processes claim concurrently without
 * blocking or double-claiming. If the process dies after this commits, the
 * lease lapses and `requeueExpiredLeases` hands the runs to someone else.
 */
export async function claimDueRuns(
  db: Db,
  owner: string,
  leaseMs: number,
  limit: number,
  workflowNames: readonly string[],
): Promise<RunRow[]> {
  if (workflowNames.length === 0) return [];
  return claimRunRows(db, owner, leaseMs, limit, workflowNames);
}

/** The earliest time a parked or queued run becomes due, so an idle scheduler can sleep exactly until then. */
export async function nextDueAt(db: Db, workflowNames: readonly string[]): Promise<Date | undefined> {
  if (workflowNames.length === 0) return undefined;
  // ORDER BY ... LIMIT 1 walks runs_due_idx from its earliest entry and stops at the first of our workflows; min()
  // with the workflow filter scanned every parked run on every poll (bench: 1,000,000 rows per 10 s at 100k parked).
  const [row] = await rawQuery<{ at: Date }>(
    db,
    `select available_at as at from runs
     where status in ('queued', 'waiting') and available_at is not null and workflow_name = any($1::text[])
     order by available_at limit 1`,
    [[...workflowNames]],
    "cairn_next_due",
  );
  return row?.at ? new Date(row.at) : undefined;
}

/** Runs whose holder stopped heartbeating go back to the queue (their next claim bumps the epoch). */
export async function requeueExpiredLeases(db: Db): Promise<string[]> {
  const rows = await db
    .update(runs)
    .set({ status: "queued", leaseOwner: null, leaseExpiresAt: null, availableAt: sql`now()`, updatedAt: sql`now()` })
    .where(
      inArray(
        runs.id,
        sql`(select id from runs where status = 'running' and lease_expires_at < now() for update skip locked)`,
      ),
    )
    .returning({ id: runs.id });
  return rows.map((r) => r.id);
}

export interface RenewedLease extends Fence {
  /** CancelRun asked this run to stop. */
  cancelRequested: boolean;
}

/** Extends the leases `owner` still holds; returns the fences that were renewed (others were lost). */
export async function renewLeases(db: Db, owner: string, leaseMs: number, runIds: readonly string[]): Promise<RenewedLease[]> {
  if (runIds.length === 0) return [];
  const rows = await queryRows<{ id: string; lease_epoch: number; cancel_requested: boolean }>(
    db,
    // Locked in id order first, like the batched journal and finish writers, so they cannot deadlock on each other.
    sql`with locked as (
          select id from runs
          where lease_owner = ${owner} and status = 'running'
            and id = any (select jsonb_array_elements_text(${JSON.stringify(runIds)}::jsonb)::uuid)
          order by id
          for no key update)
        update runs set lease_expires_at = now() + ${leaseMs} * interval '1 millisecond'
        where id in (select id from locked) and lease_owner = ${owner} and status = 'running'
        returning id, lease_epoch, cancel_requested_at is not null as cancel_requested`,
  );
  return rows.map((r) => ({ runId: r.id, owner, epoch: r.lease_epoch, cancelRequested: r.cancel_requested }));
}

/** Hands a run back without finishing it (graceful shutdown): any process may claim it at once. */
export async function releaseRun(db: Db, fence: Fence): Promise<void> {
  await db
    .update(runs)
    .set({ status: "queued", leaseOwner: null, leaseExpiresAt: null, availableAt: sql`now()`, updatedAt: sql`now()` })
    .where(and(eq(runs.id, fence.runId), eq(runs.leaseOwner, fence.owner), eq(runs.leaseEpoch, fence.epoch)));
}

export type RunEnding =
  | { status: "completed"; output: JsonValue }
  | { status: "failed"; error: FailureInfo }
  | { status: "cancelled"; error: FailureInfo };

const endingKinds = { completed: "run_completed", failed: "run_failed", cancelled: "run_cancelled" } as const;

/**
 * Records the run's end and its final journal entry in one statement, fenced
 * by the lease, and drops its waits. Returns false when the fence no longer
 * holds (nothing written).
 */
export async function finishRun(
  db: Db,
  fence: Fence,
  sequence: number,
  ending: RunEnding,
  parentRunId?: string | null,
): Promise<boolean> {
  return (await endRun(db, fence, sequence, ending, parentRunId)) !== undefined;
}

/** `finishRun`, answering the final row when the statement returned it; undefined when the fence no longer holds. */
export async function endRun(
  db: Db,
  fence: Fence,
  sequence: number,
  ending: RunEnding,
  parentRunId?: string | null,
): Promise<{ row: RunRow | undefined } | undefined> {
  if (!parentRunId) {
    const output = ending.status === "completed" ? JSON.stringify(ending.output) : null;
    const error = ending.status === "completed" ? null : JSON.stringify(ending.error);
    const finish = { runId: fence.runId, owner: fence.owner, epoch: fence.epoch, sequence, status: ending.status, output, error };
    const row = await finishRunRow(db, { ...finish, kind: endingKinds[ending.status] });
    return row ? { row } : undefined;
  }
  // A child's end must wake a parent parked on it: take the child key the parent's suspension takes.
  const finished = await db.transaction(async (tx) => {
    await lockChildKey(tx, fence.runId);
    const written = await finishRunStatement(tx, fence, sequence, ending);
    if (written) await wakeParent(tx, fence.runId);
    return written;
  });
  return finished ? { row: undefined } : undefined;
}

/** Wakes a run parked on `childRunId`, if any; the notice reaches every server process at commit. */
async function wakeParent(db: Db, childRunId: string): Promise<void> {
  await db.execute(
    sql`with woken as (
          update runs set available_at = now(), updated_at = now()
          where status = 'waiting' and id in (select run_id from waits where kind = 'child' and target_run_id = ${childRunId}::uuid)
          returning id)
        select pg_notify('cairn_wake', '') from woken limit 1`,
  );
}

async function finishRunStatement(db: Db, fence: Fence, sequence: number, ending: RunEnding): Promise<boolean> {
  const output = ending.status === "completed" ? JSON.stringify(ending.output) : null;
  const error = ending.status === "completed" ? null : JSON.stringify(ending.error);
  const rows = await queryRows<{ sequence: number }>(
    db,
    sql`with finished as (
          update runs set status = ${ending.status}, output = ${output}::jsonb, error = ${error}::jsonb,
                 lease_owner = null, lease_expires_at = null, waiting_on = null, available_at = null,
                 completed_at = now(), updated_at = now()
          where id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch}
          returning id, namespace),
        dropped as (delete from waits where run_id in (select id from finished))
        insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt)
        select id, ${sequence}, namespace, ${endingKinds[ending.status]}, '', ${output}::jsonb, ${error}::jsonb, 1 from finished
        returning sequence`,
  );
  return rows.length === 1;
}

/**
 * Parks a run on its waits and gives up the lease. Holds the advisory lock of
 * every event key it waits on and looks for a matching event first: if one
 * arrived since the activation last looked, nothing is parked and false is
 * returned so the activation consumes it. Throws LeaseLostError if the fence
 * no longer holds. If the process dies before this commits, the lease lapses
 * and the next activation replays to the same waits.
 */
export async function suspendRun(db: Db, fence: Fence, namespace: string, pending: readonly PendingWait[]): Promise<boolean> {
  const eventWaits = pending.filter((w): w is EventWait => w.kind === "event");
  const deadline = nextDeadline(pending);
  const first = pending[0];
  const waitingOn = first ? describeWait(first) : null;
  if (pending.every((w) => w.kind === "timer" || w.kind === "retry")) return parkOnClock(db, fence, waitingOn, deadline);
  if (pending.every((w) => w.kind === "event" || w.kind === "timer" || w.kind === "retry")) {
    return parkOnEvents(db, fence, namespace, pending, waitingOn, deadline);
  }
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
      .where(and(eq(runs.id, fence.runId), eq(runs.leaseOwner, fence.owner), eq(runs.leaseEpoch, fence.epoch), isNull(runs.cancelRequestedAt)))
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
          deadline: w.kind === "event" || w.kind === "agent" ? (w.timeoutAt ?? null) : w.kind === "child" ? null : w.fireAt,
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
            and cancel_requested_at is null
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
    deadline: (w.kind === "event" ? w.timeoutAt : w.kind === "timer" || w.kind === "retry" ? w.fireAt : undefined)?.toISOString() ?? null,
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

function describeWait(wait: PendingWait): WaitingOn {
  switch (wait.kind) {
    case "timer":
      return { kind: "timer", name: wait.name, fireAt: wait.fireAt.toISOString() };
    case "child":
      return { kind: "child", name: wait.name, childRunId: wait.childRunId };
    case "agent":
      return { kind: "agent", name: wait.name, turnId: wait.turnId, agent: wait.agent, ...(wait.timeoutAt ? { timeoutAt: wait.timeoutAt.toISOString() } : {}) };
    case "retry":
      return { kind: "retry", name: wait.name, retryAt: wait.fireAt.toISOString(), nextAttempt: wait.nextAttempt };
    case "event":
      return {
        kind: "event",
        name: wait.name,
        eventType: wait.eventType,
        correlationId: wait.correlationId,
        ...(wait.timeoutAt ? { timeoutAt: wait.timeoutAt.toISOString() } : {}),
      };
  }
}

/**
 * Creates a child run, queued, exactly once: its id is derived from the
 * parent and the operation name, so a parent that replays (or crashed between
 * creating the child and journaling that it did) finds the child it made.
 */
export async function insertChildRun(db: Db, child: NewRun & { parentRunId: string; detached: boolean }): Promise<boolean> {
  const inserted = await db
    .insert(runs)
    .values({
      id: child.id,
      namespace: child.namespace,
      workflowName: child.workflowName,
      input: child.input,
      metadata: child.metadata,
      parentRunId: child.parentRunId,
      detached: child.detached,
      status: "queued",
    })
    .onConflictDoNothing({ target: runs.id })
    .returning({ id: runs.id });
  return inserted.length === 1;
}

/** The first of `childRunIds` that has ended, with its outcome. */
export async function findChildOutcome(db: Db, namespace: string, childRunIds: readonly string[]): Promise<ChildOutcome | undefined> {
  if (childRunIds.length === 0) return undefined;
  const rows = await db
    .select({ id: runs.id, workflowName: runs.workflowName, status: runs.status, output: runs.output, error: runs.error })
    .from(runs)
    .where(and(eq(runs.namespace, namespace), inArray(runs.id, [...childRunIds]), inArray(runs.status, [...terminalStatuses])));
  const byId = new Map(rows.map((row) => [row.id, row]));
  for (const id of childRunIds) {
    const row = byId.get(id);
    if (!row) continue;
    const outcome: ChildOutcome = { childRunId: row.id, workflowName: row.workflowName, status: row.status as ChildOutcome["status"] };
    if (row.status === "completed") outcome.output = row.output ?? null;
    if (row.error) outcome.error = row.error;
    return outcome;
  }
  return undefined;
}

/** Children of `runId` that end with it (not detached, not ended). */
export async function cancellableChildren(db: Db, runId: string): Promise<string[]> {
  const rows = await db
    .select({ id: runs.id })
    .from(runs)
    .where(and(eq(runs.parentRunId, runId), eq(runs.detached, false), inArray(runs.status, ["queued", "running", "waiting"])));
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
