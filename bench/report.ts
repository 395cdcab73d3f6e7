/** Turns measurements into the printed table and the JSON file in bench/results/. */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, platform, release } from "node:os";
import { fileURLToPath } from "node:url";
import type { BenchOptions } from "./args.js";
import type { PgbenchResult } from "./pgbench.js";
import { mean, percentile, round } from "./stats.js";
import type { WorkloadResult } from "./workload.js";

export interface Environment {
  node: string;
  os: string;
  cpuModel: string;
  cpuCount: number;
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

export interface BenchReport {
  startedAt: string;
  flags: BenchOptions;
  environment: Environment;
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
  };
  pgbench: (PgbenchResult & { clients: number; seconds: number }) | null;
  /** Cairn steps/s ÷ pgbench TPS. */
  stepsPerSecOverPgbenchTps: number | null;
}

export function environmentBasics(): Pick<Environment, "node" | "os" | "cpuModel" | "cpuCount"> {
  const list = cpus();
  return { node: process.version, os: `${platform()} ${release()}`, cpuModel: list[0]?.model.trim() ?? "unknown", cpuCount: list.length };
}

export function buildReport(input: {
  startedAt: Date;
  flags: BenchOptions;
  environment: Environment;
  workload: WorkloadResult;
  commits: CommitCount;
  pgbench: PgbenchResult | null;
}): BenchReport {
  const { flags, workload, commits, pgbench } = input;
  const totalSteps = workload.completed * flags.steps;
  const seconds = workload.wallMs / 1000;
  const stepsPerSec = totalSteps / seconds;
  const lat = workload.latenciesMs;
  return {
    startedAt: input.startedAt.toISOString(),
    flags,
    environment: input.environment,
    cairn: {
      runs: flags.runs,
      completed: workload.completed,
      failed: workload.failures.length,
      failures: workload.failures.slice(0, 20),
      totalSteps,
      wallMs: round(workload.wallMs, 1),
      runsPerSec: round(workload.completed / seconds, 1),
      stepsPerSec: round(stepsPerSec, 1),
      latencyMs: {
        p50: round(percentile(lat, 50)),
        p99: round(percentile(lat, 99)),
        mean: round(mean(lat)),
        min: round(lat[0] ?? Number.NaN),
        max: round(lat.at(-1) ?? Number.NaN),
      },
      getRunPolls: workload.getRunCalls,
      commits: {
        total: commits.total,
        perStep: round(commits.total / totalSteps, 3),
        engine: commits.engine,
        enginePerStep: round(commits.engine / totalSteps, 3),
        enginePerRun: round(commits.engine / Math.max(1, workload.completed), 2),
      },
    },
    pgbench: pgbench ? { ...pgbench, clients: flags.concurrency, seconds: flags.pgbenchSeconds } : null,
    stepsPerSecOverPgbenchTps: pgbench ? round(stepsPerSec / pgbench.tps, 3) : null,
  };
}

export function formatReport(report: BenchReport): string {
  const { cairn, environment: env, flags } = report;
  const rows: [string, string][] = [
    ["workload", `${flags.runs} runs × ${flags.steps} steps, ${flags.concurrency} in flight, GetRun poll every ${flags.pollMs} ms`],
    ["postgres", `${shortVersion(env.postgres)} (${env.postgresSource}), synchronous_commit=${env.postgresSettings.synchronous_commit ?? "?"}, fsync=${env.postgresSettings.fsync ?? "?"}`],
    ["machine", `${env.cpuCount} × ${env.cpuModel}, node ${env.node}`],
    ["cairn pool / max runs", `${env.cairn.databasePoolSize} connections / ${env.cairn.maxConcurrentRuns}`],
    ["", ""],
    ["completed / failed", `${cairn.completed} / ${cairn.failed}`],
    ["wall time", `${(cairn.wallMs / 1000).toFixed(2)} s`],
    ["runs/s", cairn.runsPerSec.toFixed(1)],
    ["steps/s", cairn.stepsPerSec.toFixed(1)],
    ["latency p50 / p99", `${cairn.latencyMs.p50.toFixed(1)} ms / ${cairn.latencyMs.p99.toFixed(1)} ms (min ${cairn.latencyMs.min.toFixed(1)}, max ${cairn.latencyMs.max.toFixed(1)})`],
    ["GetRun polls", `${cairn.getRunPolls} (${(cairn.getRunPolls / Math.max(1, cairn.completed)).toFixed(1)} per run)`],
    ["commits (all)", `${cairn.commits.total} = ${cairn.commits.perStep.toFixed(3)} per step`],
    ["commits (minus polls)", `${cairn.commits.engine} = ${cairn.commits.enginePerStep.toFixed(3)} per step, ${cairn.commits.enginePerRun.toFixed(2)} per run`],
  ];
  if (report.pgbench) {
    rows.push(
      ["", ""],
      ["pgbench insert TPS", `${report.pgbench.tps.toFixed(1)} (${report.pgbench.clients} clients, ${report.pgbench.seconds} s)`],
      ["steps/s ÷ pgbench TPS", (report.stepsPerSecOverPgbenchTps ?? Number.NaN).toFixed(3)],
    );
  } else {
    rows.push(["", ""], ["pgbench", "skipped"]);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = rows.map(([label, value]) => (label === "" ? "" : `  ${label.padEnd(width)}  ${value}`));
  const rule = "─".repeat(Math.max(...lines.map((l) => l.length)));
  return [rule, "  Cairn benchmark", rule, ...lines, rule].join("\n");
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
