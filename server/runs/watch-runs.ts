/** Watching many runs: the newest that match, then each matching run again whenever it changes. */
import { getRuns, listRuns } from "../store/runs/read.js";
import type { RunRow, RunStatus } from "../store/schema.js";
import { watchRecheckMs } from "./await-run.js";
import { ChangeSignal } from "./run-feed.js";
import type { Call, RunsDeps } from "./runs-deps.js";

const initialRuns = 500;

export async function* watchRuns(deps: RunsDeps, call: Call, request: { workflowName?: string | undefined; statuses: RunStatus[] }): AsyncGenerator<RunRow> {
  const { workflowName, statuses } = request;
  const matches = (row: RunRow) => (!workflowName || row.workflowName === workflowName) && (statuses.length === 0 || statuses.includes(row.status));
  const changed = new Set<string>();
  const changes = new ChangeSignal();
  const unsubscribe = await deps.feed.subscribe("*", (runId) => {
    changed.add(runId);
    changes.notify();
  });
  try {
    const current = await listRuns(deps.store.db, call.namespace, { workflowName: workflowName || undefined, statuses }, initialRuns);
    for (const row of current.slice(0, initialRuns).reverse()) yield row;
    while (!call.signal.aborted) {
      await changes.next(watchRecheckMs * 30, call.signal);
      const ids = [...changed];
      changed.clear();
      for (const row of await getRuns(deps.store.db, call.namespace, ids)) if (matches(row)) yield row;
    }
    call.throwIfDeadlinePassed();
  } finally {
    unsubscribe();
  }
}
