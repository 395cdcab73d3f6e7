/** Resume a paused run: it becomes claimable again and goes on from its journal. */
import { RunStatus, api, errorText } from "../api.js";
import type { Action } from "../registry.js";

export const action: Action = {
  scope: "run",
  order: 8,
  available: ({ run }) => run !== undefined && run.status === RunStatus.PAUSED,
  component: function Resume({ target, done }) {
    const run = target.run;
    if (!run) return null;
    return (
      <button
        name="resume"
        onClick={async () => {
          try {
            await api.resumeRun({ runId: run.runId });
            done("Resumed.");
          } catch (error) {
            done(<span class="error">{errorText(error)}</span>);
          }
        }}
      >
        Resume
      </button>
    );
  },
};
