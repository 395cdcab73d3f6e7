/**
 * Turns the measurements into issue 7's scoreboard (one table: workload |
 * figure | vs pgbench | goal | met? | load), a details section, and the JSON
 * file in bench/results/. Ratios are to the pgbench figures of the same run:
 * rates to TPS at the same client count, latencies to one pgbench
 * transaction at 1 client (one commit round trip).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { BenchOptions } from "./args.js";
import { type ExtrasReport, extrasFailures, extrasRows } from "./extras-report.js";
import { crowdFailures, formatCrowdBlock } from "./crowd-report.js";
import type { CrowdResult } from "./crowd.js";
import { formatIsolationBlock, type IsolationReport, isolationReport } from "./isolation-report.js";
import type { IsolationResult } from "./isolation.js";
import { type RunControlReport, runControlRows } from "./run-control-report.js";
import { formatWireTable, wireFailures, type WireRow, wireRows } from "./wires-report.js";
import type { WireResult } from "./wires.js";
import { mib, ms, percent, signed, signedMib, type Summary, summarize, thousands, triple } from "./format.js";
import { goals } from "./goals.js";
import type { EventLatencyResult, StartLatencyResult } from "./latency.js";
import type { PgbenchResult } from "./pgbench.js";
import type { ResumeResult, StepCostsResult } from "./replay.js";
import type { BatchBenchResult } from "./batch.js";
import type { DeployCheckBenchResult } from "./deploy-check.js";
import type { ScheduleBenchResult } from "./schedules.js";
import type { CpuShares } from "./resources.js";
import { round } from "./stats.js";
import type { ParkedResult, TimerLatenessResult } from "./waits.js";
import { stepsPerSecond, type ThroughputResult } from "./workload.js";

export interface Environment {
  versions: { node: string; postgres: string; cairn: { version: string; commit: string } };
  machine: { cores: number; cpuModel: string; os: string; memoryBytes: number; loadAverage: { start: number[]; end: number[] } };
  postgres: {
    source: string;
    url: string;
    /** pg_settings at the start; the same server settings hold for every figure (they are read again at the end). */
    settings: Record<string, string>;
    /** Settings that differed at the end (should be none). */
    changedDuringRun: Record<string, { start: string; end: string }>;
  };
  servers: { command: string; env: Record<string, string>; http: string };
  /** Warnings and errors the servers logged, by server: message → count. */
  serverLogs: Record<string, Record<string, number>>;
  /** Deadlocks PostgreSQL detected in the bench database over the whole run (pg_stat_database, read after every server exited). */
  deadlocks: number;
}

export interface PgbenchReport extends PgbenchResult {
  clients: number;
  seconds: number;
  loadAverage: number;
}

export interface ThroughputReport {
  http: string;
  servers: number;
  runs: number;
  steps: number;
  concurrency: number;
  completed: number;
  failed: number;
  wallMs: number;
  stepsPerSec: number;
  runsPerSec: number;
  /** createRun → waitForResult per run. */
  latencyMs: Summary;
  /** steps/s ÷ pgbench TPS at `concurrency` clients. */
  ratioToPgbench: number | null;
  cpu: CpuShares;
  /** CPU time per completed step (load-independent, unlike steps/s): all server processes, the bench-db backends, this client. */
  cpuMsPerStep: { servers: number; postgres: number; client: number };
}

export interface LatencyReport {
  runs: number;
  completed: number;
  failed: number;
  latencyMs: Summary;
  /** p50 and p99 ÷ pgbench 1-client latency. */
  ratioToPgbench: { p50: number; p99: number } | null;
  loadAverage: number;
}

export interface Report {
  startedAt: string;
  finishedAt: string;
  flags: BenchOptions;
  environment: Environment;
  goals: typeof goals;
  pgbench: PgbenchReport[];
  scoreboard: ScoreRow[];
  /** The wire table (issue 18): one row per independent client and way of seeing a run end. */
  wires: WireRow[];
  /** The price of workflow isolation (issue 12): server T (thread pool) against server I (CAIRN_WORKFLOW_THREADS=0). */
  isolation: IsolationReport | null;
  /** A crowd of watch streams on parked runs (issue 18), once per client. */
  crowd: CrowdResult[];
  figures: {
    /** W1 on one server with each HTTP version, when --http both. */
    w1Http: ThroughputReport[];
    /** The median round (by steps/s) of W1 on one server; `roundsStepsPerSec` lists every round. */
    w1: (ThroughputReport & { roundsStepsPerSec: number[] }) | null;
    /** The same through two server processes, and its median ÷ one server's median. */
    w1TwoServers: (ThroughputReport & { roundsStepsPerSec: number[]; ratioToOneServer: number }) | null;
    w2: (LatencyReport & { createMs: Summary }) | null;
    w3: (LatencyReport & { sendEventMs: Summary; journalMs: { eventReceived: Summary; stepCompleted: Summary; runCompleted: Summary } }) | null;
    w4: (Omit<TimerLatenessResult, "latenessMs" | "latenessQuietMs" | "completedAfterMs" | "failures"> & {
      latenessMs: Summary;
      latenessQuietMs: Summary & { count: number };
      completedAfterMs: Summary;
      failed: number;
      loadAverage: number;
      /** The warm-up series before it: the server's first timers. */
      cold?: { runs: number; latenessMs: Summary; early: number; failed: number };
    }) | null;
    parked: (Omit<ParkedResult, "failures"> & {
      failed: number;
      /**
       * The goal's figure: VmRSS with all runs parked (no GC) − VmRSS before
       * (after warm-up, idle time and a forced GC). Garbage counts against it;
       * the RSS after the idle window and a forced GC is often lower than
       * before, because V8 returns memory after a while of idleness.
       */
      rssDeltaBytes: number;
      rssDeltaAfterGcBytes: number;
      heapUsedPerRunBytes: number;
      createsPerSec: number;
      idleServerCpuMsPerSec: number;
      idlePostgresCpuMsPerSec: number;
      loadAverage: number;
    }) | null;
    /** ratio: slowest ÷ fastest per-step cost over the lengths (the goal's figure); growth: longest run's ÷ shortest run's (> 1: dearer as runs grow). */
    replay: (StepCostsResult & { ratio: number; growth: number; loadAverage: number }) | null;
    resume: (ResumeResult & { loadAverage: number }) | null;
    batch: (BatchBenchResult & { loadAverage: number }) | null;
    schedules: (ScheduleBenchResult & { loadAverage: number }) | null;
    deployCheck: (DeployCheckBenchResult & { loadAverage: number }) | null;
    extras: ExtrasReport;
    runControl: RunControlReport;
  };
  failures: string[];
}

