/**
 * "Why is this run here?": ExplainRun's lines for the run, asked when the panel is opened and again when the
 * run's status changes while it is open (the explanation is a snapshot; Refresh asks once more).
 */
import { useEffect, useState } from "preact/hooks";
import { api, errorText, type RunStatus } from "../api.js";

export function WhyPanel({ runId, status }: { runId: string; status: RunStatus }) {
  const [open, setOpen] = useState(false);
  const [lines, setLines] = useState<string[] | undefined>();
  const [problem, setProblem] = useState("");
  const [asked, setAsked] = useState(0);

  useEffect(() => {
    if (!open) return;
    const abort = new AbortController();
    setProblem("");
    api
      .explainRun({ runId }, { signal: abort.signal })
      .then((answer) => setLines(answer.lines))
      .catch((error: unknown) => {
        if (!abort.signal.aborted) setProblem(errorText(error));
      });
    return () => abort.abort();
  }, [open, runId, status, asked]);

  return (
    <details class="why" onToggle={(event) => setOpen((event.currentTarget as HTMLDetailsElement).open)}>
      <summary>Why is this run here?</summary>
      {problem && <div class="error">{problem}</div>}
      {!problem && !lines && <p class="muted">Asking the server…</p>}
      {lines && (
        <pre class="why-lines">
          {lines.map((line) => (
            <div>{line}</div>
          ))}
        </pre>
      )}
      <button type="button" onClick={() => setAsked((n) => n + 1)}>
        Refresh
      </button>
    </details>
  );
}
