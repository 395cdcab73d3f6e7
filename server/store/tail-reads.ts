/**
 * What the watch streams of many runs need after their runs changed, read for all of them at once: one statement
 * for the runs, then one for the entries each lacks. When a burst of runs changes together (500 timers firing, a
 * batch cancel), their WatchRun readers cost two statements per batch, not three per run per change, so watching
 * does not crowd the pool that claims and timers need.
 */
import { asc, inArray, sql } from "drizzle-orm";
import type { JournalEntry } from "../core/journal.js";
import type { Db } from "./database.js";
import { columnsWithPresence, toJournalEntry } from "./journal.js";
import { journalEntries, type RunRow, runs } from "./schema.js";

export interface TailWanted {
  namespace: string;
  runId: string;
  /** Entries after this sequence are wanted. */
  afterSequence: number;
}

export interface TailRead {
  /** The run as read before its entries (undefined: gone, or in another namespace). */
  run: RunRow | undefined;
  /** New entries in sequence order, as many as fitted. */
  entries: JournalEntry[];
  /** False: more entries may follow (the batch's per-run share or an entry too large to batch): read them alone. */
  complete: boolean;
}

/** Entries taken per run in a batch; a run with more new ones is finished by its own paged read. */
export const entriesPerRun = 64;
/** An entry larger than this (result and error JSON) ends the run's share of a batch; its own read pages by bytes. */
export const maxBatchedEntryBytes = 64 * 1024;

export async function readTails(db: Db, wanted: readonly TailWanted[]): Promise<TailRead[]> {
  if (wanted.length === 0) return [];
  // The runs first: a final status read here guarantees the entries read next include the final entry (both
  // commit together), so a stream that ends on the status has seen everything.
  const runRows = await db
    .select()
    .from(runs)
    .where(inArray(runs.id, wanted.map((w) => w.runId)));
  const runById = new Map(runRows.map((run) => [run.id, run]));
  const limit = entriesPerRun * wanted.length + 1;
  const rows = await db
    .select({
      ...columnsWithPresence,
      bytes: sql<number>`coalesce(octet_length(${journalEntries.result}::text), 0) + coalesce(octet_length(${journalEntries.error}::text), 0)`,
    })
    .from(journalEntries)
    // The wanted runs as one array-valued relation, not an OR of one range per run: the plan is the same index probe
    // per run, but an OR of 200 ranges cost PostgreSQL about 10 ms to plan, as much as running it.
    .innerJoin(
      sql`unnest(${sql.param(wanted.map((w) => w.runId))}::uuid[], ${sql.param(wanted.map((w) => w.namespace))}::text[], ${sql.param(wanted.map((w) => w.afterSequence))}::int[]) as wanted(run_id, namespace, after_sequence)`,
      sql`${journalEntries.runId} = wanted.run_id and ${journalEntries.namespace} = wanted.namespace and ${journalEntries.sequence} > wanted.after_sequence`,
    )
    .orderBy(asc(journalEntries.runId), asc(journalEntries.sequence))
    .limit(limit);
  // Over the overall limit, no run's share is known to be whole.
  const truncated = rows.length === limit;
  const byRun = new Map<string, { entries: JournalEntry[]; complete: boolean }>();
  for (const row of rows) {
    let share = byRun.get(row.runId);
    if (!share) byRun.set(row.runId, (share = { entries: [], complete: true }));
    if (!share.complete) continue;
    if (share.entries.length >= entriesPerRun || Number(row.bytes) > maxBatchedEntryBytes) {
      share.complete = false;
      continue;
    }
    share.entries.push(toJournalEntry(row));
  }
  return wanted.map((w) => {
    const run = runById.get(w.runId);
    const share = byRun.get(w.runId);
    return {
      run: run && run.namespace === w.namespace ? run : undefined,
      entries: share?.entries ?? [],
      complete: !truncated && (share?.complete ?? true),
    };
  });
}
