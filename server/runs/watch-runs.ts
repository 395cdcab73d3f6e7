/**
 * Watching many runs: the newest that match, then each matching run again whenever it changes. The stream listens
 * to its own namespace on the process's run feed only: another tenant's changes never reach it, so they cost it
 * no read (reads are counted in cairn_waiter_reads_total{waiter="watch_runs"}).
 */
import { getRuns, listRuns } from "../store/runs/read.js";
import type { RunRow, RunStatus } from "../store/schema.js";
import { ChangeSignal } from "./run-feed.js";
import type { Call, RunsDeps } from "./runs-deps.js";

const initialRuns = 500;
/** A stream with nothing new sleeps until a change in its namespace; this only bounds one sleep. */
const idleWakeMs = 60_000;

export async function* watchRuns(deps: RunsDeps, call: Call, request: { workflowName?: string | undefined; statuses: RunStatus[] }): AsyncGenerator<RunRow> {
  const { workflowName, statuses } = request;
  const matches = (row: RunRow) => (!workflowName || row.workflowName === workflowName) && (statuses.length === 0 || statuses.includes(row.status));
  const changed = new Set<string>();
  const changes = new ChangeSignal();
  // Before the first read: a change committed after it is heard of.
  const unsubscribe = deps.feed.subscribeNamespace(call.namespace, (runId, kind) => {
    // A journal entry alone leaves the run's row as it was (notices of both kinds come when anyone here watches entries).
    if (kind === "entry") return;
    changed.add(runId);
    changes.notify();
  });
  let stopHearing: (() => void) | undefined;
  try {
    stopHearing = await deps.feed.hear(call.namespace, ["s"]);
    deps.metrics?.waiterReads.inc({ waiter: "watch_runs" });
    const current = await listRuns(deps.store.db, call.namespace, { workflowName: workflowName || undefined, statuses }, initialRuns);
    for (const row of current.slice(0, initialRuns).reverse()) yield row;
    while (!call.signal.aborted) {
      await changes.next(idleWakeMs, call.signal);
      if (changed.size === 0) continue;
      const ids = [...changed];
      changed.clear();
      deps.metrics?.waiterReads.inc({ waiter: "watch_runs" });
      for (const row of await getRuns(deps.store.db, call.namespace, ids)) if (matches(row)) yield row;
    }
    call.throwIfDeadlinePassed();
  } finally {
    unsubscribe();
    stopHearing?.();
  }
}
