/** Turns measurements into the printed table and the JSON file in bench/results/. */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, platform, release } from "node:os";
import { fileURLToPath } from "node:url";
import type { BenchOptions } from "./args.js";
import type { PgbenchResult } from "./pgbench.js";
import { mean, percentile, round } from "./stats.js";
import type { AgentRoundTripResult, FanOutResult } from "./composition.js";
import type { EventLatencyResult, ParkedMemoryResult, TimerLatenessResult } from "./waits.js";
import type { WatchDelayResult } from "./watch.js";
import type { WorkloadResult } from "./workload.js";

export interface Environment {
  node: string;
  os: string;
  cpuModel: string;
  cpuCount: number;
  /** 1-minute load average when the bench started and ended: other processes on the machine skew every figure. */
  loadAverage: { start: number; end: number };
  postgres: string;
  postgresSource: string;
  postgresUrl: string;
  /** Server settings that decide commit cost. */
  postgresSettings: Record<string, string>;
  cairn: { databasePoolSize: number; maxConcurrentRuns: number; leaseMs: number; pollIntervalMs: number };
}

export interface CommitCount {
  /** pg_stat_database.xact_commit delta of the bench database over the workload (read-only ones too). */
  total: number;
  /** total minus one per GetRun poll: what the engine itself committed (plus a few scheduler polls and heartbeats). */
  engine: number;
}