export interface ScoreRow {
  workload: string;
  figure: string;
  vsPgbench: string;
  goal: string;
  /** null: no goal, or not measured. */
  met: boolean | null;
  /** 1-minute load average when the workload started. */
  load: number | null;
}

export interface Measurements {
  startedAt: Date;
  flags: BenchOptions;
  environment: Environment;
  pgbench: PgbenchReport[];
  w1Http: { result: ThroughputResult; http: string; cpu: CpuShares }[];
  /** Rounds of W1, one server and two servers. */
  w1: { result: ThroughputResult; http: string; cpu: CpuShares }[] | null;
  w1TwoServers: { result: ThroughputResult; http: string; cpu: CpuShares }[] | null;
  w2: { result: StartLatencyResult; loadAverage: number } | null;
  w3: { result: EventLatencyResult; loadAverage: number } | null;
  /** `cold`: the warm-up series before the measured one (`--timer-warmup`). */
  w4: { result: TimerLatenessResult; loadAverage: number; cold?: TimerLatenessResult } | null;
  parked: { result: ParkedResult; loadAverage: number } | null;
  replay: { result: StepCostsResult; loadAverage: number } | null;
  resume: { result: ResumeResult; loadAverage: number } | null;
  batch: { result: BatchBenchResult; loadAverage: number } | null;
  schedules?: { result: ScheduleBenchResult; loadAverage: number } | null;
  deployCheck?: { result: DeployCheckBenchResult; loadAverage: number } | null;
  extras: ExtrasReport;
  runControl: RunControlReport;
  wires: WireResult[];
  isolation?: IsolationResult | null;
  crowd?: CrowdResult[];
  failures: string[];
}

