/**
 * The "deploy check" section: `cairn deploy check` over N runs in flight. N bench_event_wait runs are parked on
 * their events, then the CLI process (`cairn deploy check --json`, the path an operator or a CI job takes)
 * replays every run in flight against bench/changed-workflows, where the runs whose key ends in 0 gain a step
 * before their wait. Measured: the CLI's wall time (process start to exit, so its start-up counts) as runs/s.
 * Checked: exit code 1, and exactly the runs whose key ends in 0 listed among ours. Where the time went: the CPU
 * of the CLI process, the server and the bench database's PostgreSQL backends over the check, and the machine's
 * busy share (other work on the machine slows the check too). The runs are cancelled after.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { CairnClient } from "../sdk/client.js";
import type { BenchProbe } from "./database.js";
import { processStat } from "./proc.js";
import { watchCpu } from "./resources.js";
import type { ServerProcess } from "./server.js";
import { awaitStatus, inParallel } from "./waits.js";
import { WORKFLOW_NAME as EVENT_WORKFLOW } from "./workflows/event-wait.js";

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL("..", import.meta.url));
export const changedWorkflowDir = "bench/changed-workflows";

export interface DeployCheckBenchResult {
  runs: number;
  createWallMs: number;
  /** `cairn deploy check` process start → exit. */
  checkWallMs: number;
  /** Runs in flight the check read (ours and any other the database holds). */
  checked: number;
  runsPerSec: number;
  /** Our runs it listed as diverging, and how many should be (keys ending in 0). */
  diverging: number;
  expectedDiverging: number;
  /** Runs not ours it listed (a workflow the changed folder lacks). */
  otherDiverging: number;
  exitCode: number;
  /** CPU seconds over the check: the CLI process (with its children), the server, the bench database's backends. */
  cliCpuSeconds: number;
  serverCpuSeconds: number;
  postgresCpuSeconds: number;
  /** Busy share of the whole machine during the check (everything on it, other work included). */
  machineBusyShare: number;
  failures: string[];
}

export async function deployCheckThroughput(
  client: CairnClient,
  probe: BenchProbe,
  server: ServerProcess,
  options: { runs: number; concurrency: number; signal: AbortSignal; log: (message: string) => void },
): Promise<DeployCheckBenchResult> {
  const tag = randomBytes(3).toString("hex");
  const prefix = `deploy-${tag}-`;
  const metadata = { bench_deploy_check: tag };
  const failures: string[] = [];
  const ours = new Map<string, number>();
  const begin = performance.now();
  failures.push(
    ...(await inParallel(options.runs, options.concurrency, options.signal, async (i) => {
      const { runId } = await client.createRun(EVENT_WORKFLOW, { key: `${prefix}${i}` }, { eagerStart: true, metadata });
      ours.set(runId, i);
    })),
  );
  const createWallMs = performance.now() - begin;
  const parked = await awaitStatus(probe, { keyPrefix: prefix }, options.runs, "waiting", 300_000, options.signal, 500);
  if (!parked.reached) failures.push(`not all runs parked: ${JSON.stringify(parked.counts)}`);
  options.log(`deploy check: ${options.runs} runs parked (created in ${(createWallMs / 1000).toFixed(1)} s); cairn deploy check --workflow-dirs ${changedWorkflowDir}`);

  try {
    const cpu = await watchCpu([server], probe);
    // cutime + cstime of this process: the CPU of the children it reaped, so the CLI's once it exited.
    const reapedBefore = (await processStat(process.pid))?.childrenCpuSeconds ?? Number.NaN;
    const checkBegin = performance.now();
    const { stdout, exitCode } = await cli(["deploy", "check", "--json", "--url", server.url, "--workflow-dirs", changedWorkflowDir]);
    const checkWallMs = performance.now() - checkBegin;
    const cliCpuSeconds = ((await processStat(process.pid))?.childrenCpuSeconds ?? Number.NaN) - reapedBefore;
    const shares = await cpu.stop();
    const report = JSON.parse(stdout) as { checked: number; diverging: { runId: string; problem: string }[] };
    const listed = report.diverging.filter((d) => ours.has(d.runId));
    const wrong = listed.filter((d) => (ours.get(d.runId) ?? 1) % 10 !== 0);
    const expectedDiverging = [...ours.values()].filter((i) => i % 10 === 0).length;
    if (exitCode !== 1) failures.push(`deploy check exited ${exitCode}, not 1`);
    if (listed.length !== expectedDiverging || wrong.length > 0) failures.push(`listed ${listed.length} of our runs (${wrong.length} wrongly), expected ${expectedDiverging}`);
    if (listed.some((d) => !/"e" \(event_wait_started\).*"lookup" \(step\)/.test(d.problem))) failures.push(`a divergence names the wrong entries: ${listed[0]?.problem}`);
    if (report.checked < options.runs) failures.push(`checked ${report.checked} runs, fewer than the ${options.runs} parked`);
    return {
      runs: options.runs,
      createWallMs,
      checkWallMs,
      checked: report.checked,
      runsPerSec: report.checked / (checkWallMs / 1000),
      diverging: listed.length,
      expectedDiverging,
      otherDiverging: report.diverging.length - listed.length,
      exitCode,
      cliCpuSeconds,
      serverCpuSeconds: shares.servers[0]?.cpuSeconds ?? Number.NaN,
      postgresCpuSeconds: shares.postgresBenchDb.cpuSeconds,
      machineBusyShare: shares.machine.share,
      failures,
    };
  } finally {
    // Leave nothing in flight for the sections after this one.
    const started = await client.startBatch({ filter: { metadata }, operation: "cancel", reason: "bench" });
    if (!started.dryRun) {
      for (let batch = started.batch; batch.status === "running" && !options.signal.aborted; batch = await client.getBatch(batch.batchId)) await sleep(50);
    }
  }
}

/** Runs the `cairn` CLI from this checkout (its launcher runs the sources through tsx) and returns its output and exit code. */
async function cli(args: readonly string[]): Promise<{ stdout: string; exitCode: number }> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  try {
    // BENCH_DEPLOY_CHECK_PROFILE=DIR: the CLI writes a V8 CPU profile there (open it in Chrome's DevTools).
    const profile = process.env.BENCH_DEPLOY_CHECK_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_DEPLOY_CHECK_PROFILE] : [];
    const { stdout } = await run(process.execPath, [...profile, "cli/cairn.mjs", ...args], { cwd: repoRoot, env, maxBuffer: 256 * 1024 * 1024, timeout: 600_000 });
    return { stdout, exitCode: 0 };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number" || !failed.stdout) throw new Error(`cairn ${args.join(" ")}: ${failed.stderr ?? String(error)}`);
    return { stdout: failed.stdout, exitCode: failed.code };
  }
}