export interface Summary {
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Goals stated for the wait workloads (issue: durable waits on a 2-core machine). */
export const goals = { eventP50Ms: 15, timerP99Ms: 100 } as const;

export interface EventLatencyReport {
  runs: number;
  completed: number;
  failed: number;
  failures: string[];
  /** Requested GetRun poll interval and the period actually observed (interval + GetRun round trip). */
  pollMs: number;
  observedPollPeriodMs: number;
  /** SendEvent reply → GetRun saw COMPLETED (client clock). */
  latencyMs: Summary;
  /** completed_at of the run − wall clock at the SendEvent reply: no polling slack, 1 ms resolution. */
  completedAtMinusReplyMs: Summary;
  sendEventMs: Summary;
  /** CreateRun (eager) → GetRun saw WAITING. */
  parkMs: Summary;
  /** Journal created_at − wall clock at the SendEvent reply, per entry of the resumed activation. */
  journalMs: { eventReceived: Summary; stepCompleted: Summary; runCompleted: Summary };
  goalP50Ms: number;
  goalMet: boolean;
  wallMs: number;
}

export interface TimerReport {
  runs: number;
  sleepMs: number;
  createConcurrency: number;
  completed: number;
  failed: number;
  failures: string[];
  createWallMs: number;
  createsPerSec: number;
  fireAtSpreadMs: number;
  /** timer_fired.created_at − timer_started.fire_at (both from the journal). */
  latenessMs: Summary;
  early: number;
  /** Timers due after the last create was answered. */
  latenessQuietMs: Summary & { count: number };
  activeWhileCreating: { max: number; mean: number };
  activeWhileFiring: { max: number; mean: number };
  goalP99Ms: number;
  goalMet: boolean;
  wallMs: number;
}

export interface ParkedReport extends Omit<ParkedMemoryResult, "failures" | "bytesPerRun" | "dbBytesPerRun"> {
  failed: number;
  failures: string[];
  bytesPerRun: { rss: number; heapUsed: number };
  dbBytesPerRun: number;
  createsPerSec: number;
  completionsPerSec: number;
}

export interface WaitsReport {
  eventLatency: EventLatencyReport | null;
  timers: TimerReport | null;
  parked: ParkedReport | null;
}

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

export interface BenchReport {
  startedAt: string;
  flags: BenchOptions;
  environment: Environment;
  /** The step-throughput workload; null with --skip-steps. */
  cairn: {
    runs: number;
    completed: number;
    failed: number;
    failures: string[];
    totalSteps: number;
    wallMs: number;
    runsPerSec: number;
    stepsPerSec: number;
    latencyMs: { p50: number; p99: number; mean: number; min: number; max: number };
    getRunPolls: number;
    commits: { total: number; perStep: number; engine: number; enginePerStep: number; enginePerRun: number };
  } | null;
  pgbench: (PgbenchResult & { clients: number; seconds: number }) | null;
  /** Cairn steps/s ÷ pgbench TPS. */
  stepsPerSecOverPgbenchTps: number | null;
  waits: WaitsReport;
  composition: { fanOut: FanOutReport | null; agent: AgentReport | null };
  /** WatchRun delay: one watcher, then --watchers. */
  watch: WatchReport[];
}

export function environmentBasics(loadAtStart: number): Pick<Environment, "node" | "os" | "cpuModel" | "cpuCount" | "loadAverage"> {
  const list = cpus();
  return {
    node: process.version,
    os: `${platform()} ${release()}`,
    cpuModel: list[0]?.model.trim() ?? "unknown",
    cpuCount: list.length,
    loadAverage: { start: round(loadAtStart), end: round(loadavg()[0] ?? Number.NaN) },
  };
}

export function buildReport(input: {
  startedAt: Date;
  flags: BenchOptions;
  environment: Environment;
  steps: { workload: WorkloadResult; commits: CommitCount } | null;
  pgbench: PgbenchResult | null;
  waits: { eventLatency: EventLatencyResult | null; timers: TimerLatenessResult | null; parked: ParkedMemoryResult | null };
  composition: { fanOut: FanOutResult | null; agent: AgentRoundTripResult | null };
  watch: WatchDelayResult[];
}): BenchReport {
  const { flags, steps, pgbench } = input;
  const cairn = steps ? stepsReport(flags, steps.workload, steps.commits) : null;
  return {
    startedAt: input.startedAt.toISOString(),
    flags,
    environment: input.environment,
    cairn,
    pgbench: pgbench ? { ...pgbench, clients: flags.concurrency, seconds: flags.pgbenchSeconds } : null,
    stepsPerSecOverPgbenchTps: pgbench && steps ? round(stepsPerSecOf(flags, steps.workload) / pgbench.tps, 3) : null,
    waits: {
      eventLatency: input.waits.eventLatency ? eventReport(input.waits.eventLatency) : null,
      timers: input.waits.timers ? timerReport(input.waits.timers) : null,
      parked: input.waits.parked ? parkedReport(input.waits.parked) : null,
    },
    composition: {
      fanOut: input.composition.fanOut ? fanOutReport(input.composition.fanOut) : null,
      agent: input.composition.agent ? agentReport(input.composition.agent) : null,
    },
    watch: input.watch.map(watchReport),
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

function stepsPerSecOf(flags: BenchOptions, workload: WorkloadResult): number {
  return (workload.completed * flags.steps) / (workload.wallMs / 1000);
}

function stepsReport(flags: BenchOptions, workload: WorkloadResult, commits: CommitCount): NonNullable<BenchReport["cairn"]> {
  const totalSteps = workload.completed * flags.steps;
  const seconds = workload.wallMs / 1000;
  const lat = workload.latenciesMs;
  return {
    runs: flags.runs,
    completed: workload.completed,
    failed: workload.failures.length,
    failures: workload.failures.slice(0, 20),
    totalSteps,
    wallMs: round(workload.wallMs, 1),
    runsPerSec: round(workload.completed / seconds, 1),
    stepsPerSec: round(stepsPerSecOf(flags, workload), 1),
    latencyMs: summarize(lat),
    getRunPolls: workload.getRunCalls,
    commits: {
      total: commits.total,
      perStep: round(commits.total / totalSteps, 3),
      engine: commits.engine,
      enginePerStep: round(commits.engine / totalSteps, 3),
      enginePerRun: round(commits.engine / Math.max(1, workload.completed), 2),
    },
  };
}

/** Of an ascending array. */
function summarize(sorted: readonly number[]): Summary {
  return {
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    mean: round(mean(sorted)),
    min: round(sorted[0] ?? Number.NaN),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

function eventReport(result: EventLatencyResult): EventLatencyReport {
  const latencyMs = summarize(result.latenciesMs);
  return {
    runs: result.runs,
    completed: result.completed,
    failed: result.failures.length,
    failures: result.failures.slice(0, 20),
    pollMs: result.pollMs,
    observedPollPeriodMs: round(result.observedPollPeriodMs),
    latencyMs,
    completedAtMinusReplyMs: summarize(result.completedAtMinusReplyMs),
    sendEventMs: summarize(result.sendEventMs),
    parkMs: summarize(result.parkMs),
    journalMs: {
      eventReceived: summarize(result.journalMs.eventReceived),
      stepCompleted: summarize(result.journalMs.stepCompleted),
      runCompleted: summarize(result.journalMs.runCompleted),
    },
    goalP50Ms: goals.eventP50Ms,
    goalMet: result.failures.length === 0 && latencyMs.p50 < goals.eventP50Ms,
    wallMs: round(result.wallMs, 1),
  };
}

function timerReport(result: TimerLatenessResult): TimerReport {
  const latenessMs = summarize(result.latenessMs);
  return {
    runs: result.runs,
    sleepMs: result.sleepMs,
    createConcurrency: result.createConcurrency,
    completed: result.completed,
    failed: result.failures.length,
    failures: result.failures.slice(0, 20),
    createWallMs: round(result.createWallMs, 1),
    createsPerSec: round(result.runs / (result.createWallMs / 1000), 1),
    fireAtSpreadMs: result.fireAtSpreadMs,
    latenessMs,
    early: result.early,
    latenessQuietMs: { ...summarize(result.latenessQuietMs), count: result.latenessQuietMs.length },
    activeWhileCreating: { max: result.activeWhileCreating.max, mean: round(result.activeWhileCreating.mean, 1) },
    activeWhileFiring: { max: result.activeWhileFiring.max, mean: round(result.activeWhileFiring.mean, 1) },
    goalP99Ms: goals.timerP99Ms,
    goalMet: result.failures.length === 0 && result.early === 0 && latenessMs.p99 < goals.timerP99Ms,
    wallMs: round(result.wallMs, 1),
  };
}

function parkedReport(result: ParkedMemoryResult): ParkedReport {
  const { failures, bytesPerRun, dbBytesPerRun, ...rest } = result;
  return {
    ...rest,
    createWallMs: round(result.createWallMs, 1),
    parkWallMs: round(result.parkWallMs, 1),
    sendWallMs: round(result.sendWallMs, 1),
    completeWallMs: round(result.completeWallMs, 1),
    failed: failures.length,
    failures: failures.slice(0, 20),
    bytesPerRun: { rss: round(bytesPerRun.rss, 1), heapUsed: round(bytesPerRun.heapUsed, 1) },
    dbBytesPerRun: round(dbBytesPerRun, 1),
    createsPerSec: round(result.runs / (result.createWallMs / 1000), 1),
    completionsPerSec: round(result.completed / (result.completeWallMs / 1000), 1),
  };
}

export function formatReport(report: BenchReport): string {
  const { cairn, environment: env, flags } = report;
  const rows: [string, string][] = [
    ["postgres", `${shortVersion(env.postgres)} (${env.postgresSource}), synchronous_commit=${env.postgresSettings.synchronous_commit ?? "?"}, fsync=${env.postgresSettings.fsync ?? "?"}`],
    ["machine", `${env.cpuCount} × ${env.cpuModel}, node ${env.node}, load average ${env.loadAverage.start} at start, ${env.loadAverage.end} at end`],
    [
      "cairn pool / max runs",
      `${env.cairn.databasePoolSize} connections / ${env.cairn.maxConcurrentRuns} (scheduler poll ${env.cairn.pollIntervalMs} ms, lease ${env.cairn.leaseMs} ms)`,
    ],
    ["", ""],
  ];
  if (cairn) {
    rows.push(
      ["STEPS", `${flags.runs} runs × ${flags.steps} steps, ${flags.concurrency} in flight, GetRun poll every ${flags.pollMs} ms`],
      ["completed / failed", `${cairn.completed} / ${cairn.failed}`],
      ["wall time", `${(cairn.wallMs / 1000).toFixed(2)} s`],
      ["runs/s", cairn.runsPerSec.toFixed(1)],
      ["steps/s", cairn.stepsPerSec.toFixed(1)],
      ["latency p50 / p99", `${ms(cairn.latencyMs.p50)} / ${ms(cairn.latencyMs.p99)} (min ${cairn.latencyMs.min.toFixed(1)}, max ${cairn.latencyMs.max.toFixed(1)})`],
      ["GetRun polls", `${cairn.getRunPolls} (${(cairn.getRunPolls / Math.max(1, cairn.completed)).toFixed(1)} per run)`],
      ["commits (all)", `${cairn.commits.total} = ${cairn.commits.perStep.toFixed(3)} per step`],
      ["commits (minus polls)", `${cairn.commits.engine} = ${cairn.commits.enginePerStep.toFixed(3)} per step, ${cairn.commits.enginePerRun.toFixed(2)} per run`],
    );
    if (report.pgbench) {
      rows.push(
        ["pgbench insert TPS", `${report.pgbench.tps.toFixed(1)} (${report.pgbench.clients} clients, ${report.pgbench.seconds} s)`],
        ["steps/s ÷ pgbench TPS", (report.stepsPerSecOverPgbenchTps ?? Number.NaN).toFixed(3)],
      );
    } else {
      rows.push(["pgbench", "skipped"]);
    }
  } else {
    rows.push(["STEPS", "skipped"]);
  }

  const { eventLatency: ev, timers, parked } = report.waits;
  rows.push(["", ""]);
  if (ev) {
    rows.push(
      ["EVENT → RESUME", `${ev.runs} sequential bench_event_wait runs; SendEvent reply → GetRun sees COMPLETED`],
      ["completed / failed", `${ev.completed} / ${ev.failed}`],
      ["polling", `GetRun every ${ev.pollMs} ms after the reply; observed period ${ev.observedPollPeriodMs.toFixed(2)} ms (= resolution)`],
      ["latency p50 / p99 / max", `${triple(ev.latencyMs)}  goal p50 < ${ev.goalP50Ms} ms: ${ev.goalMet ? "met" : "MISSED"}`],
      ["completed_at − reply", `${triple(ev.completedAtMinusReplyMs)} (server clock, no poll slack, 1 ms resolution)`],
      [
        "journal after reply, p50",
        `event_received +${ev.journalMs.eventReceived.p50.toFixed(0)}, step +${ev.journalMs.stepCompleted.p50.toFixed(0)}, run_completed +${ev.journalMs.runCompleted.p50.toFixed(0)} ms`,
      ],
      ["SendEvent round trip", triple(ev.sendEventMs)],
      ["create → WAITING", triple(ev.parkMs)],
    );
  } else {
    rows.push(["EVENT → RESUME", "skipped"]);
  }
  rows.push(["", ""]);
  if (timers) {
    rows.push(
      ["TIMERS", `${timers.runs} bench_sleep runs × ${timers.sleepMs} ms, created ${timers.createConcurrency} in flight (eager)`],
      ["completed / failed", `${timers.completed} / ${timers.failed}`],
      ["creates", `${(timers.createWallMs / 1000).toFixed(2)} s = ${timers.createsPerSec.toFixed(1)}/s; fire_at spread ${timers.fireAtSpreadMs} ms`],
      ["lateness p50 / p99 / max", `${triple(timers.latenessMs)}  goal p99 < ${timers.goalP99Ms} ms: ${timers.goalMet ? "met" : "MISSED"}`],
      ["fired early", `${timers.early}${timers.early === 0 ? "" : "  (MUST BE 0)"}`],
      [
        "due after creates ended",
        timers.latenessQuietMs.count === 0 ? "none" : `${timers.latenessQuietMs.count} timers: ${triple(timers.latenessQuietMs)}`,
      ],
      [
        "activations in memory",
        `while creating max ${timers.activeWhileCreating.max} (mean ${timers.activeWhileCreating.mean.toFixed(1)}), while firing max ${timers.activeWhileFiring.max} (mean ${timers.activeWhileFiring.mean.toFixed(1)})`,
      ],
      ["first create → all ended", `${(timers.wallMs / 1000).toFixed(2)} s`],
    );
  } else {
    rows.push(["TIMERS", "skipped"]);
  }
  rows.push(["", ""]);
  if (parked) {
    rows.push(
      ["PARKED", `${parked.runs} bench_event_wait runs on distinct keys, ${parked.concurrency} creates in flight, eager_start=${parked.eagerStart}`],
      ["create / all WAITING", `${(parked.createWallMs / 1000).toFixed(2)} s (${parked.createsPerSec.toFixed(1)}/s) / ${(parked.parkWallMs / 1000).toFixed(2)} s`],
      ["WAITING (SQL / ListRuns)", `${parked.waitingBySql} / ${parked.waitingByListRuns}; activations in memory: ${parked.activeActivations}`],
      ["rss before → parked", `${mib(parked.memoryBefore.rss)} → ${mib(parked.memoryParked.rss)} = ${signed(parked.bytesPerRun.rss)} B/run`],
      [
        `heapUsed before → parked`,
        `${mib(parked.memoryBefore.heapUsed)} → ${mib(parked.memoryParked.heapUsed)} = ${signed(parked.bytesPerRun.heapUsed)} B/run (${parked.gcForced ? "after forced GC" : "no GC available"})`,
      ],
      ["after completion", `rss ${mib(parked.memoryAfterCompletion.rss)}, heapUsed ${mib(parked.memoryAfterCompletion.heapUsed)}`],
      ["postgres bytes", `${signed(parked.dbBytesPerRun)} B/parked run (runs, journal, waits, events + indexes)`],
      ["send events / all done", `${(parked.sendWallMs / 1000).toFixed(2)} s / ${(parked.completeWallMs / 1000).toFixed(2)} s (${parked.completionsPerSec.toFixed(1)} runs/s)`],
      ["completed / failed", `${parked.completed} / ${parked.failed}`],
    );
  } else {
    rows.push(["PARKED", "skipped"]);
  }

  rows.push(["", ""]);
  const { fanOut: fan, agent } = report.composition;
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
  if (report.watch.length > 0) {
    const first = report.watch[0];
    rows.push(["WATCH DELAY", `bench_watched: ${first?.steps ?? 0} steps × ${first?.stepMs ?? 0} ms; journal created_at → arrival at a WatchRun watcher (HTTP/2)`]);
    for (const w of report.watch) {
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

  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = rows.map(([label, value]) => (label === "" ? "" : `  ${label.padEnd(width)}  ${value}`));
  const rule = "─".repeat(Math.max(...lines.map((l) => l.length)));
  return [rule, "  Cairn benchmark", rule, ...lines, rule].join("\n");
}

function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

function triple(summary: Summary): string {
  return `${summary.p50.toFixed(1)} / ${summary.p99.toFixed(1)} / ${summary.max.toFixed(1)} ms`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function signed(value: number): string {
  return `${value >= 0 ? "+" : ""}${Math.round(value)}`;
}

/** Every failure of every workload, labelled, for stderr. */
export function allFailures(report: BenchReport): string[] {
  return [
    ...(report.cairn?.failures ?? []).map((f) => `steps: ${f}`),
    ...(report.waits.eventLatency?.failures ?? []).map((f) => `event latency: ${f}`),
    ...(report.waits.timers?.failures ?? []).map((f) => `timers: ${f}`),
    ...(report.waits.parked?.failures ?? []).map((f) => `parked: ${f}`),
    ...(report.composition.fanOut?.failures ?? []).map((f) => `fan-out: ${f}`),
    ...(report.composition.agent?.failures ?? []).map((f) => `agent: ${f}`),
    ...report.watch.flatMap((w) => w.failures.map((f) => `watch (${w.watchers}): ${f}`)),
  ];
}

const resultsDir = fileURLToPath(new URL("./results/", import.meta.url));

/** Writes the report to bench/results/<timestamp>.json and returns the path. */
export async function writeReport(report: BenchReport): Promise<string> {
  await mkdir(resultsDir, { recursive: true });
  const file = `${resultsDir}${report.startedAt.replace(/[:.]/g, "-")}.json`;
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

function shortVersion(version: string): string {
  return /^PostgreSQL [\d.]+/.exec(version)?.[0] ?? version;
}
