/**
 * Journal entries: loaded whole for replay and read in pages for history.
 * Appends go through `JournalWriter` (journal-writer.ts), fenced by the run's
 * lease.
 */
import { and, asc, eq, getTableColumns, gt, inArray, sql } from "drizzle-orm";
import type { JournalEntry, EntryKind } from "../core/journal.js";
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
