/**
 * PauseRun: a queued or waiting run stops where it is until ResumeRun (an event or a due timer waits for it).
 * Pausing a paused run answers it unchanged (a retry after a lost reply). A running run is refused for now:
 * pause it once it waits (its holder would have to stop at its next durable operation, as for a cancel).
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
    const status = result.run.status.toUpperCase();
    throw new RunControlRefusedError(
      runId,
      result.run.status === "running"
        ? `run ${runId} is RUNNING; only queued or waiting runs can be paused (pause it once it waits, or cancel it)`
        : `run ${runId} already ended (${status}); only queued or waiting runs can be paused`,
    );
  }
  if (result.outcome === "changed") deps.feed.publishLocal(runId);
  return result.run;
}