export function buildReport(m: Measurements): Report {
  const pgAt = (clients: number) => m.pgbench.find((p) => p.clients === clients);
  const pg1 = pgAt(1);
  const throughput = (entry: { result: ThroughputResult; http: string; cpu: CpuShares }): ThroughputReport => {
    const r = entry.result;
    const pg = pgAt(r.concurrency);
    const stepsPerSec = stepsPerSecond(r);
    return {
      http: entry.http,
      servers: r.servers,
      runs: r.runs,
      steps: r.steps,
      concurrency: r.concurrency,
      completed: r.completed,
      failed: r.failures.length,
      wallMs: round(r.wallMs, 1),
      stepsPerSec: round(stepsPerSec, 1),
      runsPerSec: round(r.completed / (r.wallMs / 1000), 1),
      latencyMs: summarize(r.latenciesMs),
      ratioToPgbench: pg ? round(stepsPerSec / pg.tps, 3) : null,
      cpu: entry.cpu,
      cpuMsPerStep: (() => {
        const steps = Math.max(1, r.completed * r.steps);
        const perStep = (seconds: number) => round((seconds * 1000) / steps, 3);
        return {
          servers: perStep(entry.cpu.servers.reduce((sum, x) => sum + x.cpuSeconds, 0)),
          postgres: perStep(entry.cpu.postgresBenchDb.cpuSeconds),
          client: perStep(entry.cpu.client.cpuSeconds),
        };
      })(),
    };
  };
  const latency = (runs: number, completed: number, failed: number, sorted: number[], loadAverage: number): LatencyReport => {
    const latencyMs = summarize(sorted);
    return {
      runs,
      completed,
      failed,
      latencyMs,
      ratioToPgbench: pg1?.latencyAverageMs ? { p50: round(latencyMs.p50 / pg1.latencyAverageMs, 1), p99: round(latencyMs.p99 / pg1.latencyAverageMs, 1) } : null,
      loadAverage,
    };
  };

  const medianRound = (rounds: { result: ThroughputResult; http: string; cpu: CpuShares }[] | null) => {
    if (!rounds || rounds.length === 0) return null;
    const reports = rounds.map(throughput);
    const sorted = [...reports].sort((x, y) => x.stepsPerSec - y.stepsPerSec);
    const median = sorted[Math.floor((sorted.length - 1) / 2)] as ThroughputReport;
    // Failures of any round count against the figure.
    return { ...median, failed: reports.reduce((n, r) => n + r.failed, 0), roundsStepsPerSec: reports.map((r) => r.stepsPerSec) };
  };
  const w1 = medianRound(m.w1);
  const two = medianRound(m.w1TwoServers);
  const isolation = m.isolation ? isolationReport(m.isolation) : null;
  const figures: Report["figures"] = {
    w1Http: m.w1Http.map(throughput),
    w1,
    w1TwoServers: two && w1 ? { ...two, ratioToOneServer: round(two.stepsPerSec / w1.stepsPerSec, 3) } : null,
    w2: m.w2
      ? { ...latency(m.w2.result.runs, m.w2.result.completed, m.w2.result.failures.length, m.w2.result.latenciesMs, m.w2.loadAverage), createMs: summarize(m.w2.result.createMs) }
      : null,
    w3: m.w3
      ? {
          ...latency(m.w3.result.runs, m.w3.result.completed, m.w3.result.failures.length, m.w3.result.latenciesMs, m.w3.loadAverage),
          sendEventMs: summarize(m.w3.result.sendEventMs),
          journalMs: {
            eventReceived: summarize(m.w3.result.journalMs.eventReceived),
            stepCompleted: summarize(m.w3.result.journalMs.stepCompleted),
            runCompleted: summarize(m.w3.result.journalMs.runCompleted),
          },
        }
      : null,
    w4: m.w4
      ? (() => {
          const { latenessMs, latenessQuietMs, completedAfterMs, failures, ...rest } = m.w4.result;
          return {
            ...rest,
            createWallMs: round(rest.createWallMs, 1),
            wallMs: round(rest.wallMs, 1),
            runningWhileFiring: { max: rest.runningWhileFiring.max, mean: round(rest.runningWhileFiring.mean, 1) },
            latenessMs: summarize(latenessMs),
            latenessQuietMs: { ...summarize(latenessQuietMs), count: latenessQuietMs.length },
            completedAfterMs: summarize(completedAfterMs),
            failed: failures.length,
            loadAverage: m.w4.loadAverage,
            ...(m.w4.cold
              ? { cold: { runs: m.w4.cold.runs, latenessMs: summarize(m.w4.cold.latenessMs), early: m.w4.cold.early, failed: m.w4.cold.failures.length } }
              : {}),
          };
        })()
      : null,
    parked: m.parked
      ? (() => {
          const { failures, ...rest } = m.parked.result;
          return {
            ...rest,
            failed: failures.length,
            rssDeltaBytes: rest.procRss.parkedNoGc - rest.procRss.before,
            rssDeltaAfterGcBytes: rest.procRss.parkedAfterGc - rest.procRss.before,
            heapUsedPerRunBytes: round((rest.parkedAfterGc.heapUsed - rest.before.heapUsed) / Math.max(1, rest.runs), 1),
            createsPerSec: round(rest.runs / (rest.createWallMs / 1000), 1),
            idleServerCpuMsPerSec: round(rest.idle.serverCpuMs / rest.idle.seconds, 2),
            idlePostgresCpuMsPerSec: round(rest.idle.postgresCpuMs / rest.idle.seconds, 2),
            dbBytesPerRun: round(rest.dbBytesPerRun, 1),
            loadAverage: m.parked.loadAverage,
          };
        })()
      : null,
    replay: m.replay
      ? {
          ...m.replay.result,
          ratio: replayRatio(m.replay.result),
          growth: round((m.replay.result.lengths.at(-1)?.perStepMs ?? Number.NaN) / (m.replay.result.lengths[0]?.perStepMs ?? Number.NaN), 2),
          loadAverage: m.replay.loadAverage,
        }
      : null,
    resume: m.resume ? { ...m.resume.result, loadAverage: m.resume.loadAverage } : null,
    batch: m.batch ? { ...m.batch.result, runsPerSec: round(m.batch.result.runsPerSec, 1), loadAverage: m.batch.loadAverage } : null,
    schedules: m.schedules ? { ...m.schedules.result, loadAverage: m.schedules.loadAverage } : null,
    deployCheck: m.deployCheck ? { ...m.deployCheck.result, runsPerSec: round(m.deployCheck.result.runsPerSec, 1), loadAverage: m.deployCheck.loadAverage } : null,
    extras: m.extras,
    runControl: m.runControl,
  };
  return {
    startedAt: m.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    flags: m.flags,
    environment: m.environment,
    goals,
    pgbench: m.pgbench,
    scoreboard: scoreboard(figures, m.pgbench),
    wires: wireRows(m.wires, pgAt(m.flags.concurrency)?.tps),
    isolation,
    crowd: m.crowd ?? [],
    figures,
    failures: [...m.failures, ...collectFailures(m), ...wireFailures(m.wires), ...(isolation?.failures ?? []), ...(m.crowd ?? []).flatMap(crowdFailures)],
  };
}

