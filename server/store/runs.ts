/**
 * Runs: creation (with idempotency), reads, and the lease protocol the
 * scheduler uses. Every statement that acts for a lease holder names the
 * owner and epoch it claimed with; when another process has claimed the run
 * since, the statement matches no row and the caller learns it lost the run.
 */
import { and, desc, eq, gte, inArray, lt, or, sql, type SQL } from "drizzle-orm";
import type { JsonValue } from "../../sdk/workflow.js";
import type { FailureInfo } from "../engine/json.js";
import { type Db, queryRows } from "./database.js";
import { type RunRow, type RunStatus, runs } from "./schema.js";

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
  const claimed = claimFor
    ? {
        status: "running" as const,
        leaseOwner: claimFor.owner,
        leaseEpoch: 1,
        leaseExpiresAt: sql`now() + ${claimFor.leaseMs} * interval '1 millisecond'`,
        activationCount: 1,
        startedAt: sql`now()`,
      }
    : { status: "queued" as const };
  const inserted = await db
    .insert(runs)
    .values({
      id: run.id,
      namespace: run.namespace,
      workflowName: run.workflowName,
      input: run.input,
      idempotencyKey: run.idempotencyKey ?? null,
      metadata: run.metadata,
      parentRunId: run.parentRunId ?? null,
      ...claimed,
    })
    .onConflictDoNothing()
    .returning();
  const row = inserted[0];
  if (row) return { run: row, deduplicated: false };
  if (run.idempotencyKey === undefined) throw new Error(`run id ${run.id} collided`);
  const [existing] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, run.namespace), eq(runs.idempotencyKey, run.idempotencyKey)));
  if (!existing) throw new Error(`idempotency key ${run.idempotencyKey} conflicted but no run holds it`);
  return { run: existing, deduplicated: true };
}

export async function getRun(db: Db, namespace: string, runId: string): Promise<RunRow | undefined> {
  const [row] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, namespace), eq(runs.id, runId)));
  return row;
}

export interface RunFilter {
  workflowName?: string | undefined;
  statuses?: readonly RunStatus[] | undefined;
  parentRunId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
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
  const conditions: (SQL | undefined)[] = [eq(runs.namespace, namespace)];
  if (filter.workflowName) conditions.push(eq(runs.workflowName, filter.workflowName));
  if (filter.statuses && filter.statuses.length > 0) conditions.push(inArray(runs.status, [...filter.statuses]));
  if (filter.parentRunId) conditions.push(eq(runs.parentRunId, filter.parentRunId));
  if (filter.createdAfter) conditions.push(gte(runs.createdAt, filter.createdAfter));
  if (filter.createdBefore) conditions.push(lt(runs.createdAt, filter.createdBefore));
  if (after) {
    conditions.push(
      or(lt(runs.createdAt, after.createdAt), and(eq(runs.createdAt, after.createdAt), lt(runs.id, after.id))),
    );
  }
  return db
    .select()
    .from(runs)
    .where(and(...conditions))
    .orderBy(desc(runs.createdAt), desc(runs.id))
    .limit(limit + 1);
}

/**
 * Claims up to `limit` due queued runs for `owner`, bumping each one's epoch.
 * SKIP LOCKED lets several processes claim concurrently without blocking or
 * double-claiming. If the process dies after this commits, the lease lapses
 * and `requeueExpiredLeases` hands the runs to someone else.
 */
export async function claimQueuedRuns(db: Db, owner: string, leaseMs: number, limit: number): Promise<RunRow[]> {
  return db
    .update(runs)
    .set({
      status: "running",
      leaseOwner: owner,
      leaseEpoch: sql`${runs.leaseEpoch} + 1`,
      leaseExpiresAt: sql`now() + ${leaseMs} * interval '1 millisecond'`,
      activationCount: sql`${runs.activationCount} + 1`,
      startedAt: sql`coalesce(${runs.startedAt}, now())`,
      updatedAt: sql`now()`,
    })
    .where(
      inArray(
        runs.id,
        sql`(select id from runs where status = 'queued' and available_at <= now()
             order by available_at limit ${limit} for update skip locked)`,
      ),
    )
    .returning();
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

/** Extends the leases `owner` still holds; returns the fences that were renewed (others were lost). */
export async function renewLeases(db: Db, owner: string, leaseMs: number, runIds: readonly string[]): Promise<Fence[]> {
  if (runIds.length === 0) return [];
  const rows = await queryRows<{ id: string; lease_epoch: number }>(
    db,
    sql`update runs set lease_expires_at = now() + ${leaseMs} * interval '1 millisecond'
        where lease_owner = ${owner} and status = 'running'
          and id = any (select jsonb_array_elements_text(${JSON.stringify(runIds)}::jsonb)::uuid)
        returning id, lease_epoch`,
  );
  return rows.map((r) => ({ runId: r.id, owner, epoch: r.lease_epoch }));
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
  | { status: "failed"; error: FailureInfo };

/**
 * Records the run's end and its final journal entry in one statement, fenced
 * by the lease. Returns false when the fence no longer holds (nothing written).
 */
export async function finishRun(db: Db, fence: Fence, sequence: number, ending: RunEnding): Promise<boolean> {
  const output = ending.status === "completed" ? JSON.stringify(ending.output) : null;
  const error = ending.status === "failed" ? JSON.stringify(ending.error) : null;
  const kind = ending.status === "completed" ? "run_completed" : "run_failed";
  const rows = await queryRows<{ sequence: number }>(
    db,
    sql`with finished as (
          update runs set status = ${ending.status}, output = ${output}::jsonb, error = ${error}::jsonb,
                 lease_owner = null, lease_expires_at = null, waiting_on = null,
                 completed_at = now(), updated_at = now()
          where id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch}
          returning id, namespace)
        insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt)
        select id, ${sequence}, namespace, ${kind}, '', ${output}::jsonb, ${error}::jsonb, 1 from finished
        returning sequence`,
  );
  return rows.length === 1;
}
