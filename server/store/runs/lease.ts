import { and, eq, inArray, or, sql } from "drizzle-orm";
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

/**
 * Runs whose holder stopped heartbeating go back to the queue (their next claim bumps the epoch). That
 * activation ended abnormally (its process crashed, hung or lost the database): `abnormal_activations` counts it.
 */
export async function requeueExpiredLeases(db: Db): Promise<string[]> {
  const rows = await db
    .update(runs)
    .set({
      status: "queued",
      leaseOwner: null,
      leaseExpiresAt: null,
      availableAt: sql`now()`,
      abnormalActivations: sql`${runs.abnormalActivations} + 1`,
      updatedAt: sql`now()`,
    })
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
