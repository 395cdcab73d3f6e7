/**
 * Watching one run: its current state, then every journal entry after the
 * caller's position and every status change, until the run has ended and
 * everything before its end was sent. One shared reader per run in this
 * process (run-tail.ts), told of changes by the process's run feed; each
 * watcher only keeps its own position and reads nothing while it is current.
 */
import type { JournalEntry } from "../core/journal.js";
import { listJournalPage } from "../store/journal-page.js";
import { type RunRow, terminalStatuses } from "../store/schema.js";
import { RunNotFoundError } from "../core/errors.js";
import { getRun, normalizeRunId } from "./get-run.js";
import { windowBytes } from "./run-tail.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export type RunUpdate = { kind: "run"; run: RunRow } | { kind: "entry"; entry: JournalEntry };

/** A stream with nothing new sleeps until its tail signals (no timer needed); this only bounds one sleep. */
const idleWakeMs = 60_000;

/** Entries a watcher reads per round trip when it is behind the shared window. */
const watchPageSize = 500;

export async function* watchRun(deps: RunsDeps, call: Call, request: { runId: string; afterSequence: number }): AsyncGenerator<RunUpdate> {
  // The shared tail holds the run's state, once per run however many streams watch it (a stream may stay open for
  // hours). Its first read is the NOT_FOUND check too: it reads the run in the caller's namespace only.
  const runId = normalizeRunId(request.runId);
  const { tail, signal, release } = await deps.tails.acquire(call.namespace, runId);
  try {
    // No row: no such run in the caller's namespace, unless the tail's first read is waiting out a gap in the journal
    // (then the run's own read tells).
    if (!tail.run && !tail.waitingOutGap) throw new RunNotFoundError(request.runId);
    const snapshot = tail.run ?? (await getRun(deps, call, request.runId));
    let status = snapshot.status;
    yield { kind: "run", run: snapshot };
    let cursor = request.afterSequence;
    while (!call.signal.aborted) {
      const first = tail.window[0];
      if (cursor < tail.lastSequence && (!first || cursor + 1 < first.sequence)) {
        // Behind the shared window (a new watcher of a long run, or a slow one): catch up from the store.
        // A page bounded by bytes too, like the shared window: one watcher catching up holds little at a time.
        const { entries: older } = await listJournalPage(deps.store.db, call.namespace, runId, cursor, watchPageSize, windowBytes);
        for (const entry of older) {
          if (first && entry.sequence >= first.sequence) break;
          cursor = entry.sequence;
          yield { kind: "entry", entry };
        }
        continue;
      }
      for (const entry of tail.window) {
        if (entry.sequence <= cursor) continue;
        if (entry.sequence > tail.lastSequence) break;
        cursor = entry.sequence;
        yield { kind: "entry", entry };
      }
      const latest = tail.run;
      if (latest && latest.status !== status) {
        status = latest.status;
        yield { kind: "run", run: latest };
      }
      // The final entry and the final status commit together: a final status with nothing after the cursor ends the stream.
      if (latest && terminalStatuses.includes(latest.status) && cursor >= tail.lastSequence) return;
      if (cursor < tail.lastSequence) continue;
      await signal.next(idleWakeMs, call.signal);
    }
    // The deadline passed before the run ended: DEADLINE_EXCEEDED, not a clean end.
    call.throwIfDeadlinePassed();
  } finally {
    release();
  }
}
