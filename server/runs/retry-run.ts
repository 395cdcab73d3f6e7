/**
 * RetryRun: a FAILED run is queued again and continues from where it failed. Replay hands back every entry
 * it journaled except those the retry supersedes (the run's failure and the operation that caused it), so
 * completed steps are not run again and the failed operation runs again from attempt 1. Any other status
 * is refused, a second RetryRun on the now-queued run too.
 */
import { RunControlRefusedError, RunNotFoundError } from "../core/errors.js";
import { retryRun as retryStored } from "../store/runs/retry.js";
import type { RunRow } from "../store/schema.js";
import { normalizeRunId } from "./get-run.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function retryRun(deps: RunsDeps, call: Call, request: { runId: string; reason: string }): Promise<RunRow> {
  const runId = normalizeRunId(request.runId);
  call.throwIfDeadlinePassed();
  const result = await retryStored(deps.store.db, call.namespace, runId, request.reason);
  if (!result) throw new RunNotFoundError(request.runId);
  if (result.outcome === "refused") throw new RunControlRefusedError(runId, result.why);
  deps.feed.publishLocal(runId);
  if (result.run.timeoutAt) deps.worker.noteTimeout(result.run.timeoutAt);
  // This process may claim it at once; others hear the NOTIFY committed with the change.
  deps.worker.wake();
  return result.run;
}