function replayRatio(result: StepCostsResult): number {
  const costs = result.lengths.map((l) => l.perStepMs).filter((c) => Number.isFinite(c) && c > 0);
  return costs.length < 2 ? Number.NaN : round(Math.max(...costs) / Math.min(...costs), 2);
}

function collectFailures(m: Measurements): string[] {
  const label = (what: string, failures: readonly string[]) => failures.slice(0, 20).map((f) => `${what}: ${f}`);
  return [
    ...m.w1Http.flatMap((w) => label(`W1 (HTTP ${w.http})`, w.result.failures)),
    ...(m.w1 ?? []).flatMap((w) => label("W1", w.result.failures)),
    ...(m.w1TwoServers ?? []).flatMap((w) => label("W1 two servers", w.result.failures)),
    ...label("W2", m.w2?.result.failures ?? []),
    ...label("W3", m.w3?.result.failures ?? []),
    ...label("W4", m.w4?.result.failures ?? []),
    ...label("parked", m.parked?.result.failures ?? []),
    ...label("replay", m.replay?.result.failures ?? []),
    ...label("resume", m.resume?.result.failures ?? []),
    ...label("batch", m.batch?.result.failures ?? []),
    ...label("schedules", m.schedules?.result.failures ?? []),
    ...label("deploy check", m.deployCheck?.result.failures ?? []),
    ...extrasFailures(m.extras),
  ];
}

const noGoal = "—";

function both(a: boolean | null, b: boolean | null): boolean | null {
  return a === null || b === null ? (a ?? b) : a && b;
}

function atMost(value: number, goal: number | null): boolean | null {
  return goal === null || !Number.isFinite(value) ? null : value <= goal;
}

