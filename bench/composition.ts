/**
 * Composition workloads, over the same Connect/HTTP/2 client as the others:
 *
 * - child fan-out: one bench_fan_out run (eager) that starts N bench_child
 *   runs at once and waits for all of them; wall time from CreateRun to the
 *   GetRun poll that sees the parent COMPLETED, and children per second.
 * - agent turn round trip: sequential bench_agent runs whose one turn is
 *   served by a real worker process (bench/agent-worker-process.ts, spawned
 *   here and killed at the end); per run, CreateRun (eager) reply → GetRun
 *   sees COMPLETED, and the run's completed_at − created_at (server clock).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { fromJson } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp, ValueSchema } from "@bufbuild/protobuf/wkt";
import { EntryKind, type Run, RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import type { BenchProbe } from "./database.js";
import { WORKFLOW_NAME as AGENT_WORKFLOW } from "./workflows/agent.js";
import { WORKFLOW_NAME as FAN_OUT_WORKFLOW } from "./workflows/fan-out.js";
import type { WorkflowClient } from "./client.js";
import { withTimeout } from "./timeout.js";

const ended = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);
const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const workerScript = fileURLToPath(new URL("./agent-worker-process.ts", import.meta.url));

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function millis(timestamp: Timestamp | undefined): number | undefined {
  return timestamp ? timestampDate(timestamp).getTime() : undefined;
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** GetRun every `pollMs` until the run ends; returns the run, the client time it was seen, and the poll count. */
async function pollUntilEnded(client: WorkflowClient, runId: string, pollMs: number, timeoutMs: number, signal: AbortSignal) {
  const started = performance.now();
  let polls = 0;
  for (;;) {
    if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
    await sleep(pollMs);
    polls++;
    const { run } = await client.getRun({ runId });
    const status = run?.status ?? RunStatus.UNSPECIFIED;
    if (ended.has(status)) {
      if (status !== RunStatus.COMPLETED) throw new Error(`run ${runId} ended as ${RunStatus[status]}: ${run?.error?.message ?? ""}`);
      return { run, at: performance.now(), polls };
    }
    if (performance.now() - started > timeoutMs) throw new Error(`run ${runId}: still ${RunStatus[status]} after ${timeoutMs} ms`);
  }
}

// ── 1. child fan-out ─────────────────────────────────────────────────────────

export interface FanOutResult {
  children: number;
  pollMs: number;
  completed: boolean;
  failures: string[];
  /** Just before CreateRun → the GetRun that saw the parent COMPLETED (client clock). */
  wallMs: number;
  /** The parent's completed_at − created_at (server clock, no polling slack). */
  serverMs: number;
  createMs: number;
  polls: number;
  /** Activations the parent needed (1 = it never parked). */
  parentActivations: number;
  /**
   * The children's timeline relative to the parent's created_at (server
   * clock, ms): when the first and last were created, the last started, the
   * first and last completed; and each child's completed_at − created_at.
   */
  childTimeline: {
    firstCreated: number;
    lastCreated: number;
    lastStarted: number;
    firstCompleted: number;
    lastCompleted: number;
    childLatencyMs: number[];
    childActivationsMax: number;
  } | null;
  /** The parent's child_completed entries relative to its created_at: first and last. */
  parentJournal: { firstChildCompleted: number; lastChildCompleted: number; runCompleted: number } | null;
}

