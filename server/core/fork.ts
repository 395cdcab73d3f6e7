/**
 * ForkRun's view of a journal: the prefix a fork copies. Operation names are unique within a run (replay
 * refuses a reused name), so a name alone says where to fork; no `name#N` form is needed.
 */
import type { JournalEntry } from "./journal.js";
import { supersededSequences } from "./superseded.js";

export interface ForkPrefix {
  /** The source's entries to copy, in order: operation entries only, none that a retry superseded. */
  entries: JournalEntry[];
  /** The source sequence of the named operation's first live entry (nothing at or after it is copied). */
  fromSequence: number;
}

/**
 * Everything the source journaled before operation `fromOperation` first appears; undefined when the source
 * never reached it. Run-level entries (run_failed, run_paused, run_retried, a run_forked of its own) are
 * history, not replay, and stay behind.
 */
export function forkPrefix(journal: readonly JournalEntry[], fromOperation: string): ForkPrefix | undefined {
  const superseded = supersededSequences(journal);
  const live = journal.filter((entry) => entry.name !== "" && !superseded.has(entry.sequence));
  const first = live.find((entry) => entry.name === fromOperation);
  if (!first) return undefined;
  return { entries: live.filter((entry) => entry.sequence < first.sequence), fromSequence: first.sequence };
}
