/**
 * PauseRun: a queued or waiting run stops where it is until ResumeRun (an event or a due timer waits for it);
 * a running run stops at its next durable operation (its holder's write is refused, as for a cancel) and is
 * paused then. Pausing a paused run answers it unchanged (a retry after a lost reply).
 */
import { RunControlRefusedError, RunNotFoundError } from "../core/errors.js";
import { pauseRun as pauseStored } from "../store/runs/pause.js";
import type { RunRow } from "../store/schema.js";
import { normalizeRunId } from "./get-run.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function pauseRun(deps: RunsDeps, call: Call, request: { runId: string; reason: string }): Promise<RunRow> {
  const runId = normalizeRunId(request.runId);
  call.throwIfDeadlinePassed();
  const result = await pauseStored(deps.store.db, call.namespace, runId, request.reason);
  if (!result) throw new RunNotFoundError(request.runId);
  if (result.outcome === "refused") {
    throw new RunControlRefusedError(runId, `run ${runId} already ended (${result.run.status.toUpperCase()}); only queued, running or waiting runs can be paused`);
  }
  if (result.outcome === "changed") deps.feed.publishLocal(runId);
  return result.run;
}