export async function fanOut(
  client: WorkflowClient,
  options: { children: number; pollMs: number; timeoutMs: number; signal: AbortSignal },
): Promise<FanOutResult> {
  const failures: string[] = [];
  const result: FanOutResult = {
    children: options.children,
    pollMs: options.pollMs,
    completed: false,
    failures,
    wallMs: Number.NaN,
    serverMs: Number.NaN,
    createMs: Number.NaN,
    polls: 0,
    parentActivations: 0,
    childTimeline: null,
    parentJournal: null,
  };
  let parentId: string | undefined;
  try {
    const begin = performance.now();
    const created = await client.createRun({ workflowName: FAN_OUT_WORKFLOW, input: fromJson(ValueSchema, { children: options.children }), eagerStart: true });
    result.createMs = performance.now() - begin;
    parentId = created.run?.runId;
    if (!parentId) throw new Error("CreateRun answered without a run id");
    const done = await pollUntilEnded(client, parentId, options.pollMs, options.timeoutMs, options.signal);
    result.wallMs = done.at - begin;
    result.polls = done.polls;
    result.completed = true;
    const parent = done.run;
    const parentCreated = millis(parent?.createdAt) ?? Number.NaN;
    result.serverMs = (millis(parent?.completedAt) ?? Number.NaN) - parentCreated;
    result.parentActivations = parent?.activationCount ?? 0;

    // Outside the measured window: where the time went.
    const children = await listChildren(client, parentId);
    if (children.length !== options.children) failures.push(`parent has ${children.length} children, expected ${options.children}`);
    const at = (runs: Run[], pick: (run: Run) => Timestamp | undefined) =>
      runs.map((run) => (millis(pick(run)) ?? Number.NaN) - parentCreated).filter((v) => !Number.isNaN(v));
    const createdAts = at(children, (r) => r.createdAt);
    const started = at(children, (r) => r.startedAt);
    const completed = at(children, (r) => r.completedAt);
    result.childTimeline = {
      firstCreated: Math.min(...createdAts),
      lastCreated: Math.max(...createdAts),
      lastStarted: Math.max(...started),
      firstCompleted: Math.min(...completed),
      lastCompleted: Math.max(...completed),
      childLatencyMs: sorted(children.map((r) => (millis(r.completedAt) ?? Number.NaN) - (millis(r.createdAt) ?? Number.NaN)).filter((v) => !Number.isNaN(v))),
      childActivationsMax: Math.max(...children.map((r) => r.activationCount)),
    };
    const { entries } = await client.getRunHistory({ runId: parentId, pageSize: 10_000 });
    const childDone = entries.filter((e) => e.kind === EntryKind.CHILD_COMPLETED).map((e) => (millis(e.createdAt) ?? Number.NaN) - parentCreated);
    const runDone = entries.find((e) => e.kind === EntryKind.RUN_COMPLETED);
    result.parentJournal = {
      firstChildCompleted: Math.min(...childDone),
      lastChildCompleted: Math.max(...childDone),
      runCompleted: (millis(runDone?.createdAt) ?? Number.NaN) - parentCreated,
    };
  } catch (error) {
    failures.push(message(error));
  }
  return result;
}

async function listChildren(client: WorkflowClient, parentRunId: string): Promise<Run[]> {
  const runs: Run[] = [];
  let pageToken = "";
  do {
    const page = await client.listRuns({ parentRunId, pageSize: 1000, pageToken });
    runs.push(...page.runs);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return runs;
}

// ── 2. agent turn round trip ─────────────────────────────────────────────────

export interface AgentRoundTripResult {
  runs: number;
  completed: number;
  failures: string[];
  pollMs: number;
  /** The requested poll interval plus one GetRun round trip, as observed. */
  observedPollPeriodMs: number;
  /** CreateRun (eager) reply → GetRun saw COMPLETED (client clock), ascending. */
  latenciesMs: number[];
  /** The run's completed_at − created_at (server clock, no polling slack, 1 ms resolution), ascending. */
  serverMs: number[];
  /** CreateRun round trip, ascending. */
  createMs: number[];
  /**
   * Where the time goes, from server timestamps relative to the run's
   * created_at, ascending: the turn row created, the worker's CompleteTurn
   * committed (turn completed_at), the resumed activation's
   * agent_turn_completed entry, and run_completed.
   */
  breakdownMs: { turnCreated: number[]; turnCompleted: number[]; resultJournaled: number[]; runCompleted: number[] };
  /** agent_turn_completed entry − turn completed_at: how long a finished turn waits for its run to resume, ascending. */
  resumeGapMs: number[];
  /** Activations per run (2 = started, parked on the turn, resumed once). */
  activationsMax: number;
  /** Worker process: spawn → its "ready" line. */
  workerStartMs: number;
  workerErrors: string[];
  wallMs: number;
}

interface WorkerProcess {
  child: ChildProcess;
  errors: string[];
  ready: Promise<void>;
}

/** `node --import tsx bench/agent-worker-process.ts URL`, with its stdout parsed as JSON lines. */
function spawnWorker(url: string): WorkerProcess {
  const child = spawn(process.execPath, ["--conditions=@cairnjs/source", "--import", "tsx", workerScript, url], { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] });
  const errors: string[] = [];
  let buffer = "";
  let onReady: () => void = () => undefined;
  let onFail: (error: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let newline = buffer.indexOf("\n"); newline >= 0; newline = buffer.indexOf("\n")) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      let parsed: { event?: unknown; message?: unknown };
      try {
        parsed = JSON.parse(line) as { event?: unknown; message?: unknown };
      } catch {
        errors.push(`unparsed worker output: ${line}`);
        continue;
      }
      if (parsed.event === "ready") onReady();
      else if (parsed.event === "error") errors.push(String(parsed.message));
    }
  });
  child.once("exit", (code, signal) => onFail(new Error(`agent worker exited before it was ready (code ${code}, signal ${signal})`)));
  child.once("error", (error) => onFail(error));
  // Rejections after a timeout (the worker killed then) are not unhandled.
  ready.catch(() => undefined);
  return { child, errors, ready };
}

