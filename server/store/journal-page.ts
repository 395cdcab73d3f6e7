/**
 * A page of a run's history bounded by bytes as well as by count: entries are taken in sequence order while the
 * running total of their result and error JSON stays within `maxBytes` (the first entry always, so a page is
 * never empty while entries remain). Sizes are summed in PostgreSQL, so entries past the budget never reach this
 * process: a run with a thousand 1 MB step results costs one page's budget per GetRunHistory call, not a GB.
 */
import type { JournalEntry } from "../core/journal.js";
import { type Db, rawQuery } from "./database.js";
import { journalEntriesBetween } from "./journal.js";

export async function listJournalPage(
  db: Db,
  namespace: string,
  runId: string,
  afterSequence: number,
  limit: number,
  maxBytes: number,
): Promise<{ entries: JournalEntry[]; hasMore: boolean }> {
  // WindowAgg streams in index order, so the LIMIT stops the scan (and the sizing) early.
  const sizes = await rawQuery<{ sequence: number; upto: string; n: string }>(
    db,
    `select sequence,
            sum(coalesce(octet_length(result::text), 0) + coalesce(octet_length(error::text), 0)) over (order by sequence) as upto,
            row_number() over (order by sequence) as n
     from journal_entries where namespace = $1 and run_id = $2 and sequence > $3
     order by sequence limit $4`,
    [namespace, runId, afterSequence, limit + 1],
    "cairn_history_page_sizes",
  );
  let last: number | undefined;
  let fitting = 0;
  for (const row of sizes) {
    if (Number(row.n) > limit || (fitting > 0 && Number(row.upto) > maxBytes)) break;
    last = row.sequence;
    fitting++;
  }
  if (last === undefined) return { entries: [], hasMore: false };
  const entries = await journalEntriesBetween(db, namespace, runId, afterSequence, last);
  return { entries, hasMore: fitting < sizes.length };
}
