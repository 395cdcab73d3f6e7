/** Start a run of a workflow from a form built from its input schema; opens the new run's page. */
import { useState } from "preact/hooks";
import { api, errorText, value } from "../api.js";
import { SchemaForm } from "../components/schema-form.js";
import type { Action } from "../registry.js";
import { navigate } from "../router.js";

export const action: Action = {
  scope: "workflow",
  order: 1,
  component: function StartRun({ target }) {
    const [busy, setBusy] = useState(false);
    const [problem, setProblem] = useState("");
    const workflow = target.workflow;
    if (!workflow) return null;
    return (
      <div class="action start-run">
        <h3>Start a run</h3>
        <SchemaForm
          schemaText={workflow.inputJsonSchema}
          busy={busy}
          onSubmit={async (input) => {
            setBusy(true);
            setProblem("");
            try {
              const { run } = await api.createRun({ workflowName: workflow.name, input: value(input), metadata: { source: "console" } });
              if (run) navigate(`/runs/${run.runId}`);
            } catch (error) {
              setProblem(errorText(error));
            } finally {
              setBusy(false);
            }
          }}
        />
        {problem && <div class="error">{problem}</div>}
      </div>
    );
  },
};