/** SIGTERM (the worker stops polling and exits), SIGKILL after 3 s. */
async function stopWorker(worker: WorkerProcess): Promise<void> {
  const { child } = worker;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

export async function agentRoundTrip(
  client: WorkflowClient,
  probe: BenchProbe,
  serverUrl: string,
  options: { runs: number; pollMs: number; signal: AbortSignal; log: (message: string) => void },
): Promise<AgentRoundTripResult> {
  const failures: string[] = [];
  const latencies: number[] = [];
  const serverSide: number[] = [];
  const creates: number[] = [];
  const breakdown = { turnCreated: [] as number[], turnCompleted: [] as number[], resultJournaled: [] as number[], runCompleted: [] as number[] };
  const resumeGaps: number[] = [];
  let activationsMax = 0;
  let polls = 0;
  let pollingMs = 0;

  const spawning = performance.now();
  const worker = spawnWorker(serverUrl);
  try {
    await withTimeout(worker.ready, 30_000, "agent worker not ready after 30 s");
    const workerStartMs = performance.now() - spawning;
    options.log(`agent: worker pid ${worker.child.pid} ready in ${workerStartMs.toFixed(0)} ms`);

    const oneRun = async (measure: boolean): Promise<void> => {
      const sending = performance.now();
      const created = await client.createRun({ workflowName: AGENT_WORKFLOW, input: fromJson(ValueSchema, {}), eagerStart: true });
      const t0 = performance.now();
      const runId = created.run?.runId;
      if (!runId) throw new Error("CreateRun answered without a run id");
      const done = await pollUntilEnded(client, runId, options.pollMs, 10_000, options.signal);
      if (!measure) return;
      creates.push(t0 - sending);
      latencies.push(done.at - t0);
      polls += done.polls;
      pollingMs += done.at - t0;
      const createdAt = millis(done.run?.createdAt) ?? Number.NaN;
      serverSide.push((millis(done.run?.completedAt) ?? Number.NaN) - createdAt);
      activationsMax = Math.max(activationsMax, done.run?.activationCount ?? 0);

      // Outside the measured window: the turn row and the journal.
      const turn = await probe.agentTurn(runId);
      const { entries } = await client.getRunHistory({ runId });
      const journaled = millis(entries.find((e) => e.kind === EntryKind.AGENT_TURN_COMPLETED)?.createdAt);
      const finished = millis(entries.find((e) => e.kind === EntryKind.RUN_COMPLETED)?.createdAt);
      if (turn) {
        breakdown.turnCreated.push(turn.createdAt.getTime() - createdAt);
        if (turn.completedAt) breakdown.turnCompleted.push(turn.completedAt.getTime() - createdAt);
        if (turn.completedAt && journaled !== undefined) resumeGaps.push(journaled - turn.completedAt.getTime());
      }
      if (journaled !== undefined) breakdown.resultJournaled.push(journaled - createdAt);
      if (finished !== undefined) breakdown.runCompleted.push(finished - createdAt);
    };

    // Unmeasured: the worker's connection, the turn paths' first queries.
    for (let i = 0; i < 5 && !options.signal.aborted; i++) await oneRun(false);

    const begin = performance.now();
    for (let i = 0; i < options.runs && !options.signal.aborted; i++) {
      try {
        await oneRun(true);
      } catch (error) {
        failures.push(message(error));
      }
    }
    return {
      runs: options.runs,
      completed: latencies.length,
      failures,
      pollMs: options.pollMs,
      observedPollPeriodMs: polls === 0 ? Number.NaN : pollingMs / polls,
      latenciesMs: sorted(latencies),
      serverMs: sorted(serverSide),
      createMs: sorted(creates),
      breakdownMs: {
        turnCreated: sorted(breakdown.turnCreated),
        turnCompleted: sorted(breakdown.turnCompleted),
        resultJournaled: sorted(breakdown.resultJournaled),
        runCompleted: sorted(breakdown.runCompleted),
      },
      resumeGapMs: sorted(resumeGaps),
      activationsMax,
      workerStartMs,
      workerErrors: worker.errors.slice(0, 20),
      wallMs: performance.now() - begin,
    };
  } finally {
    await stopWorker(worker);
  }
}


/** A small unmeasured fan-out so module loading and first queries stay out of the figures. */
export async function warmUpComposition(client: WorkflowClient, signal: AbortSignal): Promise<void> {
  const result = await fanOut(client, { children: 8, pollMs: 5, timeoutMs: 30_000, signal });
  if (result.failures.length > 0) throw new Error(`composition warm-up failed: ${result.failures.join("; ")}`);
}
