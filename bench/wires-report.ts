/**
 * The wire table: W1–W4 through each independent client, with the run's
 * end learnt by AwaitRun and by WatchRun, side by side, next to pgbench of
 * the same run, each against issue 18's goals.
 */
import { type Summary, summarize, thousands } from "./format.js";
import { goals } from "./goals.js";
import { round } from "./stats.js";
import type { Observation, WireName } from "./wire.js";
import type { WireResult } from "./wires.js";

export interface WireRow {
  wire: WireName;
  observation: Observation;
  w1: {
    stepsPerSec: number;
    ratioToPgbench: number | null;
    runs: number;
    completed: number;
    failed: number;
    loadAverage: number;
    /** The median round's CPU per step: the server, its PostgreSQL backends, the client (this process); and the machine's cores busy, 0–1. */
    cpuMsPerStep?: { server: number; postgres: number; client: number };
    machineBusyShare?: number;
  } | null;
  w2: {
    latencyMs: Summary;
    serverCpuMsPerRun: number;
    failed: number;
    loadAverage: number;
    /** The warm-up series before the measured one (runs, latency, CPU), when there was one. */
    cold?: { runs: number; latencyMs: Summary; serverCpuMsPerRun: number; failed: number };
  } | null;
  w3: { latencyMs: Summary; failed: number; loadAverage: number } | null;
  w4: {
    runs: number;
    observers: number;
    latenessMs: Summary;
    early: number;
    failed: number;
    loadAverage: number;
    /** The warm-up series before the measured one, when there was one. */
    cold?: { runs: number; latenessMs: Summary; early: number; failed: number };
  } | null;
}

export function wireRows(results: readonly WireResult[], pgbenchTpsAtConcurrency: number | undefined): WireRow[] {
  return results.map((r) => ({
    wire: r.wire,
    observation: r.observation,
    w1: r.w1
      ? {
          stepsPerSec: round(r.w1.stepsPerSec, 1),
          ratioToPgbench: pgbenchTpsAtConcurrency ? round(r.w1.stepsPerSec / pgbenchTpsAtConcurrency, 3) : null,
          runs: r.w1.runs,
          completed: r.w1.completed,
          failed: r.w1.failures.length,
          loadAverage: r.w1.loadAverage,
          cpuMsPerStep: { server: round(r.w1.cpuMsPerStep.server, 3), postgres: round(r.w1.cpuMsPerStep.postgres, 3), client: round(r.w1.cpuMsPerStep.client, 3) },
          machineBusyShare: round(r.w1.machineBusyShare, 3),
        }
      : null,
    w2: r.w2
      ? {
          latencyMs: summarize(r.w2.latenciesMs),
          serverCpuMsPerRun: round(r.w2.serverCpuMsPerRun, 2),
          failed: r.w2.failures.length,
          loadAverage: r.w2.loadAverage,
          ...(r.w2.cold
            ? {
                cold: {
                  runs: r.w2.cold.latenciesMs.length + r.w2.cold.failures.length,
                  latencyMs: summarize(r.w2.cold.latenciesMs),
                  serverCpuMsPerRun: round(r.w2.cold.serverCpuMsPerRun, 2),
                  failed: r.w2.cold.failures.length,
                },
              }
            : {}),
        }
      : null,
    w3: r.w3 ? { latencyMs: summarize(r.w3.latenciesMs), failed: r.w3.failures.length, loadAverage: r.w3.loadAverage } : null,
    w4: r.w4
      ? {
          runs: r.w4.runs,
          observers: r.w4.observers,
          latenessMs: summarize(r.w4.latenessMs),
          early: r.w4.early,
          failed: r.w4.failures.length,
          loadAverage: r.w4.loadAverage,
          ...(r.w4.cold
            ? { cold: { runs: r.w4.cold.runs, latenessMs: summarize(r.w4.cold.latenessMs), early: r.w4.cold.early, failed: r.w4.cold.failures.length } }
            : {}),
        }
      : null,
  }));
}

export function wireFailures(results: readonly WireResult[]): string[] {
  const label = (r: WireResult, w: string, failures: readonly string[] | undefined) => (failures ?? []).slice(0, 10).map((f) => `${r.wire}/${r.observation} ${w}: ${f}`);
  return results.flatMap((r) => [...label(r, "W1", r.w1?.failures), ...label(r, "W2", r.w2?.failures), ...label(r, "W3", r.w3?.failures), ...label(r, "W4", r.w4?.failures)]);
}

const verdict = (met: boolean) => (met ? "yes" : "NO");
const pair = (s: Summary) => `${s.p50.toFixed(1)} / ${s.p99.toFixed(1)}`;

