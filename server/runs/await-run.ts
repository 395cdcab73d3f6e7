/**
 * Awaiting a run's end (a long poll): answers with the run once it has ended
 * or when the wait is over, whichever comes first. A run executed here
 * announces its end without a round trip; only a run that may end elsewhere
 * needs the store's notices.
 */
import { type RunRow, terminalStatuses } from "../store/schema.js";
import { getRun, normalizeRunId } from "./get-run.js";
import { ChangeSignal } from "./run-feed.js";
import type { Call, RunsDeps } from "./runs-deps.js";

/** A waiter re-reads the store at least this often, covering notifications lost while a listener reconnects. */
export const watchRecheckMs = 1000;

export async function awaitRun(deps: RunsDeps, call: Call, request: { runId: string; timeoutMs: number }): Promise<RunRow> {
  const { feed, worker } = deps;
  const runId = normalizeRunId(request.runId);
  const deadline = Date.now() + request.timeoutMs;
  const changes = new ChangeSignal();
  let ended: RunRow | undefined;
  const unsubscribeLocal = feed.subscribeLocal(runId, (_id, row) => {
    if (row && terminalStatuses.includes(row.status)) ended = row;
    changes.notify();
  });
  let unsubscribeRemote: (() => void) | undefined;
  try {
    // Executing here (say, created a moment ago with eager_start): its row as claimed says it exists and whose it is.
    const local = worker.activeRun(runId);
    let run = local?.namespace === call.namespace ? local : await getRun(deps, call, runId);
    while (!terminalStatuses.includes(run.status) && !call.signal.aborted) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      if (!unsubscribeRemote && !(run.status === "running" && worker.isActive(runId))) {
        unsubscribeRemote = await feed.subscribe(runId, changes.notify);
        // It may have ended elsewhere before the registration counted: look once more.
        changes.notify();
      }
      await changes.next(Math.min(remaining, watchRecheckMs), call.signal);
      // Ended here: the final row came with the notice (same run, already checked to be the caller's).
      run = ended ?? (await getRun(deps, call, runId));
    }
    return run;
  } finally {
    unsubscribeLocal();
    unsubscribeRemote?.();
  }
}
