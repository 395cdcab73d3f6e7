/**
 * What a batch does to each run it selected, one entry per operation. Each applies the same store function as
 * the single-run RPC (CancelRun, PauseRun, ResumeRun, RetryRun) inside the chunk's transaction, so the run's change and
 * its batch item's outcome commit together; notices to watchers and workers go out after the commit.
 * "Already in the wanted state" is `skipped`, a refusal is `failed` with the run's message.
 */
import type { ApplyToRun, BatchApply, ItemResult } from "../store/batches/chunk.js";
import { type CancelResult, cancelIdleRuns, cancellableChildren, cancelRun as cancelStored } from "../store/runs/cancel.js";
import { pauseRun as pauseStored, resumeRun as resumeStored } from "../store/runs/pause.js";
import { retryRun as retryStored } from "../store/runs/retry.js";
import type { Db } from "../store/database.js";
import type { BatchOperation, BatchRow } from "../store/schema.js";
import type { RunsDeps } from "./runs-deps.js";

type Effects = Pick<RunsDeps, "worker" | "feed" | "metrics">;
type Batch = Pick<BatchRow, "id" | "namespace" | "reason">;
type Operation = (deps: Effects, batch: Batch) => ApplyToRun;

const notFound: ItemResult = { outcome: "failed", error: "run not found (deleted since the batch started?)" };

function reasonOf(batch: Pick<BatchRow, "id" | "reason">, verb: string): string {
  return batch.reason || `${verb} by batch ${batch.id}`;
}

const cancel: Operation = (deps, batch) => async (tx, runId) => {
  const reason = reasonOf(batch, "cancelled");
  const result = await cancelStored(tx, batch.namespace, runId, reason);
  if (!result) return notFound;
  if (result.outcome === "finished") {
    if (result.run.status === "cancelled") return { outcome: "skipped" };
    return { outcome: "failed", error: `run already ended (${result.run.status.toUpperCase()})` };
  }
  // Children that end with their parent, as CancelRun does, in the same transaction.
  const notices = [noticeOfCancel(deps, result)];
  await cancelDescendants(deps, tx, batch.namespace, runId, `parent run ${runId} was cancelled: ${reason}`, notices);
  return { outcome: "done", afterCommit: async () => void (await Promise.all(notices.map((notice) => notice()))) };
};

/** After the commit: a running run's holder is told to stop; a cancelled run's watchers here get its row and entry. */
function noticeOfCancel(deps: Effects, result: Exclude<CancelResult, { outcome: "finished" }>): () => Promise<void> {
  return async () => {
    if (result.outcome === "requested") return deps.worker.announceCancel(result.run.id).catch(() => undefined);
    deps.metrics?.runsEnded.inc({ workflow: result.run.workflowName, status: "cancelled" });
    const { run, entry } = result;
    deps.feed.publishLocal(run.id, run, () => [entry]);
  };
}

async function cancelDescendants(deps: Effects, tx: Db, namespace: string, runId: string, reason: string, notices: (() => Promise<void>)[]): Promise<void> {
  for (const childId of await cancellableChildren(tx, runId)) {
    const result = await cancelStored(tx, namespace, childId, reason);
    if (result && result.outcome !== "finished") notices.push(noticeOfCancel(deps, result));
    await cancelDescendants(deps, tx, namespace, childId, reason, notices);
  }
}

const pause: Operation = (deps, batch) => async (tx, runId) => {
  const result = await pauseStored(tx, batch.namespace, runId, batch.reason);
  if (!result) return notFound;
  if (result.outcome === "unchanged") return { outcome: "skipped" };
  if (result.outcome === "refused") return { outcome: "failed", error: `run already ended (${result.run.status.toUpperCase()}); only queued, running or waiting runs can be paused` };
  if (result.outcome === "requested") return { outcome: "done", afterCommit: () => deps.feed.publishLocal(runId) };
  // A paused run changes next by an entry of its own (a resume, a cancel): the row told here cannot be older than
  // what the tail reads meanwhile without that entry showing it (run-tail.ts, take).
  const { run, entry } = result;
  return { outcome: "done", afterCommit: () => deps.feed.publishLocal(runId, run, () => [entry]) };
};

const resume: Operation = (deps, batch) => async (tx, runId) => {
  const result = await resumeStored(tx, batch.namespace, runId, batch.reason);
  if (!result) return notFound;
  // A running run whose pause request was withdrawn before its holder honoured it: it runs on.
  if (result.outcome === "requested") return { outcome: "done" };
  if (result.outcome !== "changed") return { outcome: "failed", error: `run is not paused (${result.run.status.toUpperCase()}); only a paused run can be resumed` };
  return {
    outcome: "done",
    afterCommit: () => {
      deps.feed.publishLocal(runId);
      // Others hear the NOTIFY committed with the chunk; this process may claim it at once.
      deps.worker.wake();
    },
  };
};

const retry: Operation = (deps, batch) => async (tx, runId) => {
  // RetryRun's store function: within the chunk's transaction it runs as a savepoint.
  const result = await retryStored(tx, batch.namespace, runId, batch.reason);
  if (!result) return notFound;
  if (result.outcome === "refused") return { outcome: "failed", error: result.why };
  return {
    outcome: "done",
    afterCommit: () => {
      deps.feed.publishLocal(runId);
      if (result.run.timeoutAt) deps.worker.noteTimeout(result.run.timeoutAt);
      deps.worker.wake();
    },
  };
};

/**
 * Cancel's fast path: runs that need only their own row changed (no parent, no children, no open agent turns) are
 * cancelled in two statements per chunk (`cancelIdleRuns`, the same row values and entry as `cancelRun`); the
 * others go through `cancel` one by one.
 */
const cancelMany = (deps: Effects, batch: Batch) => async (tx: Db, runIds: readonly string[]) => {
  const cancelled = await cancelIdleRuns(tx, batch.namespace, runIds, reasonOf(batch, "cancelled"));
  return new Map<string, ItemResult>(
    cancelled.map(({ run, entry }) => [run.id, { outcome: "done", afterCommit: noticeOfCancel(deps, { outcome: "cancelled", run, entry }) }]),
  );
};

export const batchOperations: Record<BatchOperation, Operation> = { cancel, pause, resume, retry };
const fastPaths: Partial<Record<BatchOperation, (deps: Effects, batch: Batch) => NonNullable<BatchApply["many"]>>> = { cancel: cancelMany };

/** The operation of a stored batch, bound to the runs service's notices; undefined for one this server does not know. */
export function batchOperationFor(deps: Effects): (batch: BatchRow) => BatchApply | undefined {
  return (batch) => {
    const operation = (batchOperations as Partial<Record<string, Operation>>)[batch.operation];
    if (!operation) return undefined;
    const many = fastPaths[batch.operation];
    return { one: operation(deps, batch), ...(many ? { many: many(deps, batch) } : {}) };
  };
}
