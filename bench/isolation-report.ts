/**
 * The price of workflow isolation: the JSON summary of bench/isolation.ts and its block in the printed report, each
 * figure of server T (workflow thread pool) next to server I (CAIRN_WORKFLOW_THREADS=0) and issue 12's goals.
 * W1 is the median round of each server (the warm-up rounds apart, as the cold figures); W2 and W3 pool every round's
 * samples of a server (p99 of 100 samples is nearly the maximum, of 500 it is a percentile).
 */
import { type Summary, summarize, thousands } from "./format.js";
import { goals } from "./goals.js";
import type { IsolationResult, IsolationSide } from "./isolation.js";
import { round } from "./stats.js";
import { stepsPerSecond } from "./workload.js";

export interface IsolationSideReport {
  workflowThreads: number;
  osThreads: number;
  w1: {
    /** Median over rounds. */
    stepsPerSec: number;
    roundsStepsPerSec: number[];
    /** Median over rounds of the server's CPU time ÷ completed steps (worker threads are in the process, so counted). */
    serverCpuMsPerStep: number;
    postgresCpuMsPerStep: number;
    failed: number;
    /** The uncounted warm-up rounds (the cold figures): steps/s and server CPU per step, in order. */
    warmupStepsPerSec: number[];
    warmupServerCpuMsPerStep: number[];
  };
  /** Every round's samples pooled; roundsP50 lists each round's own p50. */
  w2: { latencyMs: Summary; roundsP50: number[]; samples: number; serverCpuMsPerRun: number; failed: number };
  w3: { latencyMs: Summary; roundsP50: number[]; samples: number; serverCpuMsPerRun: number; failed: number };
}

export interface IsolationReport {
  rounds: number;
  warmupRounds: number;
  runs: number;
  steps: number;
  concurrency: number;
  latencyRuns: number;
  http: string;
  threadsVariableRemovedFromT: string | null;
  roundLoads: number[];
  threaded: IsolationSideReport;
  inThread: IsolationSideReport;
  /**
   * T ÷ I of the W1 medians; each round's own T ÷ I, and their median (goal ≥ isolationW1Ratio): a round's two runs
   * go back to back and see much the same machine, while the machine's speed drifts from one round to the next by
   * more than the price (so the medians of each server alone can come from rounds that saw different machines).
   */
  w1Ratio: number;
  w1RoundRatios: number[];
  w1RoundRatioMedian: number;
  /** T − I of the pooled p50s, ms (goal ≤ isolationP50DeltaMs). */
  w2P50DeltaMs: number;
  w3P50DeltaMs: number;
  met: { w1: boolean; w2: boolean; w3: boolean };
  failures: string[];
}

/** Of an even count, the mean of the middle two. */
const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

function sideReport(side: IsolationSide): IsolationSideReport {
  const perStep = (seconds: number, completed: number, steps: number) => (seconds * 1000) / Math.max(1, completed * steps);
  const latency = (series: { result: { latenciesMs: number[]; completed: number; failures: string[] }; serverCpuSeconds: number }[]) => {
    const pooled = series.flatMap((s) => s.result.latenciesMs).sort((a, b) => a - b);
    const completed = series.reduce((n, s) => n + s.result.completed, 0);
    return {
      latencyMs: summarize(pooled),
      roundsP50: series.map((s) => summarize(s.result.latenciesMs).p50),
      samples: pooled.length,
      serverCpuMsPerRun: round((series.reduce((sum, s) => sum + s.serverCpuSeconds, 0) * 1000) / Math.max(1, completed), 3),
      failed: series.reduce((n, s) => n + s.result.failures.length, 0),
    };
  };
  return {
    workflowThreads: side.workflowThreads,
    osThreads: side.osThreads,
    w1: {
      stepsPerSec: round(median(side.w1.map((w) => stepsPerSecond(w.result))), 1),
      roundsStepsPerSec: side.w1.map((w) => round(stepsPerSecond(w.result), 1)),
      serverCpuMsPerStep: round(median(side.w1.map((w) => perStep(w.cpu.servers[0]?.cpuSeconds ?? Number.NaN, w.result.completed, w.result.steps))), 3),
      postgresCpuMsPerStep: round(median(side.w1.map((w) => perStep(w.cpu.postgresBenchDb.cpuSeconds, w.result.completed, w.result.steps))), 3),
      failed: side.w1.reduce((n, w) => n + w.result.failures.length, 0),
      warmupStepsPerSec: (side.warmupW1 ?? []).map((w) => round(stepsPerSecond(w.result), 1)),
      warmupServerCpuMsPerStep: (side.warmupW1 ?? []).map((w) => round(perStep(w.cpu.servers[0]?.cpuSeconds ?? Number.NaN, w.result.completed, w.result.steps), 3)),
    },
    w2: latency(side.w2),
    w3: latency(side.w3),
  };
}

