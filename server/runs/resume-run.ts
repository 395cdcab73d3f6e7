/**
 * ResumeRun: a paused run is queued again, claimable at once; it then sees what arrived while it was paused.
 * A running run whose pause request its holder has not honoured yet keeps running (the request is withdrawn).
 */
import { RunControlRefusedError, RunNotFoundError } from "../core/errors.js";
import { resumeRun as resumeStored } from "../store/runs/pause.js";
import type { RunRow } from "../store/schema.js";
import { normalizeRunId } from "./get-run.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function resumeRun(deps: RunsDeps, call: Call, request: { runId: string; reason: string }): Promise<RunRow> {
  const runId = normalizeRunId(request.runId);
  call.throwIfDeadlinePassed();
  const result = await resumeStored(deps.store.db, call.namespace, runId, request.reason);
  if (!result) throw new RunNotFoundError(request.runId);
  // A running run whose pause was requested but not yet honoured: the request is withdrawn and it runs on.
  if (result.outcome === "requested") return result.run;
  if (result.outcome !== "changed") {
    throw new RunControlRefusedError(runId, `run ${runId} is not paused (${result.run.status.toUpperCase()}); only a paused run can be resumed`);
  }
  // Without its row: a claim changes a queued run without an entry, so a tail must read what is newest.
  deps.feed.publishLocal(runId);
  // This process may claim it at once; others hear the NOTIFY committed with the change.
  deps.worker.wake();
  return result.run;
}