function scoreboard(f: Report["figures"], pgbench: PgbenchReport[]): ScoreRow[] {
  const rows: ScoreRow[] = [];
  const pgAt = (clients: number) => pgbench.find((p) => p.clients === clients);
  const pg1 = pgAt(1);
  const vsOneCommit = (value: number) => (pg1?.latencyAverageMs ? `${(value / pg1.latencyAverageMs).toFixed(1)}×` : "");

  if (f.w1) {
    const w = f.w1;
    const pg = pgAt(w.concurrency);
    rows.push({
      workload: "W1 throughput",
      figure: `${thousands(w.stepsPerSec)} steps/s (${w.completed}×${w.steps} steps, ${w.concurrency} in flight, 1 server, HTTP/${w.http}, median of ${w.roundsStepsPerSec.length}); run p50 ${ms(w.latencyMs.p50, 0)} p99 ${ms(w.latencyMs.p99, 0)}${w.failed ? `; ${w.failed} FAILED` : ""}`,
      vsPgbench: w.ratioToPgbench === null || !pg ? "" : `${w.ratioToPgbench.toFixed(3)} × ${thousands(pg.tps)} TPS (${pg.clients} clients)`,
      goal: goals.w1RatioToPgbench === null ? noGoal : `≥ ${goals.w1RatioToPgbench} × pgbench`,
      met: goals.w1RatioToPgbench === null || w.ratioToPgbench === null ? null : w.ratioToPgbench >= goals.w1RatioToPgbench,
      load: w.cpu.loadAverage,
    });
  }
  if (f.w1Http.length > 1) {
    const sorted = [...f.w1Http].sort((x, y) => y.stepsPerSec - x.stepsPerSec);
    const pg = pgAt(sorted[0]?.concurrency ?? 0);
    rows.push({
      workload: "W1 wire",
      figure: `${sorted.map((w) => `HTTP/${w.http} ${thousands(w.stepsPerSec)}`).join(" vs ")} steps/s (one round each, 1 server): HTTP/${sorted[0]?.http} used throughout`,
      vsPgbench: pg ? sorted.map((w) => (w.ratioToPgbench ?? Number.NaN).toFixed(3)).join(" vs ") : "",
      goal: noGoal,
      met: null,
      load: sorted[0]?.cpu.loadAverage ?? null,
    });
  }
  if (f.w1TwoServers) {
    const w = f.w1TwoServers;
    const pg = pgAt(w.concurrency);
    rows.push({
      workload: "W1 two servers",
      figure: `${thousands(w.stepsPerSec)} steps/s through 2 processes = ${w.ratioToOneServer.toFixed(2)}× one (medians); CPU of the machine: PostgreSQL ${percent(w.cpu.postgresBenchDb.share)} (1 server: ${percent(f.w1?.cpu.postgresBenchDb.share ?? Number.NaN)}), servers ${percent(w.cpu.servers.reduce((sum, x) => sum + x.share, 0))}, busy ${percent(w.cpu.machine.share)}${w.failed ? `; ${w.failed} FAILED` : ""}`,
      vsPgbench: w.ratioToPgbench === null || !pg ? "" : `${w.ratioToPgbench.toFixed(3)} × ${thousands(pg.tps)} TPS`,
      goal: `≥ ${goals.twoServerRatio}× one server`,
      met: w.failed > 0 ? false : w.ratioToOneServer >= goals.twoServerRatio,
      load: w.cpu.loadAverage,
    });
  }
  if (f.w2) {
    const w = f.w2;
    rows.push({
      workload: "W2 start → result",
      figure: `p50 ${ms(w.latencyMs.p50)} / p99 ${ms(w.latencyMs.p99)} (${w.completed} sequential 1-step runs)${w.failed ? `; ${w.failed} FAILED` : ""}`,
      vsPgbench: pg1?.latencyAverageMs ? `${vsOneCommit(w.latencyMs.p50)} / ${vsOneCommit(w.latencyMs.p99)} 1-client txn (${ms(pg1.latencyAverageMs, 2)})` : "",
      goal: goals.w2P50Ms === null ? noGoal : `p50 ≤ ${goals.w2P50Ms} ms, p99 ≤ ${goals.w2P99Ms} ms`,
      met: w.failed > 0 ? false : both(atMost(w.latencyMs.p50, goals.w2P50Ms), atMost(w.latencyMs.p99, goals.w2P99Ms)),
      load: w.loadAverage,
    });
  }
  if (f.w3) {
    const w = f.w3;
    rows.push({
      workload: "W3 event → completion",
      figure: `p50 ${ms(w.latencyMs.p50)} / p99 ${ms(w.latencyMs.p99)} (${w.completed} sequential runs, SendEvent reply → waitForResult)${w.failed ? `; ${w.failed} FAILED` : ""}`,
      vsPgbench: pg1?.latencyAverageMs ? `${vsOneCommit(w.latencyMs.p50)} / ${vsOneCommit(w.latencyMs.p99)} 1-client txn` : "",
      goal: goals.w3P50Ms === null ? noGoal : `p50 ≤ ${goals.w3P50Ms} ms, p99 ≤ ${goals.w3P99Ms} ms`,
      met: w.failed > 0 ? false : both(atMost(w.latencyMs.p50, goals.w3P50Ms), atMost(w.latencyMs.p99, goals.w3P99Ms)),
      load: w.loadAverage,
    });
  }
  if (f.w4) {
    const w = f.w4;
    rows.push({
      workload: "W4 timer lateness",
      figure: `p50 ${ms(w.latenessMs.p50, 0)} / p99 ${ms(w.latenessMs.p99, 0)} late, ${w.early} early (${w.completed} runs × ${w.sleepMs / 1000} s)${w.failed ? `; ${w.failed} FAILED` : ""}`,
      vsPgbench: pg1?.latencyAverageMs ? `${vsOneCommit(w.latenessMs.p50)} / ${vsOneCommit(w.latenessMs.p99)} 1-client txn` : "",
      goal: `p99 ≤ ${goals.w4P99Ms} ms, 0 early`,
      met: w.failed === 0 && w.early === 0 && w.latenessMs.p99 <= goals.w4P99Ms,
      load: w.loadAverage,
    });
  }
  if (f.parked) {
    const p = f.parked;
    rows.push({
      workload: "Memory, parked runs",
      figure: `${signedMib(p.rssDeltaBytes)} server RSS with ${thousands(p.waiting)} parked (${signedMib(p.rssDeltaAfterGcBytes)} after idle + GC; heap ${signed(p.heapUsedPerRunBytes)} B/run)${p.failed ? `; ${p.failed} FAILED` : ""}`,
      vsPgbench: "",
      goal: `≤ ${goals.parkedRssMiB} MiB`,
      met: p.failed > 0 ? false : p.rssDeltaBytes <= goals.parkedRssMiB * 1024 * 1024,
      load: p.loadAverage,
    });
    rows.push({
      workload: "Idle CPU, parked runs",
      figure: `server ${p.idleServerCpuMsPerSec.toFixed(2)} ms CPU/s (${(p.idleServerCpuMsPerSec / 10).toFixed(2)} % of a core) over ${p.idle.seconds.toFixed(0)} s; its PostgreSQL backends ${p.idlePostgresCpuMsPerSec.toFixed(2)} ms/s`,
      vsPgbench: "",
      goal: `≤ ${goals.idleCpuMsPerSecond} ms/s`,
      met: p.failed > 0 ? false : p.idleServerCpuMsPerSec <= goals.idleCpuMsPerSecond,
      load: p.loadAverage,
    });
  }
  if (f.replay) {
    const r = f.replay;
    const costs = r.lengths.map((l) => `${l.steps}: ${l.perStepMs.toFixed(2)}`).join(", ");
    rows.push({
      workload: "Replay, per-step cost",
      figure: `${costs} ms/step; slowest ÷ fastest ${r.ratio.toFixed(2)}×, longest ÷ shortest ${r.growth.toFixed(2)}×${r.failures.length ? `; ${r.failures.length} FAILED` : ""}`,
      vsPgbench: pg1?.latencyAverageMs ? r.lengths.map((l) => vsOneCommit(l.perStepMs)).join(", ") + " 1-client txn" : "",
      goal: `≤ ${goals.replayPerStepRatio}×`,
      met: r.failures.length > 0 ? false : atMost(r.ratio, goals.replayPerStepRatio),
      load: r.loadAverage,
    });
  }
  if (f.resume) {
    const r = f.resume;
    const cold = r.measurements.find((x) => x.label === "long, cold");
    const warm = r.measurements.find((x) => x.label === "long, warm");
    const short = r.measurements.find((x) => x.label === "short");
    rows.push({
      workload: `Resume ${r.longSteps}-step run after restart`,
      figure: cold
        ? `${ms(cold.firstNewStepMs, 0)} event reply → first new step journaled (first run on the new process); warm ${warm ? ms(warm.firstNewStepMs, 0) : "?"}, ${r.shortSteps}-step run ${short ? ms(short.firstNewStepMs, 0) : "?"}`
        : `not measured${r.failures.length ? `: ${r.failures[0]}` : ""}`,
      vsPgbench: cold && pg1?.latencyAverageMs ? `${vsOneCommit(cold.firstNewStepMs)} 1-client txn` : "",
      goal: `≤ ${goals.resumeFirstStepMs} ms`,
      met: cold ? r.failures.length === 0 && cold.firstNewStepMs <= goals.resumeFirstStepMs : false,
      load: r.loadAverage,
    });
  }
  if (f.schedules) {
    const s = f.schedules;
    rows.push({
      workload: `Schedule fire lateness, ${thousands(s.schedules)} schedules every ${s.everyMs / 1000} s on three servers`,
      figure: `p50 ${ms(s.latenessP50Ms, 1)}, p99 ${ms(s.latenessP99Ms, 1)}, max ${ms(s.latenessMaxMs, 1)} over ${thousands(s.fires)} fires (${s.early} early)${s.failures.length ? `; ${s.failures.length} FAILED` : ""}`,
      vsPgbench: "",
      goal: `p99 ≤ ${goals.scheduleP99Ms} ms, 0 early`,
      met: s.failures.length > 0 ? false : (atMost(s.latenessP99Ms, goals.scheduleP99Ms) ?? false) && s.early === 0,
      load: s.loadAverage,
    });
  }
  if (f.batch) {
    const b = f.batch;
    rows.push({
      workload: `Cancel batch over ${thousands(b.runs)} parked runs`,
      figure: `${thousands(Math.round(b.runsPerSec))} runs/s (StartBatch → completed in ${(b.batchWallMs / 1000).toFixed(1)} s; StartBatch ${ms(b.startBatchMs, 0)}, dry run ${ms(b.dryRunMs, 0)})${b.failures.length ? `; ${b.failures.length} FAILED` : ""}`,
      vsPgbench: "",
      goal: noGoal,
      met: b.failures.length > 0 ? false : null,
      load: b.loadAverage,
    });
  }
  if (f.deployCheck) {
    const d = f.deployCheck;
    rows.push({
      workload: `cairn deploy check over ${thousands(d.runs)} parked runs (CLI process)`,
      figure: `${thousands(Math.round(d.runsPerSec))} runs/s (${thousands(d.checked)} checked in ${(d.checkWallMs / 1000).toFixed(1)} s, start-up included; ${thousands(d.diverging)} divergent of ${thousands(d.expectedDiverging)} expected; CPU s: CLI ${d.cliCpuSeconds.toFixed(1)}, server ${d.serverCpuSeconds.toFixed(1)}, PostgreSQL ${d.postgresCpuSeconds.toFixed(1)}; machine ${Math.round(d.machineBusyShare * 100)} % busy)${d.failures.length ? `; ${d.failures.length} FAILED` : ""}`,
      vsPgbench: "",
      goal: noGoal,
      met: d.failures.length > 0 ? false : null,
      load: d.loadAverage,
    });
  }
  for (const p of pgbench) {
    rows.push({
      workload: `pgbench ${p.clients} client${p.clients === 1 ? "" : "s"}`,
      figure: `${thousands(p.tps)} TPS one-row INSERT, ${ms(p.latencyAverageMs ?? Number.NaN, 2)} per txn (${p.seconds} s)`,
      vsPgbench: "(baseline)",
      goal: noGoal,
      met: null,
      load: p.loadAverage,
    });
  }
  return rows;
}

