import { and, eq, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import { type Db } from "../database.js";
import type { Store } from "../store.js";
import { type RunRow, runs } from "../schema.js";
import { insertDebouncedRun, type RunFlow, type RunInsert } from "./rows.js";

export interface NewRun {
  id: string;
  namespace: string;
  workflowName: string;
  input: JsonValue;
  idempotencyKey?: string | undefined;
  metadata: Record<string, string>;
  parentRunId?: string | undefined;
  /** W3C `traceparent` the run's spans continue. */
  traceParent?: string | undefined;
  /** Run-level timeout, ms from creation (absent: none): stored as `timeout_at`. */
  timeoutMs?: number | undefined;
  /** Flow control fixed at creation (docs/flow-control.md). */
  flow?: RunFlow | undefined;
}

export interface CreateRunResult {
  run: RunRow;
  /** An earlier run with the same idempotency key was returned instead. */
  deduplicated: boolean;
  /** Debounce: the creation folded into its key's run that had not started yet (its input is now this one's). */
  debounced?: boolean;
}

/**
 * Inserts the run, queued — or already claimed by `claimFor` (eager start), so
 * no other process picks it up. Committed before the caller replies, so an
 * accepted run survives any crash after this returns.
 */
export async function insertRun(
  store: Store,
  run: NewRun,
  claimFor?: { owner: string; leaseMs: number },
): Promise<CreateRunResult> {
  if (run.flow?.debounceKey != null) {
    // Not batched: its conflict target is the debounce key, not any unique index.
    const { run: row, debounced } = await insertDebouncedRun(store.db, toInsert(run, claimFor));
    return { run: row, deduplicated: false, debounced };
  }
  const inserted = await store.runInserts.submit(toInsert(run, claimFor));
  if (inserted) return { run: inserted, deduplicated: false };
  if (run.idempotencyKey === undefined) throw new Error(`run id ${run.id} collided`);
  const [existing] = await store.db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, run.namespace), eq(runs.idempotencyKey, run.idempotencyKey)));
  if (!existing) throw new Error(`idempotency key ${run.idempotencyKey} conflicted but no run holds it`);
  return { run: existing, deduplicated: true };
}

function toInsert(run: NewRun, claimFor: { owner: string; leaseMs: number } | undefined): RunInsert {
  return {
    id: run.id,
    namespace: run.namespace,
    workflowName: run.workflowName,
    input: run.input,
    idempotencyKey: run.idempotencyKey ?? null,
    metadata: run.metadata,
    parentRunId: run.parentRunId ?? null,
    traceParent: run.traceParent ?? null,
    timeoutMs: run.timeoutMs ?? null,
    flow: run.flow,
    claimFor,
  };
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
      traceParent: child.traceParent ?? null,
      ...(child.timeoutMs !== undefined ? { timeoutAt: sql`now() + ${child.timeoutMs} * interval '1 millisecond'` } : {}),
    })
    .onConflictDoNothing({ target: runs.id })
    .returning({ id: runs.id });
  return inserted.length === 1;
}
