/**
 * Journal entries: loaded whole for replay, appended one at a time under the
 * run's lease. The append is a single INSERT ... SELECT that reads the run row
 * FOR SHARE, so it commits only while the writer's (owner, epoch) still holds
 * the run; a concurrent re-claim either waits for it or makes it match nothing.
 * A cancel request also makes it match nothing: cancellation reaches a running
 * run at its next durable operation.
 */
import { and, asc, eq, getTableColumns, gt, inArray, sql } from "drizzle-orm";
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

/** The journals of several runs in one query (a claim batch), by run id. */
export async function loadJournals(db: Db, runIds: readonly string[]): Promise<Map<string, JournalEntry[]>> {
  const journals = new Map<string, JournalEntry[]>(runIds.map((id) => [id, []]));
  if (runIds.length === 0) return journals;
  const rows = await db
    .select(columnsWithPresence)
    .from(journalEntries)
    .where(inArray(journalEntries.runId, [...runIds]))
    .orderBy(asc(journalEntries.runId), asc(journalEntries.sequence));
  for (const row of rows) journals.get(row.runId)?.push(toJournalEntry(row));
  return journals;
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

/** Returns false when the fence no longer holds (lease lost or cancel requested): nothing was written. */
export async function appendEntry(db: Db, fence: Fence, sequence: number, entry: NewEntry): Promise<boolean> {
  const result = entry.result === undefined ? null : JSON.stringify(entry.result);
  const error = entry.error === undefined ? null : JSON.stringify(entry.error);
  const rows = await queryRows<{ sequence: number }>(
    db,
    sql`insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt, started_at,
                                     fire_at, timeout_at, event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id)
        select id, ${sequence}, namespace, ${entry.kind}, ${entry.name}, ${result}::jsonb, ${error}::jsonb,
               ${entry.attempt}, ${iso(entry.startedAt)}::timestamptz, ${iso(entry.fireAt)}::timestamptz,
               ${iso(entry.timeoutAt)}::timestamptz, ${entry.eventType ?? null}, ${entry.correlationId ?? null},
               ${iso(entry.lookbackFrom)}::timestamptz, ${entry.eventId ?? null}::uuid, ${entry.targetRunId ?? null}::uuid, ${entry.targetTurnId ?? null}::uuid
        from runs
        where id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch}
          and status = 'running' and cancel_requested_at is null
        for share
        returning sequence`,
  );
  return rows.length === 1;
}

function iso(date: Date | undefined): string | null {
  return date ? date.toISOString() : null;
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
  if (row.fireAt) entry.fireAt = row.fireAt;
  if (row.timeoutAt) entry.timeoutAt = row.timeoutAt;
  if (row.eventType !== null) entry.eventType = row.eventType;
  if (row.correlationId !== null) entry.correlationId = row.correlationId;
  if (row.lookbackFrom) entry.lookbackFrom = row.lookbackFrom;
  if (row.eventId) entry.eventId = row.eventId;
  if (row.targetRunId) entry.targetRunId = row.targetRunId;
  if (row.targetTurnId) entry.targetTurnId = row.targetTurnId;
  if (row.error !== null) entry.error = row.error;
  return entry;
}
