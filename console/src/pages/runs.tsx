/**
 * Runs, newest first: filters (workflow, status, waiting kind, metadata, creation time) live in the URL
 * so a view can be shared; pages by ListRuns' keyset token; the first page stays current through
 * WatchRuns (new runs appear at the top, listed runs change status in place).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useLayoutEffect, useState } from "preact/hooks";
import { ListRunsRequestSchema } from "../../../sdk/gen/cairn/v1/workflow_pb.js";
import { type Run, RunStatus, WaitKind, type Workflow, api, date, errorText, isAbort } from "../api.js";
import { StatusBadge } from "../components/status.js";
import { WaitingOnText } from "../components/waiting-on.js";
import { ago, duration, shortId, statusName, time, waitKindName } from "../format.js";
import type { Page } from "../registry.js";
import { navigate } from "../router.js";

const pageSize = 50;
const statuses = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];
const waitKinds = [WaitKind.TIMER, WaitKind.EVENT, WaitKind.CHILD, WaitKind.AGENT, WaitKind.RETRY];

interface Filter {
  workflow: string;
  statuses: RunStatus[];
  waiting: WaitKind;
  metadata: Record<string, string>;
  after: string;
  before: string;
  /** Only runs this schedule created (the run page links here). */
  schedule: string;
}

