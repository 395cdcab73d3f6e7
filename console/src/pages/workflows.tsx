/** The workflows this server runs, each with its input schema and the workflow actions (start a run). */
import { useEffect, useState } from "preact/hooks";
import { type Workflow, api, errorText } from "../api.js";
import { JsonView } from "../components/json-view.js";
import { type Page, actions } from "../registry.js";

function WorkflowsPage() {
  const [workflows, setWorkflows] = useState<Workflow[]>();
  const [problem, setProblem] = useState("");
  const [notice, setNotice] = useState<preact.ComponentChildren>(null);
  useEffect(() => {
    api.listWorkflows({}).then(
      (r) => setWorkflows(r.workflows),
      (e: unknown) => setProblem(errorText(e)),
    );
  }, []);
  if (problem) return <div class="error">{problem}</div>;
  if (!workflows) return <p class="muted">Loading…</p>;
  return (
    <section class="workflows-page">
      <div class="page-head">
        <h1>Workflows</h1>
      </div>
      {notice && <div class="notice">{notice}</div>}
      {workflows.length === 0 && <p class="muted">No workflows are loaded: put files in WORKFLOW_DIRS.</p>}
      {workflows.map((workflow) => {
        const schema = workflow.inputJsonSchema ? (JSON.parse(workflow.inputJsonSchema) as import("@bufbuild/protobuf").JsonValue) : undefined;
        const target = { workflow };
        return (
          <article class="card workflow" data-workflow={workflow.name} key={workflow.name}>
            <header>
              <h2>{workflow.name}</h2>
              <a href={`/?workflow=${encodeURIComponent(workflow.name)}`}>runs →</a>
            </header>
            <p class="muted mono">{workflow.sourceFile}</p>
            <div class="columns">
              <div>
                <h3>Input schema {workflow.inputSchemaVendor && <span class="tag">{workflow.inputSchemaVendor}</span>}</h3>
                {schema !== undefined ? (
                  <JsonView value={schema} open={2} />
                ) : (
                  <p class="muted">{workflow.hasInputSchema ? "Its schema library cannot describe itself as JSON Schema." : "No input schema: any JSON object."}</p>
                )}
              </div>
              <div>
                {actions
                  .filter((a) => a.scope === "workflow" && (a.available?.(target) ?? true))
                  .map((a) => (
                    <a.component target={target} done={setNotice} />
                  ))}
              </div>
            </div>
          </article>
        );
      })}
    </section>
  );
}

export const page: Page = {
  path: /^\/workflows\/?$/,
  nav: { label: "Workflows", href: "/workflows", order: 2 },
  component: WorkflowsPage,
};
