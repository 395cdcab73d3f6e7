import { firstOf } from "../first-of.js";
import { and, eq, gte, inArray, lt, or, sql, type SQL } from "drizzle-orm";
import type { ChildOutcome } from "../../core/host.js";
import { type Db } from "../database.js";
import { selectRun } from "./rows.js";
import { type RunRow, type RunStatus, runs, terminalStatuses, waits } from "../schema.js";

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
  /** Only runs this schedule created. */
  scheduleId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
  /** Only runs that ended (completed_at) at or after / before these instants. */
  endedAfter?: Date | undefined;
  endedBefore?: Date | undefined;
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
  const conditions = runFilterConditions(namespace, filter);
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

/** The WHERE conditions of a RunFilter in one namespace (ListRuns and the selection of a batch share them). */
export function runFilterConditions(namespace: string, filter: RunFilter): (SQL | undefined)[] {
  const conditions: (SQL | undefined)[] = [eq(runs.namespace, namespace)];
  if (filter.workflowName) conditions.push(eq(runs.workflowName, filter.workflowName));
  if (filter.statuses && filter.statuses.length > 0) conditions.push(inArray(runs.status, [...filter.statuses]));
  if (filter.parentRunId) conditions.push(eq(runs.parentRunId, filter.parentRunId));
  if (filter.scheduleId) conditions.push(eq(runs.scheduleId, filter.scheduleId));
  if (filter.createdAfter) conditions.push(gte(runs.createdAt, filter.createdAfter));
  if (filter.createdBefore) conditions.push(lt(runs.createdAt, filter.createdBefore));
  if (filter.endedAfter) conditions.push(gte(runs.completedAt, filter.endedAfter));
  if (filter.endedBefore) conditions.push(lt(runs.completedAt, filter.endedBefore));
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
  return conditions;
}

/** The first of `childRunIds` that has ended, with its outcome. */
export async function findChildOutcome(db: Db, namespace: string, childRunIds: readonly string[]): Promise<ChildOutcome | undefined> {
  if (childRunIds.length === 0) return undefined;
  const rows = await db
    .select({ id: runs.id, workflowName: runs.workflowName, status: runs.status, output: runs.output, error: runs.error })
    .from(runs)
    .where(and(eq(runs.namespace, namespace), inArray(runs.id, [...childRunIds]), inArray(runs.status, [...terminalStatuses])));
  const row = firstOf(rows, childRunIds);
  if (!row) return undefined;
  const base = { childRunId: row.id, workflowName: row.workflowName };
  if (row.status === "completed") return { ...base, status: "completed", output: row.output ?? null };
  return { ...base, status: row.status as "failed" | "cancelled", error: row.error ?? undefined };
}
