/**
 * What the watch streams of many runs need after their runs changed, read for all of them at once: one statement
 * for the runs (those whose row may have changed), then one for the entries each lacks. When a burst of runs changes together (500 timers firing, a
 * batch cancel), their WatchRun readers cost two statements per batch, not three per run per change, so watching
 * does not crowd the pool that claims and timers need.
 */
import { asc, sql } from "drizzle-orm";
import type { JournalEntry } from "../core/journal.js";
import type { Db } from "./database.js";
import { columnsWithPresence, toJournalEntry } from "./journal.js";
import { journalEntries, type RunRow, runs } from "./schema.js";

export interface TailWanted {
  namespace: string;
  runId: string;
  /** Entries after this sequence are wanted. */
  afterSequence: number;
  /**
   * The run's row is wanted too (the default). False when all the tail heard of is new entries (a journal notice):
   * an append alone changes no status, so the row, with its input and output, is not read again.
   */
  withRun?: boolean;
}

export interface TailRead {
  /** The run as read before its entries (undefined: gone, or in another namespace, or not wanted: `withRun` false). */
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

/**
 * The two statements, built once per database and prepared (named): building a drizzle query cost more CPU per read
 * than running it (about 0.6 ms per WatchRun'd W2 run in a profile), and a named statement is parsed once per
 * connection.
 */
function statementsOf(db: Db): TailStatements {
  let statements = prepared.get(db);
  if (!statements) {
    statements = buildStatements(db);
    prepared.set(db, statements);
  }
  return statements;
}

function buildStatements(db: Db) {
  return {
    runs: db
      .select()
      .from(runs)
      .where(sql`${runs.id} = any(${sql.placeholder("ids")}::uuid[])`)
      .prepare("cairn_tail_runs"),
    entries: db
      .select({
        ...columnsWithPresence,
        bytes: sql<number>`coalesce(octet_length(${journalEntries.result}::text), 0) + coalesce(octet_length(${journalEntries.error}::text), 0)`,
      })
      .from(journalEntries)
      // The wanted runs as one array-valued relation, not an OR of one range per run: the plan is the same index
      // probe per run, but an OR of 200 ranges cost PostgreSQL about 10 ms to plan, as much as running it.
      .innerJoin(
        sql`unnest(${sql.placeholder("ids")}::uuid[], ${sql.placeholder("namespaces")}::text[], ${sql.placeholder("after")}::int[]) as wanted(run_id, namespace, after_sequence)`,
        sql`${journalEntries.runId} = wanted.run_id and ${journalEntries.namespace} = wanted.namespace and ${journalEntries.sequence} > wanted.after_sequence`,
      )
      .orderBy(asc(journalEntries.runId), asc(journalEntries.sequence))
      .limit(sql.placeholder("limit"))
      .prepare("cairn_tail_entries"),
  };
}

type TailStatements = ReturnType<typeof buildStatements>;
const prepared = new WeakMap<Db, TailStatements>();

export async function readTails(db: Db, wanted: readonly TailWanted[]): Promise<TailRead[]> {
  if (wanted.length === 0) return [];
  const statements = statementsOf(db);
  // The runs first: a final status read here guarantees the entries read next include the final entry (both
  // commit together), so a stream that ends on the status has seen everything.
  const runIds = wanted.filter((w) => w.withRun !== false).map((w) => w.runId);
  const runRows = runIds.length === 0 ? [] : await statements.runs.execute({ ids: runIds });
  const runById = new Map(runRows.map((run) => [run.id, run]));
  const limit = entriesPerRun * wanted.length + 1;
  const rows = await statements.entries.execute({
    ids: wanted.map((w) => w.runId),
    namespaces: wanted.map((w) => w.namespace),
    after: wanted.map((w) => w.afterSequence),
    limit,
  });
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
