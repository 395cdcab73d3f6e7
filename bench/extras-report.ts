/**
 * The extras kept from the earlier bench (child fan-out, agent turns through
 * a worker process, WatchRun delay): their JSON summaries and their lines in
 * the details section. They are not part of issue 7's scoreboard.
 */
import type { AgentRoundTripResult, FanOutResult } from "./composition.js";
import { ms, type Summary, summarize, triple } from "./format.js";
import { round } from "./stats.js";
import type { WatchDelayResult } from "./watch.js";
import type { ExplainLatencyResult } from "./explain.js";
import { type FlowControlResult, flowControlSummary } from "./flow-control.js";

export interface FanOutReport {
  children: number;
  pollMs: number;
  completed: boolean;
  failed: number;
  failures: string[];
  /** CreateRun (eager) → GetRun saw the parent COMPLETED (client clock). */
  wallMs: number;
  childrenPerSec: number;
  /** The parent's completed_at − created_at (server clock). */
  serverMs: number;
  createMs: number;
  polls: number;
  parentActivations: number;
  /** Relative to the parent's created_at (server clock), ms. */
  childTimeline: {
    firstCreated: number;
    lastCreated: number;
    lastStarted: number;
    firstCompleted: number;
    lastCompleted: number;
    childLatencyMs: Summary;
    childActivationsMax: number;
  } | null;
  parentJournal: { firstChildCompleted: number; lastChildCompleted: number; runCompleted: number } | null;
}

export interface AgentReport {
  runs: number;
  completed: number;
  failed: number;
  failures: string[];
  pollMs: number;
  observedPollPeriodMs: number;
  /** CreateRun (eager) reply → GetRun saw COMPLETED (client clock). */
  latencyMs: Summary;
  /** completed_at − created_at of the run (server clock, no polling slack). */
  serverMs: Summary;
  createMs: Summary;
  /** Relative to the run's created_at (server clock). */
  breakdownMs: { turnCreated: Summary; turnCompleted: Summary; resultJournaled: Summary; runCompleted: Summary };
  /** agent_turn_completed entry − the turn's completed_at: a finished turn waiting for its run to resume. */
  resumeGapMs: Summary;
  activationsMax: number;
  workerStartMs: number;
  workerErrors: string[];
  wallMs: number;
}

export interface WatchReport {
  watchers: number;
  steps: number;
  stepMs: number;
  failed: number;
  failures: string[];
  subscribeMs: number;
  /** Arrival at the watcher (Date.now()) − entry created_at, every counted entry of every watcher. */
  delayMs: Summary & { count: number };
  /** The run_completed entry, per watcher. */
  lastEntryDelayMs: Summary;
  entriesPerWatcher: { min: number; max: number; expected: number };
  excluded: number;
  /** event_received → run_completed, server clock; ideal ≈ steps × stepMs. */
  runMs: number;
  idealRunMs: number;
  wallMs: number;
}

export interface ExplainReport {
  calls: number;
  /** Stored near-miss events the waiting run's answer names. */
  nearMisses: number;
  latencyMs: Summary;
  failed: number;
  failures: string[];
}

export interface ExtrasReport {
  fanOut: FanOutReport | null;
  agent: AgentReport | null;
  watch: WatchReport[];
  explain: ExplainReport | null;
  /** W1 without and with a concurrency key (limit 64): median steps/s of each and keyed / plain. */
  flowControl?: { rounds: number; plain: number; keyed: number; ratio: number; failed: number } | null;
}

export function extrasReport(input: {
  fanOut: FanOutResult | null;
  agent: AgentRoundTripResult | null;
  watch: WatchDelayResult[];
  explain: ExplainLatencyResult | null;
  flowControl?: FlowControlResult | null;
}): ExtrasReport {
  return {
    fanOut: input.fanOut ? fanOutReport(input.fanOut) : null,
    agent: input.agent ? agentReport(input.agent) : null,
    watch: input.watch.map(watchReport),
    explain: input.explain
      ? { calls: input.explain.calls, nearMisses: input.explain.nearMisses, latencyMs: summarize(input.explain.latenciesMs), failed: input.explain.failures.length, failures: input.explain.failures }
      : null,
    flowControl: input.flowControl ? { rounds: input.flowControl.rounds, ...flowControlSummary(input.flowControl) } : null,
  };
}

