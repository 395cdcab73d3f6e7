/**
 * Awaiting a run's end (a long poll): answers with the run once it has ended
 * or when the wait is over, whichever comes first. The wait is a listener on
 * the process's one run feed (run-feed.ts): no row per waiter, no loop of its
 * own. It reads the run again only when told its status changed: a run
 * executed here announces its end with the final row (no read at all, and no
 * store notices needed), a run elsewhere through the store's notice (the
 * namespace registered once per process; a notice of a status that is not an
 * end costs nothing), and a lost notice through the feed's safety net, which
 * hands over the status it read for all waiters.
 */
import { type RunRow, terminalStatuses } from "../store/schema.js";
import { getRun, normalizeRunId } from "./get-run.js";
import { ChangeSignal, type RunChange } from "./run-feed.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function awaitRun(deps: RunsDeps, call: Call, request: { runId: string; timeoutMs: number }): Promise<RunRow> {
  const { feed, worker } = deps;
  const runId = normalizeRunId(request.runId);
  const deadline = Date.now() + request.timeoutMs;
  const changes = new ChangeSignal();
  let ended: RunRow | undefined;
  // Subscribed before the first read: a change committed after it is heard of, one committed before it is read.
  const unsubscribe = feed.subscribe(runId, (_id, change: RunChange) => {
    if (change.source === "local" && change.row) {
      // Changed here, with its row: an end answers at once; any other status (a pause) says it has not ended.
      if (!terminalStatuses.includes(change.row.status)) return;
      ended = change.row;
    }
    // A journal entry alone never ends a run (the final status commits with it and is announced too), nor does a
    // status that is not an end.
    if (change.source === "appended" || (change.source === "notice" && change.kind === "entry")) return;
    if (change.source === "notice" && change.status !== undefined && !terminalStatuses.includes(change.status)) return;
    // The safety net's snapshot: only an end (or a vanished run) is worth a read.
    if (change.source === "check" && change.status !== undefined && !terminalStatuses.includes(change.status)) return;
    changes.notify();
  });
  let stopHearing: (() => void) | undefined;
  try {
    // Executing here (say, created a moment ago with eager_start): its row as claimed says it exists and whose it is.
    const local = worker.activeRun(runId);
    let run = local?.namespace === call.namespace ? local : await getRun(deps, call, runId);
    while (!terminalStatuses.includes(run.status) && !call.signal.aborted) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      if (!stopHearing && !(run.status === "running" && worker.isActive(runId))) {
        // It may end elsewhere: the store must notify this process of the namespace's status changes (a no-op
        // once any waiter here asked). Then look once more, for a change made before that counted.
        stopHearing = await feed.hear(call.namespace, ["s"]);
        changes.notify();
      }
      await changes.next(remaining, call.signal);
      // The store's notice of an end committed here often lands before that commit's answer: its telling, with the
      // final row, follows at once (local-commits.ts).
      const committing = ended ? undefined : deps.store.commits.settled(runId);
      if (committing) await committing;
      // Ended here: the final row came with the notice (same run, already checked to be the caller's).
      if (ended) run = ended;
      else {
        deps.metrics?.waiterReads.inc({ waiter: "await_run" });
        run = await getRun(deps, call, runId);
      }
    }
    return run;
  } finally {
    unsubscribe();
    stopHearing?.();
  }
}
