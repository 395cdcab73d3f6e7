/**
 * Journal entries: loaded whole for replay and read in pages for history.
 * Appends go through `JournalWriter` (journal-writer.ts), fenced by the run's
 * lease.
 */
import { and, asc, eq, getTableColumns, gt, inArray, lte, sql } from "drizzle-orm";
import { type EntryRecord, entryFromRecord, type JournalEntry } from "../core/journal.js";
import { type Db, queryRows } from "./database.js";
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
/** The run's last journaled sequence number (0: none). */
export async function lastSequence(db: Db, runId: string): Promise<number> {
  const rows = await queryRows<{ last: number }>(db, sql`select coalesce(max(sequence), 0)::int as last from journal_entries where run_id = ${runId}`);
  return rows[0]?.last ?? 0;
}

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

/** The entries with afterSequence < sequence <= lastSequence, in order (a byte-bounded history page). */
export async function journalEntriesBetween(db: Db, namespace: string, runId: string, afterSequence: number, lastSequence: number): Promise<JournalEntry[]> {
  const rows = await db
    .select(columnsWithPresence)
    .from(journalEntries)
    .where(
      and(
        eq(journalEntries.namespace, namespace),
        eq(journalEntries.runId, runId),
        gt(journalEntries.sequence, afterSequence),
        lte(journalEntries.sequence, lastSequence),
      ),
    )
    .orderBy(asc(journalEntries.sequence));
  return rows.map(toJournalEntry);
}

/** `pg` parses a stored JSON null and SQL NULL alike, so presence is selected separately. */
export const columnsWithPresence = {
  ...getTableColumns(journalEntries),
  hasResult: sql<boolean>`${journalEntries.result} is not null`,
};

export function toJournalEntry(row: JournalRow & { hasResult: boolean }): JournalEntry {
  const record: EntryRecord = { kind: row.kind, name: row.name, attempt: row.attempt, startedAt: row.startedAt ?? row.createdAt };
  // SQL NULL means "no value" (a step that returned nothing); a stored JSON null is a value.
  if (row.hasResult) record.result = row.result;
  if (row.fireAt) record.fireAt = row.fireAt;
  if (row.timeoutAt) record.timeoutAt = row.timeoutAt;
  if (row.eventType !== null) record.eventType = row.eventType;
  if (row.correlationId !== null) record.correlationId = row.correlationId;
  if (row.lookbackFrom) record.lookbackFrom = row.lookbackFrom;
  if (row.eventId) record.eventId = row.eventId;
  if (row.targetRunId) record.targetRunId = row.targetRunId;
  if (row.targetTurnId) record.targetTurnId = row.targetTurnId;
  if (row.error !== null) record.error = row.error;
  return { ...entryFromRecord(record), sequence: row.sequence, createdAt: row.createdAt };
}
