/**
 * One run: what it is waiting on, its timeline, input/output/error, child runs and full history, kept
 * current by WatchRun (the run on every status change, then each new history entry in order).
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { type HistoryEntry, type Run, RunStatus, api, date, errorText, isAbort, json } from "../api.js";
import { ChildTree } from "../components/child-tree.js";
import { FailureView } from "../components/failure.js";
import { History } from "../components/history.js";
import { JsonView } from "../components/json-view.js";
import { StatusBadge } from "../components/status.js";
import { Timeline } from "../components/timeline.js";
import { WaitingOnText } from "../components/waiting-on.js";
import { WhyPanel } from "../components/why-panel.js";
import { duration, time } from "../format.js";
import { type Page, actions } from "../registry.js";

const ended = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);

function RunPage({ params }: { params: string[] }) {
  const runId = params[0] ?? "";
  const [run, setRun] = useState<Run | undefined>();
  const [entries, setEntries] = useState<HistoryEntry[]>([]);
  const [problem, setProblem] = useState("");
  const [notice, setNotice] = useState<preact.ComponentChildren>(null);
  const [now, setNow] = useState(Date.now());
  const [live, setLive] = useState(false);
  /** Follows the run again after its stream ended: an action (RetryRun) may have brought it back. */
  const rewatch = useRef<() => void>(() => undefined);

  useEffect(() => {
    setRun(undefined);
    setEntries([]);
    setProblem("");
    const abort = new AbortController();
    let after = 0n;
    (async () => {
      while (!abort.signal.aborted) {
        try {
          setLive(true);
          for await (const update of api.watchRun({ runId, afterSequence: after }, { signal: abort.signal })) {
            if (update.update.case === "run") setRun(update.update.value);
            else if (update.update.case === "entry") {
              const entry = update.update.value;
              after = entry.sequence;
              setEntries((current) => [...current, entry]);
            }
          }
          // The stream ends when the run has ended and its history is complete. An action may bring the run
          // back (a retry): then follow it again from the last entry seen.
          setLive(false);
          await new Promise<void>((resolve) => {
            rewatch.current = resolve;
            abort.signal.addEventListener("abort", () => resolve(), { once: true });
          });
        } catch (error) {
          if (abort.signal.aborted || isAbort(error)) return;
          setLive(false);
          setProblem(errorText(error));
          await new Promise((resolve) => setTimeout(resolve, 1500));
          setProblem("");
        }
      }
    })();
    return () => abort.abort();
  }, [runId]);

  // A hold is not in the watch's run updates (its place in line moves as other runs leave, with no change of this
  // run): read it with GetRun while the run could be held, at once and every 2 s.
  const [hold, setHold] = useState<Run["heldBy"]>();
  const holdable = run?.status === RunStatus.QUEUED || run?.status === RunStatus.WAITING;
  useEffect(() => {
    setHold(undefined);
    if (!holdable) return;
    const abort = new AbortController();
    const read = () =>
      api.getRun({ runId }, { signal: abort.signal }).then(
        (response) => setHold(response.run?.heldBy),
        () => undefined,
      );
    void read();
    const timer = setInterval(read, 2000);
    return () => {
      clearInterval(timer);
      abort.abort();
    };
  }, [runId, holdable]);

  const finished = run ? ended.has(run.status) : false;
  useEffect(() => {
    if (finished) return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [finished]);

  if (!run) return problem ? <div class="error">{problem}</div> : <p class="muted">Loading run {runId}…</p>;
  const created = date(run.createdAt);
  const completed = date(run.completedAt);
  const output = json(run.output);
  const target = { run };
  const available = actions.filter((a) => a.scope === "run" && (a.available?.(target) ?? true));

  return (
    <section class="run-page" data-status={RunStatus[run.status]?.toLowerCase()}>
      <div class="page-head">
        <h1>
          {run.workflowName} <StatusBadge status={run.status} />
        </h1>
        <span class={`live ${live ? "on" : ""}`}>{live ? "live" : finished ? "ended" : "reconnecting"}</span>
      </div>
      <dl class="facts">
        <dt>Run</dt>
        <dd class="mono">{run.runId}</dd>
        {run.parentRunId && (
          <>
            <dt>Parent</dt>
            <dd class="mono">
              <a href={`/runs/${run.parentRunId}`}>{run.parentRunId}</a>
            </dd>
          </>
        )}
        {run.forkedFromRunId && (
          <>
            <dt>Forked from</dt>
            <dd class="mono">
              <a href={`/runs/${run.forkedFromRunId}`}>{run.forkedFromRunId}</a>
            </dd>
          </>
        )}
        <dt>Created</dt>
        <dd>{time(created)}</dd>
        <dt>{completed ? "Took" : "Running for"}</dt>
        <dd>{created ? duration((completed?.getTime() ?? now) - created.getTime()) : ""}</dd>
        <dt>Activations</dt>
        <dd>{run.activationCount}</dd>
        {run.timeoutAt && (
          <>
            <dt>Times out</dt>
            <dd>{time(date(run.timeoutAt))}</dd>
          </>
        )}
        {run.scheduleId && (
          <>
            <dt>Schedule</dt>
            <dd class="mono">
              <a href={`/?schedule=${encodeURIComponent(run.scheduleId)}`}>{run.scheduleId}</a>
            </dd>
          </>
        )}
        {run.priority !== 0 && (
          <>
            <dt>Priority</dt>
            <dd>{run.priority}</dd>
          </>
        )}
        {Object.keys(run.metadata).length > 0 && (
          <>
            <dt>Metadata</dt>
            <dd>
              {Object.entries(run.metadata).map(([k, v]) => (
                <span class="tag">
                  {k}={v}
                </span>
              ))}
            </dd>
          </>
        )}
      </dl>
      {holdable && hold && (
        <div class="callout held-by">
          <span class="callout-title">Held by flow control</span> {holdText(hold)}
        </div>
      )}
      {run.waitingOn && (
        <div class="callout waiting-on">
          <span class="callout-title">Waiting on</span> <WaitingOnText waiting={run.waitingOn} now={now} />
        </div>
      )}
      {(available.length > 0 || notice) && (
        <div class="actions">
          {available.map((a) => (
            <a.component
              target={target}
              done={(message) => {
                setNotice(message);
                rewatch.current();
              }}
            />
          ))}
          {notice && <div class="notice">{notice}</div>}
        </div>
      )}
      <WhyPanel runId={run.runId} status={run.status} />
      <h2>Timeline</h2>
      <Timeline run={run} entries={entries} now={now} />
      <div class="columns">
        <div>
          <h2>Input</h2>
          <JsonView value={json(run.input)} />
        </div>
        <div>
          <h2>{run.error ? (run.status === RunStatus.CANCELLED ? "Cancelled" : "Error") : "Output"}</h2>
          {run.error ? <FailureView failure={run.error} /> : <JsonView value={output} />}
        </div>
      </div>
      <ChildTree runId={run.runId} version={entries.length} />
      <h2>
        History <span class="muted">{entries.length} entries</span>
      </h2>
      <History entries={entries} />
    </section>
  );
}

export const page: Page = {
  path: /^\/runs\/([0-9a-fA-F-]{36})\/?$/,
  component: RunPage,
};

/** One line for a queued run that flow control holds back (the gate, its key and the run's place in line). */
function holdText(hold: NonNullable<Run["heldBy"]>): string {
  const key = hold.key ? ` "${hold.key}"` : "";
  const place = hold.position > 0n ? `, number ${hold.position} in line` : "";
  switch (hold.gate) {
    case "concurrency":
      return `its concurrency key${key} has as many runs executing as its limit${place}`;
    case "namespace":
      return `the namespace has CAIRN_NAMESPACE_MAX_RUNNING runs executing${place}`;
    case "rate":
      return `its rate key${key} started its limit within the period; due again ${time(date(hold.availableAt))}`;
    default:
      return `${hold.gate}${key}${place}`;
  }
}