function fanOutReport(result: FanOutResult): FanOutReport {
  const timeline = result.childTimeline;
  return {
    children: result.children,
    pollMs: result.pollMs,
    completed: result.completed,
    failed: result.failures.length,
    failures: result.failures.slice(0, 20),
    wallMs: round(result.wallMs, 1),
    childrenPerSec: round(result.children / (result.wallMs / 1000), 1),
    serverMs: result.serverMs,
    createMs: round(result.createMs, 2),
    polls: result.polls,
    parentActivations: result.parentActivations,
    childTimeline: timeline ? { ...timeline, childLatencyMs: summarize(timeline.childLatencyMs) } : null,
    parentJournal: result.parentJournal,
  };
}

function agentReport(result: AgentRoundTripResult): AgentReport {
  return {
    runs: result.runs,
    completed: result.completed,
    failed: result.failures.length,
    failures: result.failures.slice(0, 20),
    pollMs: result.pollMs,
    observedPollPeriodMs: round(result.observedPollPeriodMs),
    latencyMs: summarize(result.latenciesMs),
    serverMs: summarize(result.serverMs),
    createMs: summarize(result.createMs),
    breakdownMs: {
      turnCreated: summarize(result.breakdownMs.turnCreated),
      turnCompleted: summarize(result.breakdownMs.turnCompleted),
      resultJournaled: summarize(result.breakdownMs.resultJournaled),
      runCompleted: summarize(result.breakdownMs.runCompleted),
    },
    resumeGapMs: summarize(result.resumeGapMs),
    activationsMax: result.activationsMax,
    workerStartMs: round(result.workerStartMs, 1),
    workerErrors: result.workerErrors,
    wallMs: round(result.wallMs, 1),
  };
}

function watchReport(result: WatchDelayResult): WatchReport {
  return {
    watchers: result.watchers,
    steps: result.steps,
    stepMs: result.stepMs,
    failed: result.failures.length,
    failures: result.failures.slice(0, 20),
    subscribeMs: round(result.subscribeMs, 1),
    delayMs: { ...summarize(result.delaysMs), count: result.delaysMs.length },
    lastEntryDelayMs: summarize(result.lastEntryDelaysMs),
    entriesPerWatcher: result.entriesPerWatcher,
    excluded: result.excluded,
    runMs: result.runMs,
    idealRunMs: result.steps * result.stepMs,
    wallMs: round(result.wallMs, 1),
  };
}

