/** The runs this run started, and theirs, as a tree (ListRuns by parent, a level at a time). */
import { useEffect, useState } from "preact/hooks";
import { type Run, api } from "../api.js";
import { shortId } from "../format.js";
import { StatusBadge } from "./status.js";

export function ChildTree({ runId, version }: { runId: string; version: number }) {
  const children = useChildren(runId, version);
  if (!children || children.length === 0) return null;
  return (
    <>
      <h2>Children</h2>
      <Level runs={children} depth={0} />
    </>
  );
}

function useChildren(runId: string, version: number): Run[] | undefined {
  const [children, setChildren] = useState<Run[]>();
  useEffect(() => {
    const abort = new AbortController();
    api.listRuns({ parentRunId: runId, pageSize: 100 }, { signal: abort.signal }).then(
      (response) => setChildren(response.runs),
      () => undefined,
    );
    return () => abort.abort();
  }, [runId, version]);
  return children;
}

function Level({ runs, depth }: { runs: Run[]; depth: number }) {
  return (
    <ul class="tree">
      {runs.map((run) => (
        <Child run={run} depth={depth} key={run.runId} />
      ))}
    </ul>
  );
}

function Child({ run, depth }: { run: Run; depth: number }) {
  const grandchildren = useChildren(run.runId, depth < 4 ? run.status : -1);
  return (
    <li>
      <a href={`/runs/${run.runId}`}>
        {run.workflowName} <span class="mono">{shortId(run.runId)}</span>
      </a>{" "}
      <StatusBadge status={run.status} />
      {depth < 4 && grandchildren && grandchildren.length > 0 && <Level runs={grandchildren} depth={depth + 1} />}
    </li>
  );
}
