/**
 * PauseRun: a queued or waiting run stops where it is until ResumeRun (an event or a due timer waits for it);
 * a running run stops at its next durable operation (its holder's write is refused, as for a cancel) and is
 * paused then. Pausing a paused run answers it unchanged (a retry after a lost reply).
 */
import { RunControlRefusedError, RunNotFoundError } from "../core/errors.js";
import { type PauseResult, pauseRun as pauseStored } from "../store/runs/pause.js";
import type { RunRow } from "../store/schema.js";
import { normalizeRunId } from "./get-run.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function pauseRun(deps: RunsDeps, call: Call, request: { runId: string; reason: string }): Promise<RunRow> {
  const runId = normalizeRunId(request.runId);
  call.throwIfDeadlinePassed();
  // Marked while it commits: watchers here that hear the store's notice first wait for the telling below.
  const settle = deps.store.commits.begin([runId]);
  let result: PauseResult | undefined;
  try {
    result = await pauseStored(deps.store.db, call.namespace, runId, request.reason);
    // The paused row and its entry, told to watchers here without a read: a paused run changes next by an entry of
    // its own (a resume, a cancel), so nothing a tail reads meanwhile can be newer without showing it (run-tail.ts).
    if (result?.outcome === "changed") {
      const { run, entry } = result;
      deps.feed.publishLocal(runId, run, () => [entry]);
    }
  } finally {
    settle();
  }
  if (!result) throw new RunNotFoundError(request.runId);
  if (result.outcome === "refused") {
    throw new RunControlRefusedError(runId, `run ${runId} already ended (${result.run.status.toUpperCase()}); only queued, running or waiting runs can be paused`);
  }
  return result.run;
}
