/** Retry a failed run: it is queued again and continues from where it failed (completed steps are not run again). */
import { RunStatus, api, errorText } from "../api.js";
import type { Action } from "../registry.js";

export const action: Action = {
  scope: "run",
  order: 6,
  available: ({ run }) => run !== undefined && run.status === RunStatus.FAILED,
  component: function Retry({ target, done }) {
    const run = target.run;
    if (!run) return null;
    return (
      <button
        name="retry"
        onClick={async () => {
          try {
            await api.retryRun({ runId: run.runId, reason: "retried from the console" });
            done("Retried: the run is queued again.");
          } catch (error) {
            done(<span class="error">{errorText(error)}</span>);
          }
        }}
      >
        Retry
      </button>
    );
  },
};
