/** Cancel a run that has not ended (its children too, as CancelRun does by default). */
import { useState } from "preact/hooks";
import { RunStatus, api, errorText } from "../api.js";
import type { Action } from "../registry.js";

const ended = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);

export const action: Action = {
  scope: "run",
  order: 9,
  available: ({ run }) => run !== undefined && !ended.has(run.status),
  component: function Cancel({ target, done }) {
    const [open, setOpen] = useState(false);
    const [reason, setReason] = useState("cancelled from the console");
    const run = target.run;
    if (!run) return null;
    if (!open) {
      return (
        <button class="danger" name="cancel" onClick={() => setOpen(true)}>
          Cancel run…
        </button>
      );
    }
    return (
      <form
        class="action inline"
        onSubmit={async (event) => {
          event.preventDefault();
          try {
            await api.cancelRun({ runId: run.runId, reason });
            done("Cancellation requested.");
            setOpen(false);
          } catch (error) {
            done(<span class="error">{errorText(error)}</span>);
          }
        }}
      >
        <label class="field">
          <span class="field-name">reason</span>
          <input name="reason" value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
        </label>
        <button type="submit" class="danger" name="confirm-cancel">
          Cancel this run
        </button>
        <button type="button" class="link" onClick={() => setOpen(false)}>
          keep it
        </button>
      </form>
    );
  },
};
