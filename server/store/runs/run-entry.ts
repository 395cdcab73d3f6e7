/**
 * Run-level history entries written outside an activation (a cancel, a pause, a resume, a retry): appended at the
 * run's next sequence, inside the caller's transaction, which holds the run's row lock so no activation
 * writes in between.
 */
import { and, eq, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import type { FailureInfo } from "../../core/json.js";
import type { JournalEntry } from "../../core/journal.js";
import { type Db, queryRows } from "../database.js";
import { entryAsRead } from "../journal-writer.js";
import { journalEntries, type RunRow, runs } from "../schema.js";

/**
 * Appends the entry and answers it as a read of the journal will give it (its stored values, in jsonb's key order,
 * and its `created_at`), so that this process can tell its own watchers of the change without a read (run-feed.ts).
 */
export async function appendRunEntry(
  db: Db,
  run: { id: string; namespace: string },
  kind: string,
  error: string | null,
  result: JsonValue | null = null,
): Promise<JournalEntry> {
  const resultJson = result === null ? null : JSON.stringify(result);
  const [stored] = await queryRows<StoredRunEntry>(
    db,
    sql`insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt)
        select ${run.id}::uuid, coalesce(max(sequence), 0) + 1, ${run.namespace}, ${kind}, '', ${resultJson}::jsonb, ${error}::jsonb, 1
        from journal_entries where run_id = ${run.id}::uuid
        returning ${storedRunEntryColumns}`,
  );
  if (!stored) throw new Error(`run ${run.id}: its ${kind} entry was not written`);
  return runEntryAsRead(run, kind, stored);
}

/** What a run-level entry's insert returns (`storedRunEntryColumns`): the values as stored, not as sent. */
export interface StoredRunEntry {
  sequence: number;
  result: JsonValue | null;
  /** SQL NULL and a stored JSON null both come back as null. */
  has_result: boolean;
  error: FailureInfo | null;
  /** As the driver hands a raw statement's timestamp: text (mapped as the schema's column maps it). */
  created_at: string | Date;
}

export const storedRunEntryColumns = sql.raw("sequence, result, result is not null as has_result, error, created_at");

/** A run-level entry (no name, attempt 1) from what its insert returned, exactly as `loadJournal` reads it. */
export function runEntryAsRead(run: { id: string; namespace: string }, kind: string, stored: StoredRunEntry): JournalEntry {
  const record = {
    run_id: run.id,
    sequence: stored.sequence,
    kind,
    name: "",
    attempt: 1,
    ...(stored.has_result ? { result: [stored.result] } : {}),
    ...(stored.error === null ? {} : { error: stored.error }),
  };
  return entryAsRead(record, run.namespace, journalEntries.createdAt.mapFromDriverValue(stored.created_at as string) as Date);
}

/** The run's row, locked for the rest of the transaction (ordered against a concurrent claim). */
export async function lockRun(db: Db, namespace: string, runId: string): Promise<RunRow | undefined> {
  const [run] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, namespace), eq(runs.id, runId)))
    .for("update");
  return run;
}
