import { and, eq, sql } from "drizzle-orm";
import { type Db, queryRows, rawQuery } from "../database.js";
import { claimRunRows } from "./rows.js";
import { type RunRow, runs } from "../schema.js";

/** Identifies one claim of a run: writes carrying a stale fence are refused. */
export interface Fence {
  runId: string;
  owner: string;
  epoch: number;
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

/** What `requeueExpiredLeases` did with the runs whose lease lapsed. */
export interface LapsedRuns {
  /** Back in the queue: any process may claim them. */
  requeued: string[];
  /** Their lapse was the CAIRN_MAX_ABNORMAL_ACTIVATIONS-th in a row: paused, not claimed again until ResumeRun. */
  paused: string[];
}

const poisonReasonHead = "paused after ";
const poisonReasonTail = " abnormal activations in a row: lease lapsed (holder crashed or hung); ResumeRun lets it try again";

/** The reason a run paused by the breaker carries (its `run_paused` entry; GetRun and ExplainRun show it). */
export function poisonPauseReason(streak: number): string {
  return `${poisonReasonHead}${streak}${poisonReasonTail}`;
}

/**
 * Runs whose holder stopped heartbeating go back to the queue (their next claim bumps the epoch). That
 * activation ended abnormally (its process crashed, hung or lost the database): `abnormal_activations` counts it,
 * and `abnormal_streak` counts it in a row (consecutive when the last lapse was the previous activation). A run
 * whose streak reaches `maxAbnormal` is a poison run: it is paused instead (epoch bumped, a `run_paused` entry
 * naming the cause), so it stops taking down process after process. One statement: if the process dies before
 * it commits, nothing changed and the next sweep does the same.
 */
export async function requeueExpiredLeases(db: Db, maxAbnormal = Number.POSITIVE_INFINITY): Promise<LapsedRuns> {
  // The streak limit as an integer parameter; "never" is a number no streak reaches.
  const limit = Number.isFinite(maxAbnormal) ? Math.max(1, Math.floor(maxAbnormal)) : 2_147_483_647;
  const rows = await queryRows<{ id: string; status: string }>(
    db,
    sql`with lapsed as (
          select id, streak, streak >= ${limit} and cancel_requested_at is null as poisoned
          from (select id, cancel_requested_at,
                       case when last_abnormal_activation = activation_count - 1 then abnormal_streak + 1 else 1 end as streak
                from runs where status = 'running' and lease_expires_at < now()
                for update skip locked) s),
        changed as (
          update runs r set
            status = case when l.poisoned then 'paused' else 'queued' end,
            available_at = case when l.poisoned then null else now() end,
            -- Like PauseRun: the entry below is in no parked journal copy, so the next claim reads the store.
            lease_epoch = r.lease_epoch + case when l.poisoned then 1 else 0 end,
            -- A pending pause request is settled by this pause (a cancel request keeps the run queued instead).
            pause_requested_at = case when l.poisoned then null else r.pause_requested_at end,
            pause_reason = case when l.poisoned then null else r.pause_reason end,
            lease_owner = null, lease_expires_at = null,
            abnormal_activations = r.abnormal_activations + 1,
            abnormal_streak = l.streak, last_abnormal_activation = r.activation_count,
            updated_at = now()
          from lapsed l where r.id = l.id
          returning r.id, r.namespace, r.status, l.streak),
        noted as (
          insert into journal_entries (run_id, sequence, namespace, kind, name, error, attempt)
          select c.id, (select coalesce(max(j.sequence), 0) + 1 from journal_entries j where j.run_id = c.id), c.namespace,
                 'run_paused', '',
                 jsonb_build_object('name', 'Paused', 'message', ${poisonReasonHead}::text || c.streak || ${poisonReasonTail}::text),
                 1
          from changed c where c.status = 'paused')
        select id, status from changed`,
  );
  return { requeued: rows.filter((r) => r.status === "queued").map((r) => r.id), paused: rows.filter((r) => r.status === "paused").map((r) => r.id) };
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