/** Label / value rows for the details section. */
export function extrasRows(extras: ExtrasReport): [string, string][] {
  const rows: [string, string][] = [];
  const { fanOut: fan, agent, watch } = extras;
  if (fan) {
    const t = fan.childTimeline;
    const j = fan.parentJournal;
    rows.push(
      ["FAN-OUT", `1 bench_fan_out run (eager) × ${fan.children} bench_child runs (Promise.all over ctx.runWorkflow)`],
      ["completed / failed", `${fan.completed ? 1 : 0} / ${fan.failed}`],
      ["create → COMPLETED", `${ms(fan.wallMs)} = ${fan.childrenPerSec.toFixed(1)} children/s (GetRun every ${fan.pollMs} ms, ${fan.polls} polls)`],
      ["completed_at − created_at", `${ms(fan.serverMs)} (server clock); parent activations ${fan.parentActivations}`],
    );
    if (t) {
      rows.push(
        ["children after parent, ms", `created +${t.firstCreated}…+${t.lastCreated}, last started +${t.lastStarted}, completed +${t.firstCompleted}…+${t.lastCompleted}`],
        ["child created → completed", `${triple(t.childLatencyMs)}; max activations per child ${t.childActivationsMax}`],
      );
    }
    if (j) rows.push(["parent journal, ms", `child_completed +${j.firstChildCompleted}…+${j.lastChildCompleted}, run_completed +${j.runCompleted}`]);
  } else {
    rows.push(["FAN-OUT", "skipped"]);
  }
  rows.push(["", ""]);
  if (agent) {
    const b = agent.breakdownMs;
    rows.push(
      ["AGENT TURN", `${agent.runs} sequential bench_agent runs, worker process (connect-node, HTTP/2) answering at once`],
      ["completed / failed", `${agent.completed} / ${agent.failed}${agent.workerErrors.length > 0 ? `; worker errors: ${agent.workerErrors.length}` : ""}`],
      ["polling", `GetRun every ${agent.pollMs} ms after the CreateRun reply; observed period ${agent.observedPollPeriodMs.toFixed(2)} ms`],
      ["reply → COMPLETED p50/p99/max", triple(agent.latencyMs)],
      ["completed_at − created_at", `${triple(agent.serverMs)} (server clock, no poll slack)`],
      [
        "after created_at, p50",
        `turn row +${b.turnCreated.p50.toFixed(0)}, worker result +${b.turnCompleted.p50.toFixed(0)}, agent_turn_completed +${b.resultJournaled.p50.toFixed(0)}, run_completed +${b.runCompleted.p50.toFixed(0)} ms`,
      ],
      ["worker result → run resumed", `${triple(agent.resumeGapMs)} (agent_turn_completed − turn completed_at)`],
      ["CreateRun round trip", triple(agent.createMs)],
      ["activations per run (max)", String(agent.activationsMax)],
    );
  } else {
    rows.push(["AGENT TURN", "skipped"]);
  }
  rows.push(["", ""]);
  if (watch.length > 0) {
    const first = watch[0];
    rows.push(["WATCH DELAY", `bench_watched: ${first?.steps ?? 0} steps × ${first?.stepMs ?? 0} ms; journal created_at → arrival at a WatchRun watcher (HTTP/2)`]);
    for (const w of watch) {
      const label = `${w.watchers} watcher${w.watchers === 1 ? "" : "s"}`;
      rows.push(
        [`${label}: p50/p99/max`, `${triple(w.delayMs)} over ${w.delayMs.count} entries${w.failed > 0 ? `; FAILED ${w.failed}` : ""}`],
        [
          `${label}: detail`,
          `run_completed ${triple(w.lastEntryDelayMs)}; entries/watcher ${w.entriesPerWatcher.min}–${w.entriesPerWatcher.max} of ${w.entriesPerWatcher.expected}; subscribe ${ms(w.subscribeMs)}; run ${w.runMs} ms (ideal ${w.idealRunMs})`,
        ],
      );
    }
  } else {
    rows.push(["WATCH DELAY", "skipped"]);
  }
  rows.push(["", ""]);
  const explain = extras.explain;
  if (explain) {
    rows.push(
      ["EXPLAIN", `ExplainRun of a WAITING bench_event_wait run with ${explain.nearMisses} near-miss events stored, sequential SDK calls`],
      ["p50/p99/max", `${triple(explain.latencyMs)} over ${explain.calls} calls${explain.failed > 0 ? `; WRONG ANSWERS ${explain.failed}` : ""}`],
    );
  } else {
    rows.push(["EXPLAIN", "skipped"]);
  }
  rows.push(["", ""]);
  const flow = extras.flowControl;
  if (flow) {
    rows.push(
      ["FLOW CONTROL", `W1 over bench_steps against bench_steps_keyed (concurrency key, limit 64), ${flow.rounds} alternating rounds, medians`],
      ["steps/s", `plain ${flow.plain.toFixed(0)}, keyed ${flow.keyed.toFixed(0)}: ${(flow.ratio * 100).toFixed(1)}% (goal >= 85%)${flow.failed > 0 ? `; FAILED RUNS ${flow.failed}` : ""}`],
    );
  } else {
    rows.push(["FLOW CONTROL", "skipped"]);
  }

  return rows;
}

export function extrasFailures(extras: ExtrasReport): string[] {
  return [
    ...(extras.fanOut?.failures ?? []).map((f) => `fan-out: ${f}`),
    ...(extras.agent?.failures ?? []).map((f) => `agent: ${f}`),
    ...extras.watch.flatMap((w) => w.failures.map((f) => `watch (${w.watchers}): ${f}`)),
    ...(extras.explain?.failures ?? []).map((f) => `explain: ${f}`),
  ];
}