export function formatReport(report: Report): string {
  const env = report.environment;
  const s = env.postgres.settings;
  const lines: string[] = [];
  const rule = (width: number) => "─".repeat(width);
  const header = [
    `Cairn benchmark (issue 7 scoreboard), ${report.startedAt}`,
    `machine   ${env.machine.cores} × ${env.machine.cpuModel}, ${mib(env.machine.memoryBytes)}; load average ${env.machine.loadAverage.start.map((l) => l.toFixed(2)).join(" ")} at start, ${env.machine.loadAverage.end.map((l) => l.toFixed(2)).join(" ")} at end (1, 5, 15 min)`,
    `versions  node ${env.versions.node}, ${shortVersion(env.versions.postgres)}, cairn ${env.versions.cairn.version} (${env.versions.cairn.commit})`,
    `postgres  ${env.postgres.source}: synchronous_commit=${s.synchronous_commit ?? "?"} fsync=${s.fsync ?? "?"} full_page_writes=${s.full_page_writes ?? "?"} wal_sync_method=${s.wal_sync_method ?? "?"} commit_delay=${s.commit_delay ?? "?"} shared_buffers=${s.shared_buffers ?? "?"} max_connections=${s.max_connections ?? "?"}${Object.keys(env.postgres.changedDuringRun).length ? `; CHANGED DURING THE RUN: ${Object.keys(env.postgres.changedDuringRun).join(", ")}` : "; unchanged during the run"}`,
    `servers   ${env.servers.command}; ${Object.entries(env.servers.env).map(([k, v]) => `${k}=${v}`).join(" ")}; SDK over ${env.servers.http}`,
  ];
  lines.push(...header, "");

  const columns = ["workload", "figure", "vs pgbench (same run)", "goal", "met?", "load"] as const;
  const cells = report.scoreboard.map((r) => [r.workload, r.figure, r.vsPgbench, r.goal, r.met === null ? "—" : r.met ? "yes" : "NO", r.load === null ? "" : r.load.toFixed(2)]);
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? "").length)));
  const line = (row: readonly string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  lines.push(line(columns), `|${widths.map((w) => rule(w + 2)).join("|")}|`, ...cells.map(line), "");
  const pg = report.pgbench.find((p) => p.clients === report.flags.concurrency);
  lines.push(...formatWireTable(report.wires, pg ? { clients: pg.clients, tps: pg.tps } : undefined));
  for (const crowd of report.crowd) lines.push(...formatCrowdBlock(crowd));
  lines.push(...formatIsolationBlock(report.isolation));

  lines.push("Details", ...details(report).map(([label, value]) => (label === "" ? "" : `  ${label.padEnd(34)}  ${value}`)));
  return lines.join("\n").trimEnd();
}

