/**
 * CAIRN_MAX_JOURNAL_BYTES: the result and error JSON a run's journal may hold in all. Every activation replays the
 * whole journal in memory, so a loop journaling large results would otherwise grow without end and, past the
 * memory a process has, fail every activation of that run (and take its neighbours with it). The activation
 * counts what it loaded and refuses the write that would pass the budget: the run fails with an error naming
 * the setting, rather than the process running out of memory later.
 */
import type { JournalEntry, NewEntry } from "./journal.js";
import { utf8Bytes } from "./json.js";

export class JournalTooLargeError extends Error {
  override readonly name = "JournalTooLargeError";
  constructor(
    readonly runId: string,
    readonly sizeBytes: number,
    readonly limitBytes: number,
  ) {
    super(
      `run ${runId}: its journal would reach ${sizeBytes} bytes of results and errors, past the limit of ${limitBytes} bytes ` +
        `(CAIRN_MAX_JOURNAL_BYTES); keep large values outside the run (store them and journal a reference) or raise the limit`,
    );
  }
}

/** The bytes an entry adds to the budget: its result and error as JSON. */
export function entryBytes(entry: Pick<JournalEntry, never> & { result?: unknown; error?: unknown }): number {
  let bytes = 0;
  if (entry.result !== undefined) bytes += utf8Bytes(JSON.stringify(entry.result) ?? "");
  if (entry.error !== undefined) bytes += utf8Bytes(JSON.stringify(entry.error) ?? "");
  return bytes;
}

export class JournalBudget {
  private bytes = 0;

  constructor(
    private readonly runId: string,
    private readonly limitBytes: number | undefined,
    journal: readonly JournalEntry[],
  ) {
    if (limitBytes === undefined) return;
    for (const entry of journal) this.bytes += entryBytes(entry as { result?: unknown; error?: unknown });
  }

  /** Counts `entry` in; a JournalTooLargeError (and nothing counted) when it would pass the limit. */
  admit(entry: NewEntry): JournalTooLargeError | undefined {
    if (this.limitBytes === undefined) return undefined;
    const after = this.bytes + entryBytes(entry as { result?: unknown; error?: unknown });
    if (after > this.limitBytes) return new JournalTooLargeError(this.runId, after, this.limitBytes);
    this.bytes = after;
    return undefined;
  }
}
