/**
 * Journal entries: loaded whole for replay, appended one at a time under the
 * run's lease. The append is a single INSERT ... SELECT that reads the run row
 * FOR SHARE, so it commits only while the writer's (owner, epoch) still holds
 * the run; a concurrent re-claim either waits for it or makes it match nothing.
 */
import { and, asc, eq, getTableColumns, gt, sql } from "drizzle-orm";
import type { JournalEntry, NewEntry, EntryKind } from "../engine/journal.js";
import { type Db, queryRows } from "./database.js";
import type { Fence } from "./runs.js";
import { type JournalRow, journalEntries } from "./schema.js";

export async function loadJournal(db: Db, runId: string): Promise<JournalEntry[]> {
  const rows = await db
    .select(columnsWithPresence)
    .from(journalEntries)
    .where(eq(journalEntries.runId, runId))
    .orderBy(asc(journalEntries.sequence));
  return rows.map(toJournalEntry);
}

/** Entries after `afterSequence`, for history pages; one more than `limit` signals a further page. */
export async function listJournal(db: Db, namespace: string, runId: string, afterSequence: number, limit: number): Promise<JournalEntry[]> {
  const rows = await db
    .select(columnsWithPresence)
    .from(journalEntries)
    .where(
      and(
        eq(journalEntries.namespace, namespace),
        eq(journalEntries.runId, runId),
        gt(journalEntries.sequence, afterSequence),
      ),
    )
    .orderBy(asc(journalEntries.sequence))
    .limit(limit + 1);
  return rows.map(toJournalEntry);
}

/** Returns false when the fence no longer holds: nothing was written. */
export async function appendEntry(db: Db, fence: Fence, sequence: number, entry: NewEntry): Promise<boolean> {
  const result = entry.result === undefined ? null : JSON.stringify(entry.result);
  const error = entry.error === undefined ? null : JSON.stringify(entry.error);
  const rows = await queryRows<{ sequence: number }>(
    db,
    sql`insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt, started_at)
        select id, ${sequence}, namespace, ${entry.kind}, ${entry.name}, ${result}::jsonb, ${error}::jsonb,
               ${entry.attempt}, ${entry.startedAt.toISOString()}::timestamptz
        from runs
        where id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch}
          and status = 'running'
        for share
        returning sequence`,
  );
  return rows.length === 1;
}

/** `pg` parses a stored JSON null and SQL NULL alike, so presence is selected separately. */
const columnsWithPresence = {
  ...getTableColumns(journalEntries),
  hasResult: sql<boolean>`${journalEntries.result} is not null`,
};

function toJournalEntry(row: JournalRow & { hasResult: boolean }): JournalEntry {
  const entry: JournalEntry = {
    sequence: row.sequence,
    kind: row.kind as EntryKind,
    name: row.name,
    attempt: row.attempt,
    startedAt: row.startedAt ?? row.createdAt,
    createdAt: row.createdAt,
  };
  // SQL NULL means "no value" (a step that returned nothing); a stored JSON null is a value.
  if (row.hasResult) entry.result = row.result;
  if (row.error !== null) entry.error = row.error;
  return entry;
}
