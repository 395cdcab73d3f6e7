import { and, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import type { JournalEntry, NewEntry } from "../../core/journal.js";
import type { FailureInfo } from "../../core/json.js";
import { entryAsRead } from "../journal-writer.js";
import { toRecord } from "../journal-insert.js";
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
): Promise<{ row: RunRow | undefined; entries?: () => JournalEntry[] } | undefined> {
  if (!parentRunId) {
    const output = ending.status === "completed" ? JSON.stringify(ending.output) : null;
    const error = ending.status === "completed" ? null : JSON.stringify(ending.error);
    const finish = { runId: fence.runId, owner: fence.owner, epoch: fence.epoch, sequence, status: ending.status, output, error };
    const records = entries.map(({ sequence, entry }) => toRecord({ fence, sequence, entry }));
    const row = await store.runEndings.submit({ ...finish, kind: endingKinds[ending.status], ...(records.length > 0 ? { entries: records } : {}) });
    if (!row) return undefined;
    // Built only if a local waiter asks (a watched run): most ends are awaited, and the row is all an await needs.
    let written: JournalEntry[] | undefined;
    return { row, entries: () => (written ??= writtenWithEnd(row, records, sequence)) };
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

/**
 * The entries a run's end wrote (those riding on it, then the final one) as a read of the journal would give them,
 * from what the statement was given and the row it returned: every row of that statement got the same `now()`, so
 * the entries' `created_at` is the run's `completed_at`, and jsonb hands objects back with its own key order.
 */
function writtenWithEnd(row: RunRow, riding: readonly Record<string, unknown>[], sequence: number): JournalEntry[] {
  const createdAt = row.completedAt as Date;
  const entries = riding.map((record) => entryAsRead(record, row.namespace, createdAt));
  // The final entry: the run's output (completed; never SQL NULL) or its error, as the statement copied them.
  const completed = row.status === "completed";
  const final = { run_id: row.id, sequence, kind: endingKinds[row.status as RunEnding["status"]], name: "", attempt: 1 };
  entries.push(entryAsRead({ ...final, result: completed ? [row.output] : undefined, error: row.error ?? undefined }, row.namespace, createdAt));
  return entries;
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