function filterOf(query: URLSearchParams): Filter {
  const metadata: Record<string, string> = {};
  for (const pair of query.getAll("meta")) {
    const at = pair.indexOf("=");
    if (at > 0) metadata[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return {
    workflow: query.get("workflow") ?? "",
    statuses: (query.get("status") ?? "")
      .split(",")
      .map((name) => RunStatus[name.toUpperCase() as keyof typeof RunStatus])
      .filter((s): s is RunStatus => s !== undefined && s !== RunStatus.UNSPECIFIED),
    waiting: WaitKind[(query.get("waiting") ?? "").toUpperCase() as keyof typeof WaitKind] ?? WaitKind.UNSPECIFIED,
    metadata,
    after: query.get("after") ?? "",
    before: query.get("before") ?? "",
    schedule: query.get("schedule") ?? "",
  };
}

function queryOf(filter: Filter): string {
  const query = new URLSearchParams();
  if (filter.workflow) query.set("workflow", filter.workflow);
  if (filter.statuses.length) query.set("status", filter.statuses.map(statusName).join(","));
  if (filter.waiting) query.set("waiting", waitKindName(filter.waiting));
  for (const [k, v] of Object.entries(filter.metadata)) query.append("meta", `${k}=${v}`);
  if (filter.after) query.set("after", filter.after);
  if (filter.before) query.set("before", filter.before);
  if (filter.schedule) query.set("schedule", filter.schedule);
  const text = query.toString();
  return text ? `/?${text}` : "/";
}

/** The filters WatchRuns cannot apply server-side, applied to each live update. */
function matches(run: Run, filter: Filter): boolean {
  const created = date(run.createdAt)?.getTime() ?? 0;
  if (filter.after && created < new Date(filter.after).getTime()) return false;
  if (filter.before && created >= new Date(filter.before).getTime()) return false;
  if (filter.schedule && run.scheduleId !== filter.schedule) return false;
  if (filter.waiting && (run.status !== RunStatus.WAITING || run.waitingOn?.target.case !== waitKindName(filter.waiting))) return false;
  return Object.entries(filter.metadata).every(([k, v]) => run.metadata[k] === v);
}

function newestFirst(a: Run, b: Run): number {
  const byTime = (date(b.createdAt)?.getTime() ?? 0) - (date(a.createdAt)?.getTime() ?? 0);
  return byTime !== 0 ? byTime : b.runId.localeCompare(a.runId);
}

/** The page with live updates applied: listed runs change in place, new matching runs come in at their place. */
function merge(current: Run[], updates: Run[], filter: Filter): Run[] {
  let runs = current;
  for (const run of updates) {
    const index = runs.findIndex((r) => r.runId === run.runId);
    if (index >= 0) {
      runs = runs.map((r, i) => (i === index ? run : r));
      continue;
    }
    if (!matches(run, filter)) continue;
    const oldest = runs.at(-1);
    // A run older than the whole page, while more pages exist, belongs to a later page.
    if (oldest && runs.length >= pageSize && newestFirst(run, oldest) > 0) continue;
    runs = [...runs, run].sort(newestFirst).slice(0, pageSize);
  }
  return runs;
}

function RunsPage({ query }: { query: URLSearchParams }) {
  const filter = filterOf(query);
  const filterKey = queryOf(filter);
  const [workflows, setWorkflows] = useState<Workflow[]>([]);
  const [tokens, setTokens] = useState<string[]>([""]);
  const [runs, setRuns] = useState<Run[] | undefined>(undefined);
  const [next, setNext] = useState("");
  const [problem, setProblem] = useState("");
  const [live, setLive] = useState(false);
  const [now, setNow] = useState(Date.now());
  const token = tokens.at(-1) ?? "";

  useEffect(() => {
    void api.listWorkflows({}).then((r) => setWorkflows(r.workflows), () => undefined);
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => setTokens([""]), [filterKey]);

  useEffect(() => {
    const abort = new AbortController();
    const request = create(ListRunsRequestSchema, {
      workflowName: filter.workflow,
      statuses: filter.statuses,
      waitingFor: filter.waiting,
      metadata: filter.metadata,
      scheduleId: filter.schedule,
      pageSize,
      pageToken: token,
      ...(filter.after ? { createdAfter: timestampFromDate(new Date(filter.after)) } : {}),
      ...(filter.before ? { createdBefore: timestampFromDate(new Date(filter.before)) } : {}),
    });
    setProblem("");
    api.listRuns(request, { signal: abort.signal }).then(
      (response) => {
        setRuns(response.runs);
        setNext(response.nextPageToken);
        if (token === "") void watch(abort.signal);
      },
      (error: unknown) => {
        if (!isAbort(error)) setProblem(errorText(error));
      },
    );
    // Only the first page moves: later pages are a fixed slice of the past.
    async function watch(signal: AbortSignal) {
      while (!signal.aborted) {
        try {
          setLive(true);
          // Updates are applied in batches, at most every 100 ms: the stream opens with a snapshot of recent runs,
          // and a busy server sends many changes a second; one render per batch, not per update.
          let pending: Run[] = [];
          let flush: ReturnType<typeof setTimeout> | undefined;
          const apply = () => {
            const batch = pending;
            pending = [];
            flush = undefined;
            setRuns((current) => (current ? merge(current, batch, filter) : current));
          };
          signal.addEventListener("abort", () => clearTimeout(flush));
          for await (const { run } of api.watchRuns({ workflowName: filter.workflow, statuses: filter.statuses }, { signal })) {
            if (!run) continue;
            pending.push(run);
            flush ??= setTimeout(apply, 100);
          }
        } catch (error) {
          if (signal.aborted || isAbort(error)) return;
        }
        setLive(false);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    return () => abort.abort();
  }, [filterKey, token]);

  // For the browser test's clock (test/console.test.ts): the page appeared, and its first rows are in the document.
  if (performance.getEntriesByName("cairn:runs-page").length === 0) performance.mark("cairn:runs-page");
  useLayoutEffect(() => {
    if (runs && performance.getEntriesByName("cairn:runs-listed").length === 0) performance.mark("cairn:runs-listed");
  }, [runs]);

  const update = (change: Partial<Filter>) => navigate(queryOf({ ...filter, ...change }), true);

  return (
    <section class="runs-page">
      <div class="page-head">
        <h1>Runs</h1>
        <span class={`live ${live && token === "" ? "on" : ""}`} title="updates through WatchRuns">
          {live && token === "" ? "live" : "paused"}
        </span>
      </div>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Workflow
          <select name="workflow" value={filter.workflow} onChange={(e) => update({ workflow: e.currentTarget.value })}>
            <option value="">all</option>
            {workflows.map((w) => (
              <option value={w.name}>{w.name}</option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select name="status" value={filter.statuses.length === 1 ? statusName(filter.statuses[0] ?? 0) : ""} onChange={(e) => update({ statuses: e.currentTarget.value ? [RunStatus[e.currentTarget.value.toUpperCase() as keyof typeof RunStatus]] : [] })}>
            <option value="">any</option>
            {statuses.map((s) => (
              <option value={statusName(s)}>{statusName(s)}</option>
            ))}
          </select>
        </label>
        <label>
          Waiting on
          <select name="waiting" value={filter.waiting ? waitKindName(filter.waiting) : ""} onChange={(e) => update({ waiting: WaitKind[e.currentTarget.value.toUpperCase() as keyof typeof WaitKind] ?? WaitKind.UNSPECIFIED })}>
            <option value="">anything</option>
            {waitKinds.map((k) => (
              <option value={waitKindName(k)}>{waitKindName(k)}</option>
            ))}
          </select>
        </label>
        {filter.schedule && (
          <span class="tag schedule-filter">
            schedule {filter.schedule}{" "}
            <button type="button" class="link" title="Show runs of every schedule" onClick={() => update({ schedule: "" })}>
              ×
            </button>
          </span>
        )}
        <label>
          Metadata
          <input
            name="metadata"
            placeholder="key=value, …"
            value={Object.entries(filter.metadata).map(([k, v]) => `${k}=${v}`).join(", ")}
            onChange={(e) =>
              update({
                metadata: Object.fromEntries(
                  e.currentTarget.value
                    .split(",")
                    .map((pair) => pair.trim().split("="))
                    .filter((pair): pair is [string, string] => pair.length === 2 && pair[0] !== ""),
                ),
              })
            }
          />
        </label>
        <label>
          Created after
          <input name="after" type="datetime-local" value={filter.after} onChange={(e) => update({ after: e.currentTarget.value })} />
        </label>
        <label>
          before
          <input name="before" type="datetime-local" value={filter.before} onChange={(e) => update({ before: e.currentTarget.value })} />
        </label>
        {filterKey !== "/" && (
          <button type="button" class="link" onClick={() => navigate("/", true)}>
            clear
          </button>
        )}
      </form>
      {problem && <div class="error">{problem}</div>}
      {runs === undefined ? (
        <p class="muted">Loading…</p>
      ) : runs.length === 0 ? (
        <p class="muted empty">No runs{filterKey !== "/" ? " match these filters" : " yet: start one from Workflows"}.</p>
      ) : (
        <table class="runs">
          <thead>
            <tr>
              <th>Run</th>
              <th>Workflow</th>
              <th>Status</th>
              <th>Waiting on</th>
              <th>Created</th>
              <th class="num">Duration</th>
              <th class="num">Activations</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((run) => {
              const created = date(run.createdAt);
              const end = date(run.completedAt)?.getTime() ?? now;
              return (
                <tr key={run.runId} data-run-id={run.runId} data-status={statusName(run.status)}>
                  <td class="mono">
                    <a href={`/runs/${run.runId}`}>{shortId(run.runId)}</a>
                    {run.parentRunId && <span class="muted" title={`child of ${run.parentRunId}`}> ↳</span>}
                  </td>
                  <td>{run.workflowName}</td>
                  <td>
                    <StatusBadge status={run.status} />
                  </td>
                  <td class="waiting">{run.waitingOn ? <WaitingOnText waiting={run.waitingOn} /> : ""}</td>
                  <td title={created?.toISOString()}>
                    {time(created)} <span class="muted">{ago(created, now)}</span>
                  </td>
                  <td class="num">{created ? duration(end - created.getTime()) : ""}</td>
                  <td class="num">{run.activationCount}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <div class="pager">
        <button disabled={tokens.length <= 1} onClick={() => setTokens(tokens.slice(0, -1))}>
          ← Newer
        </button>
        <span class="muted">page {tokens.length}</span>
        <button disabled={!next} onClick={() => setTokens([...tokens, next])}>
          Older →
        </button>
      </div>
    </section>
  );
}

export const page: Page = {
  path: /^\/$/,
  nav: { label: "Runs", href: "/", order: 1 },
  component: RunsPage,
};
