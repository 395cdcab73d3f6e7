/** A run's history: its journal entries after a position, in pages. */
import type { JournalEntry } from "../core/journal.js";
import { listJournalPage } from "../store/journal-page.js";
import { getRun } from "./get-run.js";
import { clampPageSize } from "./list-runs.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function runHistory(
  deps: RunsDeps,
  call: Pick<Call, "namespace">,
  request: { runId: string; afterSequence: number; pageSize: number },
): Promise<{ entries: JournalEntry[]; hasMore: boolean }> {
  const run = await getRun(deps, call, request.runId);
  const pageSize = clampPageSize(request.pageSize, 1000, deps.maxHistoryPageSize);
  // Bounded by bytes too (CAIRN_MAX_HISTORY_PAGE_BYTES): fewer entries and has_more when large results fill it.
  return listJournalPage(deps.store.db, call.namespace, run.id, request.afterSequence, pageSize, deps.maxHistoryPageBytes);
}

/**
 * A client's after_sequence (int64, not negative) as a journal position. Sequences are 32-bit in the store,
 * so anything above the largest one means "after every entry" (fuzz finding: it reached SQL out of range).
 */
export function sequenceAfter(afterSequence: bigint): number {
  return afterSequence > maxSequence ? Number(maxSequence) : Number(afterSequence);
}
const maxSequence = 2n ** 31n - 1n;
