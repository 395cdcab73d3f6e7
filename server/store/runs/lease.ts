import { and, eq, sql } from "drizzle-orm";
import { type Db, queryRows, rawQuery } from "../database.js";
import { claimRunRows, parkedOnClockAlone } from "./rows.js";
import { abnormalEndStatement, reasonHead } from "./abnormal-streak.js";
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
  /** How long before they are due runs parked on the clock alone may be claimed (rows.ts). */
  aheadMs = 0,
): Promise<RunRow[]> {
  if (workflowNames.length === 0) return [];
  return claimRunRows(db, owner, leaseMs, limit, workflowNames, aheadMs);
}

/**
 * The earliest time a parked or queued run becomes due, so an idle scheduler can sleep exactly until then, and
 * whether that run is parked on the clock alone (so it may be claimed a little ahead, rows.ts).
 */
export async function nextDueAt(db: Db, workflowNames: readonly string[]): Promise<{ at: Date; clockOnly: boolean } | undefined> {
  if (workflowNames.length === 0) return undefined;
  // ORDER BY ... LIMIT 1 walks runs_due_idx from its earliest entry and stops at the first of our workflows; min()
  // with the workflow filter scanned every parked run on every poll (bench: 1,000,000 rows per 10 s at 100k parked).
  const [row] = await rawQuery<{ at: Date; clock_only: boolean }>(
    db,
    `select available_at as at, ${parkedOnClockAlone} as clock_only from runs
     where status in ('queued', 'waiting') and available_at is not null and workflow_name = any($1::text[])
     order by available_at limit 1`,
    [[...workflowNames]],
    "cairn_next_due",
  );
  return row?.at ? { at: new Date(row.at), clockOnly: row.clock_only } : undefined;
}

/** What `requeueExpiredLeases` did with the runs whose lease lapsed. */
export interface LapsedRuns {
  /** Back in the queue: any process may claim them. */
  requeued: string[];
  /** Their lapse was the CAIRN_MAX_ABNORMAL_ACTIVATIONS-th in a row: paused, not claimed again until ResumeRun. */
  paused: string[];
}

const poisonReasonTail = " abnormal activations in a row: lease lapsed (holder crashed or hung); ResumeRun lets it try again";

/** The reason a run paused by the breaker carries (its `run_paused` entry; GetRun and ExplainRun show it). */
export function poisonPauseReason(streak: number): string {
  return `${reasonHead}${streak}${poisonReasonTail}`;
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
  const where = sql`status = 'running' and lease_expires_at < now()`;
  const rows = await queryRows<{ id: string; status: string }>(db, abnormalEndStatement({ where, skipLocked: true }, maxAbnormal, poisonReasonTail));
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
