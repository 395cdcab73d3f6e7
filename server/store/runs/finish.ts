import { and, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import type { NewEntry } from "../../core/journal.js";
import type { FailureInfo } from "../../core/json.js";
import { toRecord } from "../journal-writer.js";
import { lockChildKey } from "../events.js";
import { type Db, queryRows } from "../database.js";
import type { Store } from "../store.js";
import { type RunRow, runs, waits } from "../schema.js";
import { type Fence } from "./lease.js";

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
  store: Store,
  fence: Fence,
  sequence: number,
  ending: RunEnding,
  parentRunId?: string | null,
): Promise<boolean> {
  return (await endRun(store, fence, sequence, ending, parentRunId)) !== undefined;
}

/** `finishRun`, answering the final row when the statement returned it; undefined when the fence no longer holds. */
export async function endRun(
  store: Store,
  fence: Fence,
  sequence: number,
  ending: RunEnding,
  parentRunId?: string | null,
  /** Entries written in the same statement, before the end (a run without a parent only: a child's end writes none). */
  entries: readonly { sequence: number; entry: NewEntry }[] = [],
): Promise<{ row: RunRow | undefined } | undefined> {
  if (!parentRunId) {
    const output = ending.status === "completed" ? JSON.stringify(ending.output) : null;
    const error = ending.status === "completed" ? null : JSON.stringify(ending.error);
    const finish = { runId: fence.runId, owner: fence.owner, epoch: fence.epoch, sequence, status: ending.status, output, error };
    const ridden = entries.length > 0 ? { entries: entries.map(({ sequence, entry }) => toRecord({ fence, sequence, entry })) } : {};
    const row = await store.runEndings.submit({ ...finish, kind: endingKinds[ending.status], ...ridden });
    return row ? { row } : undefined;
  }
  if (entries.length > 0) throw new Error("entries ride only on the end of a run without a parent");
  // A child's end must wake a parent parked on it: take the child key the parent's suspension takes.
  const finished = await store.db.transaction(async (tx) => {
    await lockChildKey(tx, fence.runId);
    const written = await finishRunStatement(tx, fence, sequence, ending);
    if (written) await wakeParent(tx, fence.runId);
    return written;
  });
  return finished ? { row: undefined } : undefined;
}

/** Wakes a run parked on `childRunId`, if any; the notice reaches every server process at commit. */
export async function wakeParent(db: Db, childRunId: string): Promise<void> {
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