function cpuLine(cpu: CpuShares): string {
  const servers = cpu.servers.map((s) => `${s.name} ${percent(s.share)}`).join(", ");
  const ours = cpu.servers.reduce((sum, s) => sum + s.share, 0) + cpu.client.share + cpu.postgresAll.share;
  return `${servers}; client ${percent(cpu.client.share)}; PostgreSQL bench-db backends ${percent(cpu.postgresBenchDb.share)} (all postgres ${percent(cpu.postgresAll.share)}); everything else ${percent(Math.max(0, cpu.machine.share - ours))}; machine busy ${percent(cpu.machine.share)} of ${cpu.cores} cores (${percent(cpu.machine.stealShare)} stolen by the hypervisor)`;
}

function cpuPerStep(w: ThroughputReport): string {
  const c = w.cpuMsPerStep;
  return `servers ${c.servers.toFixed(3)} ms, PostgreSQL backends ${c.postgres.toFixed(3)} ms, client ${c.client.toFixed(3)} ms (CPU time ÷ steps: what one step costs, whatever else runs on the machine)`;
}

function details(report: Report): [string, string][] {
  const f = report.figures;
  const rows: [string, string][] = [];
  for (const w of f.w1Http) {
    rows.push([`W1 over HTTP/${w.http}`, `${thousands(w.stepsPerSec)} steps/s, run p50 ${ms(w.latencyMs.p50, 0)} / p99 ${ms(w.latencyMs.p99, 0)}; CPU per step: ${cpuPerStep(w)}`]);
  }
  if (f.w1) {
    rows.push(
      ["W1, 1 server: rounds", `${f.w1.roundsStepsPerSec.map(thousands).join(", ")} steps/s; the median round:`],
      ["W1, 1 server", `${(f.w1.wallMs / 1000).toFixed(2)} s wall, ${f.w1.runsPerSec.toFixed(1)} runs/s, run latency ${triple(f.w1.latencyMs)}`],
      ["W1, 1 server: CPU share", cpuLine(f.w1.cpu)],
      ["W1, 1 server: CPU per step", cpuPerStep(f.w1)],
    );
  }
  if (f.w1TwoServers) {
    rows.push(
      ["W1, 2 servers: rounds", `${f.w1TwoServers.roundsStepsPerSec.map(thousands).join(", ")} steps/s; the median round:`],
      ["W1, 2 servers", `${(f.w1TwoServers.wallMs / 1000).toFixed(2)} s wall, ${f.w1TwoServers.runsPerSec.toFixed(1)} runs/s, run latency ${triple(f.w1TwoServers.latencyMs)}`],
      ["W1, 2 servers: CPU share", cpuLine(f.w1TwoServers.cpu)],
      ["W1, 2 servers: CPU per step", cpuPerStep(f.w1TwoServers)],
    );
  }
  if (f.w2) rows.push(["W2", `latency ${triple(f.w2.latencyMs)}; CreateRun round trip ${triple(f.w2.createMs)}`]);
  if (f.w3) {
    const j = f.w3.journalMs;
    rows.push(
      ["W3", `latency ${triple(f.w3.latencyMs)}; SendEvent round trip ${triple(f.w3.sendEventMs)}`],
      ["W3: journal after the reply, p50", `event_received ${signed(j.eventReceived.p50)}, step ${signed(j.stepCompleted.p50)}, run_completed ${signed(j.runCompleted.p50)} ms (created_at, 1 ms precision)`],
    );
  }
  if (f.w4) {
    const w = f.w4;
    rows.push(
      ["W4", `${w.runs} runs created in ${(w.createWallMs / 1000).toFixed(2)} s (${w.createConcurrency} in flight), fire_at spread ${w.fireAtSpreadMs.toFixed(0)} ms; lateness ${triple(w.latenessMs)}`],
      ["W4: due after creates ended", w.latenessQuietMs.count === 0 ? "none" : `${w.latenessQuietMs.count} timers: ${triple(w.latenessQuietMs)}`],
      ["W4: fire_at → run completed", triple(w.completedAfterMs)],
      ["W4: RUNNING runs while firing", `max ${w.runningWhileFiring.max}, mean ${w.runningWhileFiring.mean}`],
    );
    if (w.cold) rows.push(["W4 cold: the warm-up series", `${w.cold.runs} runs before, the server's first timers: lateness ${triple(w.cold.latenessMs)}, ${w.cold.early} early${w.cold.failed ? `; ${w.cold.failed} FAILED` : ""}`]);
  }
  if (f.parked) {
    const p = f.parked;
    rows.push(
      ["Parked", `${p.onEvents} on events + ${p.onTimers} on 1 h timers, created ${p.createsPerSec.toFixed(0)}/s (${p.concurrency} in flight), all WAITING after ${(p.parkWallMs / 1000).toFixed(1)} s; RUNNING then: ${p.running}`],
      ["Parked: VmRSS", `${mib(p.procRss.before)} → ${mib(p.procRss.parkedNoGc)} parked → ${mib(p.procRss.parkedAfterGc)} after idle + GC`],
      ["Parked: heapUsed (forced GC)", `${mib(p.before.heapUsed)} → ${mib(p.parkedAfterGc.heapUsed)}${p.gcForced ? "" : " (GC not available)"}`],
      ["Parked: idle CPU", `server ${p.idle.serverCpuMs.toFixed(1)} ms by cpuUsage(), ${p.idle.serverProcCpuMs.toFixed(0)} ms by /proc, over ${p.idle.seconds.toFixed(1)} s; its PostgreSQL backends ${p.idle.postgresCpuMs.toFixed(0)} ms`],
      [
        "Parked: table scans while idle",
        Object.entries(p.idle.scans)
          .map(([table, x]) => `${table}: ${x.seqScans} seq scans reading ${thousands(x.seqRowsRead)} rows, ${x.indexScans} index scans fetching ${thousands(x.indexRowsFetched)}`)
          .join("; ") || "none",
      ],
      ["Parked: PostgreSQL bytes", `${signed(p.dbBytesPerRun)} B per parked run (runs, journal, waits, events, with indexes)`],
    );
  }
  if (f.replay) {
    for (const l of f.replay.lengths) {
      const tenths = l.firstTenthMs !== null && l.lastTenthMs !== null ? `; first tenth ${l.firstTenthMs.toFixed(2)}, last tenth ${l.lastTenthMs.toFixed(2)} ms/step` : "";
      rows.push([`Replay ${l.steps} steps × ${l.repetitions}`, `${l.perStepMs.toFixed(2)} ms/step (server clock), ${l.clientPerStepMs.toFixed(2)} ms/step create → result${tenths}; activations ≤ ${l.activationsMax}`]);
    }
  }
  if (f.resume) {
    const r = f.resume;
    rows.push([
      "Resume",
      `parked in ${(r.parkMs / 1000).toFixed(1)} s; SIGTERM → exit ${r.shutdownMs.toFixed(0)} ms (${r.shutdownExit}); new process serving after ${r.restartMs.toFixed(0)} ms`,
    ]);
    for (const x of r.measurements) {
      rows.push([
        `Resume: ${x.steps} steps, ${x.label}`,
        `event_received ${signed(x.eventReceivedMs)} ms, first new step ${signed(x.firstNewStepMs)} ms after the SendEvent reply; result at the client after ${x.resultMs.toFixed(0)} ms; activations ${x.activations}`,
      ]);
    }
  }
  rows.push(["PostgreSQL deadlocks", `${report.environment.deadlocks} in the bench database over the whole run (pg_stat_database; each aborts one statement: a journal batch is then written row by row, a lease heartbeat waits for its next tick)`]);
  for (const [server, messages] of Object.entries(report.environment.serverLogs)) {
    for (const [text, count] of Object.entries(messages)) rows.push([`${server} logged`, `${count} × ${text}`]);
  }
  const extras = extrasRows(f.extras).filter(([, value]) => value !== "skipped");
  if (extras.length > 0) rows.push(["", ""], ...extras);
  const runControl = runControlRows(f.runControl);
  if (runControl.length > 0) rows.push(["", ""], ...runControl);
  return rows;
}

const resultsDir = fileURLToPath(new URL("./results/", import.meta.url));

/** Writes the report to bench/results/<timestamp>.json and returns the path. */
export async function writeReport(report: Report): Promise<string> {
  await mkdir(resultsDir, { recursive: true });
  const file = `${resultsDir}${report.startedAt.replace(/[:.]/g, "-")}.json`;
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

function shortVersion(version: string): string {
  return /^PostgreSQL [\d.]+/.exec(version)?.[0] ?? version;
}