export function isolationReport(result: IsolationResult): IsolationReport {
  const t = sideReport(result.threaded);
  const i = sideReport(result.inThread);
  const w1Ratio = round(t.w1.stepsPerSec / i.w1.stepsPerSec, 3);
  const w1RoundRatios = t.w1.roundsStepsPerSec.map((x, r) => round(x / (i.w1.roundsStepsPerSec[r] ?? Number.NaN), 3));
  const w2P50DeltaMs = round(t.w2.latencyMs.p50 - i.w2.latencyMs.p50, 2);
  const w3P50DeltaMs = round(t.w3.latencyMs.p50 - i.w3.latencyMs.p50, 2);
  const failures = (["threaded", "inThread"] as const).flatMap((key) => {
    const side = result[key];
    const label = (what: string, series: { result: { failures: string[] } }[]) => series.flatMap((s) => s.result.failures).slice(0, 10).map((f) => `isolation ${side.name} ${what}: ${f}`);
    return [...label("W1", side.w1), ...label("W2", side.w2), ...label("W3", side.w3)];
  });
  const clean = (a: number, b: number) => a === 0 && b === 0;
  return {
    rounds: result.rounds,
    warmupRounds: result.warmupRounds ?? 0,
    runs: result.runs,
    steps: result.steps,
    concurrency: result.concurrency,
    latencyRuns: result.latencyRuns,
    http: result.http,
    threadsVariableRemovedFromT: result.threadsVariableRemovedFromT,
    roundLoads: result.roundLoads.map((l) => round(l, 2)),
    threaded: t,
    inThread: i,
    w1Ratio,
    w1RoundRatios,
    w1RoundRatioMedian: round(median(w1RoundRatios), 3),
    w2P50DeltaMs,
    w3P50DeltaMs,
    met: {
      w1: clean(t.w1.failed, i.w1.failed) && median(w1RoundRatios) >= goals.isolationW1Ratio,
      w2: clean(t.w2.failed, i.w2.failed) && w2P50DeltaMs <= goals.isolationP50DeltaMs,
      w3: clean(t.w3.failed, i.w3.failed) && w3P50DeltaMs <= goals.isolationP50DeltaMs,
    },
    failures,
  };
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;
const verdict = (met: boolean) => (met ? "yes" : "NO");
const msText = (value: number, digits = 2) => `${value.toFixed(digits)} ms`;
const signedMs = (value: number) => `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(2)} ms`;

/** The block printed after the scoreboard: one row per figure, T beside I, the goals checked. */
export function formatIsolationBlock(report: IsolationReport | null): string[] {
  if (!report) return [];
  const { threaded: t, inThread: i } = report;
  const failed = (n: number) => (n > 0 ? ` (${n} failed)` : "");
  const columns = ["figure", `T (${t.workflowThreads} workflow threads)`, "I (CAIRN_WORKFLOW_THREADS=0)", "T vs I", "goal", "met?"];
  const cells = [
    [`W1 steps/s, median of ${plural(t.w1.roundsStepsPerSec.length, "round")}`, `${thousands(t.w1.stepsPerSec)}${failed(t.w1.failed)}`, `${thousands(i.w1.stepsPerSec)}${failed(i.w1.failed)}`, `${report.w1Ratio.toFixed(3)}×`, "—", "—"],
    ["W1 T ÷ I, median of the rounds' own", "—", "—", `${report.w1RoundRatioMedian.toFixed(3)}×`, `≥ ${goals.isolationW1Ratio}`, verdict(report.met.w1)],
    ["W1 server CPU per step, median", msText(t.w1.serverCpuMsPerStep, 3), msText(i.w1.serverCpuMsPerStep, 3), `${(t.w1.serverCpuMsPerStep / i.w1.serverCpuMsPerStep).toFixed(2)}×`, "—", "—"],
    [`W2 p50, ${t.w2.samples} + ${i.w2.samples} runs pooled`, `${msText(t.w2.latencyMs.p50)}${failed(t.w2.failed)}`, `${msText(i.w2.latencyMs.p50)}${failed(i.w2.failed)}`, signedMs(report.w2P50DeltaMs), `T − I ≤ +${goals.isolationP50DeltaMs} ms`, verdict(report.met.w2)],
    ["W2 p99", msText(t.w2.latencyMs.p99), msText(i.w2.latencyMs.p99), signedMs(t.w2.latencyMs.p99 - i.w2.latencyMs.p99), "—", "—"],
    [`W3 p50, ${t.w3.samples} + ${i.w3.samples} runs pooled`, `${msText(t.w3.latencyMs.p50)}${failed(t.w3.failed)}`, `${msText(i.w3.latencyMs.p50)}${failed(i.w3.failed)}`, signedMs(report.w3P50DeltaMs), `T − I ≤ +${goals.isolationP50DeltaMs} ms`, verdict(report.met.w3)],
    ["W3 p99", msText(t.w3.latencyMs.p99), msText(i.w3.latencyMs.p99), signedMs(t.w3.latencyMs.p99 - i.w3.latencyMs.p99), "—", "—"],
  ];
  const widths = columns.map((c, k) => Math.max(c.length, ...cells.map((row) => (row[k] ?? "").length)));
  const line = (row: readonly string[]) => `| ${row.map((cell, k) => cell.padEnd(widths[k] ?? 0)).join(" | ")} |`;
  const list = (values: readonly number[], digits: number) => values.map((v) => v.toFixed(digits)).join(", ");
  const loads = report.roundLoads;
  return [
    `The price of workflow isolation (issue 12): server T against server I, each on its own fresh database, ${plural(report.rounds, "alternating round")} (T first in odd rounds) after ${plural(report.warmupRounds, "uncounted warm-up round")} of W1; W1 ${report.runs} runs × ${report.steps} steps, ${report.concurrency} in flight; W2 and W3 ${report.latencyRuns} runs per server and round; HTTP/${report.http}; load ${loads.length ? `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}` : "?"}`,
    line(columns),
    `|${widths.map((w) => "─".repeat(w + 2)).join("|")}|`,
    ...cells.map(line),
    `  W1 rounds, steps/s: T ${list(t.w1.roundsStepsPerSec, 0)}; I ${list(i.w1.roundsStepsPerSec, 0)}; T/I per round ${list(report.w1RoundRatios, 3)} (median ${report.w1RoundRatioMedian.toFixed(3)})`,
    ...(report.warmupRounds > 0
      ? [
          `  W1 warm-up rounds (not counted; the cold figures), steps/s: T ${list(t.w1.warmupStepsPerSec, 0)}; I ${list(i.w1.warmupStepsPerSec, 0)}; server CPU per step T ${list(t.w1.warmupServerCpuMsPerStep, 3)}, I ${list(i.w1.warmupServerCpuMsPerStep, 3)} ms`,
        ]
      : []),
    `  W1 PostgreSQL backends' CPU per step, median: T ${msText(t.w1.postgresCpuMsPerStep, 3)}, I ${msText(i.w1.postgresCpuMsPerStep, 3)}`,
    `  W2 p50 per round: T ${list(t.w2.roundsP50, 2)}; I ${list(i.w2.roundsP50, 2)} ms; server CPU per run T ${msText(t.w2.serverCpuMsPerRun)}, I ${msText(i.w2.serverCpuMsPerRun)}`,
    `  W3 p50 per round: T ${list(t.w3.roundsP50, 2)}; I ${list(i.w3.roundsP50, 2)} ms; server CPU per run (GetRun polls until WAITING included) T ${msText(t.w3.serverCpuMsPerRun)}, I ${msText(i.w3.serverCpuMsPerRun)}`,
    `  OS threads of each process after warm-up (/proc/<pid>/task): T ${t.osThreads}, I ${i.osThreads}${report.threadsVariableRemovedFromT !== null ? `; CAIRN_WORKFLOW_THREADS=${report.threadsVariableRemovedFromT} was set for the bench and removed from T's environment` : ""}`,
    "",
  ];
}