/** The table's lines: one row per wire and observation, every goal checked in its own column. */
export function formatWireTable(rows: readonly WireRow[], pgbench: { clients: number; tps: number } | undefined): string[] {
  if (rows.length === 0) return [];
  const columns = ["wire", "end seen by", "W1 steps/s (× pgbench)", "W2 p50 / p99 ms", "W2 server CPU/run", "W3 p50 / p99 ms", "W4 lateness p50 / p99 ms, early", "goals met?"];
  const cells = rows.map((r) => {
    const missed: string[] = [];
    const w1Goal = r.wire === "sdk" ? goals.wireW1SdkRatio : goals.wireW1Ratio;
    if (r.w1 && (r.w1.failed > 0 || r.w1.ratioToPgbench === null || r.w1.ratioToPgbench < w1Goal)) missed.push(`W1 ≥ ${w1Goal}×`);
    if (r.w2 && (r.w2.failed > 0 || r.w2.latencyMs.p50 > (goals.w2P50Ms ?? Infinity) || r.w2.latencyMs.p99 > goals.w2P99Ms)) missed.push("W2");
    if (r.w2 && r.wire === "grpc-js" && r.w2.serverCpuMsPerRun > goals.wireW2ServerCpuMs) missed.push(`CPU ≤ ${goals.wireW2ServerCpuMs} ms`);
    if (r.w3 && (r.w3.failed > 0 || r.w3.latencyMs.p50 > (goals.w3P50Ms ?? Infinity) || r.w3.latencyMs.p99 > goals.w3P99Ms)) missed.push("W3");
    if (r.w4 && (r.w4.failed > 0 || r.w4.early > 0 || r.w4.latenessMs.p99 > goals.w4P99Ms)) missed.push("W4");
    const failed = (n: number | undefined) => (n ? ` (${n} failed)` : "");
    return [
      r.wire,
      r.observation === "await" ? "AwaitRun" : "WatchRun",
      r.w1 ? `${thousands(r.w1.stepsPerSec)} (${r.w1.ratioToPgbench === null ? "—" : `${r.w1.ratioToPgbench.toFixed(2)}×`})${failed(r.w1.failed)}` : "—",
      r.w2 ? `${pair(r.w2.latencyMs)}${failed(r.w2.failed)}` : "—",
      r.w2 ? `${r.w2.serverCpuMsPerRun.toFixed(2)} ms` : "—",
      r.w3 ? `${pair(r.w3.latencyMs)}${failed(r.w3.failed)}` : "—",
      r.w4 ? `${pair(r.w4.latenessMs)}, ${r.w4.early} early (${r.w4.observers} observers)${failed(r.w4.failed)}` : "—",
      missed.length === 0 ? verdict(true) : `NO: ${missed.join(", ")}`,
    ];
  });
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? "").length)));
  const line = (row: readonly string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  const loads = rows.flatMap((r) => [r.w1?.loadAverage, r.w2?.loadAverage, r.w3?.loadAverage, r.w4?.loadAverage]).filter((l): l is number => l !== undefined);
  return [
    `Wires (issue 18): independent clients against one server; pgbench ${pgbench ? `${thousands(pgbench.tps)} TPS at ${pgbench.clients} clients` : "not run"} in this same run; load ${loads.length ? `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}` : "?"}`,
    `goals: W1 ≥ ${goals.wireW1Ratio}× pgbench (SDK ≥ ${goals.wireW1SdkRatio}×); W2, W3 p50 ≤ ${goals.w2P50Ms} ms, p99 ≤ ${goals.w2P99Ms} ms; W4 p99 ≤ ${goals.w4P99Ms} ms, 0 early; gRPC server CPU per W2 run ≤ ${goals.wireW2ServerCpuMs} ms`,
    line(columns),
    `|${widths.map((w) => "─".repeat(w + 2)).join("|")}|`,
    ...cells.map(line),
    ...w1CpuLines(rows),
    ...coldLines(rows),
    "",
  ];
}

/** Where W1's time went on each wire: what one step cost each party on the machine's shared cores. */
function w1CpuLines(rows: readonly WireRow[]): string[] {
  const measured = rows.filter((r) => r.w1?.cpuMsPerStep);
  if (measured.length === 0) return [];
  return [
    "W1 CPU per step, the median round (server / its PostgreSQL backends / the client, this process), and the machine's cores busy:",
    ...measured.map((r) => {
      const c = r.w1!.cpuMsPerStep!;
      return `  ${r.wire}/${r.observation}: ${c.server.toFixed(3)} / ${c.postgres.toFixed(3)} / ${c.client.toFixed(3)} ms (${(c.server + c.postgres + c.client).toFixed(3)} ms in all), cores ${((r.w1!.machineBusyShare ?? Number.NaN) * 100).toFixed(0)} % busy`;
    }),
  ];
}

/** W2 and W4 as their warm-up series measured them, before the path was warm (the table shows the series after). */
function coldLines(rows: readonly WireRow[]): string[] {
  const lines: string[] = [];
  const cold = rows.filter((r) => r.w2?.cold);
  if (cold.length > 0) {
    lines.push(
      `W2 cold: the ${cold[0]!.w2!.cold!.runs} runs before the measured ones on each wire (p50 / p99 ms, server CPU per run):`,
      ...cold.map((r) => {
        const c = r.w2!.cold!;
        return `  ${r.wire}/${r.observation}: ${pair(c.latencyMs)} ms, ${c.serverCpuMsPerRun.toFixed(2)} ms CPU${c.failed ? ` (${c.failed} failed)` : ""}`;
      }),
    );
  }
  const coldTimers = rows.filter((r) => r.w4?.cold);
  if (coldTimers.length > 0) {
    lines.push(
      `W4 cold: the ${coldTimers[0]!.w4!.cold!.runs} runs before the measured ones on each wire, each with its observer (lateness p50 / p99 ms):`,
      ...coldTimers.map((r) => {
        const c = r.w4!.cold!;
        return `  ${r.wire}/${r.observation}: ${pair(c.latenessMs)} ms, ${c.early} early${c.failed ? ` (${c.failed} failed)` : ""}`;
      }),
    );
  }
  return lines;
}
