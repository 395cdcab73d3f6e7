/**
 * Cancelling a run: a durable request the holder honours at its next durable
 * operation (sooner when the notice reaches it), and the same for the children
 * that end with it. A repeated cancel is answered like the first.
 */
import { RunAlreadyFinishedError, RunNotFoundError } from "../core/errors.js";
import { type CancelResult, cancelDescendants as cancelStoredDescendants, cancelRun as requestCancel } from "../store/runs/cancel.js";
import type { RunRow } from "../store/schema.js";
import { normalizeRunId } from "./get-run.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function cancelRun(deps: RunsDeps, call: Call, request: { runId: string; reason: string; detachChildren: boolean }): Promise<RunRow> {
  const runId = normalizeRunId(request.runId);
  const reason = request.reason || "cancelled by request";
  call.throwIfDeadlinePassed();
  // Marked while it commits: watchers here that hear the store's notice first wait for the telling below.
  const settle = deps.store.commits.begin([runId]);
  let result: CancelResult | undefined;
  try {
    result = await requestCancel(deps.store.db, call.namespace, runId, reason);
    if (result?.outcome === "cancelled") tellCancelled(deps, result);
  } finally {
    settle();
  }
  if (!result) throw new RunNotFoundError(request.runId);
  if (result.outcome === "finished") {
    // A repeated cancel (e.g. a retry after a lost reply) is answered like the first; other ends are final.
    if (result.run.status === "cancelled") return result.run;
    throw new RunAlreadyFinishedError(runId, result.run.status.toUpperCase());
  }
  if (result.outcome === "cancelled") deps.metrics?.runsEnded.inc({ workflow: result.run.workflowName, status: "cancelled" });
  // The request is durable; the notice only makes a running holder stop sooner than its next durable operation.
  if (result.outcome === "requested") await deps.worker.announceCancel(runId).catch(() => undefined);
  if (!request.detachChildren) await cancelDescendants(deps, call.namespace, runId, `parent run ${runId} was cancelled: ${reason}`);
  return result.run;
}

/** Children started without { detached: true } end with their parent, and theirs with them. */
async function cancelDescendants(deps: RunsDeps, namespace: string, runId: string, reason: string): Promise<void> {
  for (const result of await cancelStoredDescendants(deps.store.db, namespace, runId, reason)) {
    if (result.outcome === "cancelled") {
      deps.metrics?.runsEnded.inc({ workflow: result.run.workflowName, status: "cancelled" });
      tellCancelled(deps, result);
    }
    if (result.outcome === "requested") await deps.worker.announceCancel(result.run.id).catch(() => undefined);
  }
}

/** Watchers of the run in this process get its final row and entry as committed: they need not read them. */
function tellCancelled(deps: RunsDeps, { run, entry }: Extract<CancelResult, { outcome: "cancelled" }>): void {
  deps.feed.publishLocal(run.id, run, () => [entry]);
}
