/** Pause a run that has not ended: a queued or waiting run is held at once, a running one at its next durable operation. */
import { RunStatus, api, errorText } from "../api.js";
import type { Action } from "../registry.js";

const pausable = new Set([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING]);

export const action: Action = {
  scope: "run",
  order: 7,
  available: ({ run }) => run !== undefined && pausable.has(run.status),
  component: function Pause({ target, done }) {
    const run = target.run;
    if (!run) return null;
    return (
      <button
        name="pause"
        onClick={async () => {
          try {
            await api.pauseRun({ runId: run.runId, reason: "paused from the console" });
            done("Pause requested.");
          } catch (error) {
            done(<span class="error">{errorText(error)}</span>);
          }
        }}
      >
        Pause
      </button>
    );
  },
};
