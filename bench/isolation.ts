/**
 * The price of workflow isolation (issue 12): the same workloads on server T, which runs workflow code on its default
 * pool of worker threads, and on server I, which runs it on its main thread (CAIRN_WORKFLOW_THREADS=0, as before
 * isolation existed). Two separate bench runs on this shared machine differ by more than the price itself, so both
 * servers run in one bench run and take turns: each round runs W1 on T and on I, then W2 on both, then W3 on both, the
 * first of each pair swapping every round so neither always goes first after a burst of load elsewhere.
 *
 * Before the measured rounds, warm-up rounds run W1 on both, uncounted: a server's first W1 rounds after its start run
 * code the JIT has not finished optimizing, T's longer than I's (two isolates to optimize), and its CPU per step falls
 * for tens of thousands of steps. Without them the first measured round priced T's warm-up, not isolation. Their
 * figures are kept and printed as the cold figures. An even number of measured rounds lets each server go first as
 * often as the other (the server going first in a round follows the other server's latency series and the vacuum).
 *
 * Each server has a fresh database of its own: servers claim runs from their database's queue, so two servers on one
 * database would execute each other's runs. Both databases are dropped at the end, whatever happened.
 */
import { readdir } from "node:fs/promises";
import { loadavg } from "node:os";
import { defaultWorkflowThreads } from "../server/worker/threads/workflow-threads.js";
import type { CairnClient } from "../sdk/client.js";
import { type HttpVersion, sdkClient } from "./client.js";
import { type Admin, BenchProbe, urlForDatabase } from "./database.js";
import { eventLatency, type EventLatencyResult, startLatency, type StartLatencyResult, warmUpLatency } from "./latency.js";
import { percentile } from "./stats.js";
import { type CpuShares, watchCpu } from "./resources.js";
import { ServerProcess, type ServerSettings } from "./server.js";
import { runThroughput, stepsPerSecond, type ThroughputResult, warmUpThroughput } from "./workload.js";

export type IsolationSideName = "T" | "I";

export interface IsolationSide {
  name: IsolationSideName;
  /** The workflow threads the server ran with (0: workflow code on the main thread). */
  workflowThreads: number;
  /** OS threads of the server process after the warm-up (/proc/<pid>/task): T's minus I's shows the pool exists. */
  osThreads: number;
  w1: { result: ThroughputResult; cpu: CpuShares }[];
  /** The uncounted warm-up rounds of W1, in order. */
  warmupW1: { result: ThroughputResult; cpu: CpuShares }[];
  /**
   * Each with the server's CPU time over the series, seconds: process.cpuUsage() through the probe (microseconds, every
   * thread of the process). W3's includes the GetRun polls until each run is WAITING.
   */
  w2: { result: StartLatencyResult; serverCpuSeconds: number }[];
  w3: { result: EventLatencyResult; serverCpuSeconds: number }[];
}

export interface IsolationResult {
  rounds: number;
  warmupRounds: number;
  runs: number;
  steps: number;
  concurrency: number;
  latencyRuns: number;
  http: HttpVersion;
  /** CAIRN_WORKFLOW_THREADS as set when the bench started: server T does not get it (it measures the default pool). */
  threadsVariableRemovedFromT: string | null;
  /** 1-minute load average when each round started. */
  roundLoads: number[];
  threaded: IsolationSide;
  inThread: IsolationSide;
}

interface Side {
  record: IsolationSide;
  server: ServerProcess;
  client: CairnClient;
  probe: BenchProbe;
}

export async function isolationCost(
  admin: Admin,
  adminUrl: string,
  settings: ServerSettings,
  http: HttpVersion,
  options: { rounds: number; warmupRounds: number; runs: number; steps: number; concurrency: number; latencyRuns: number; signal: AbortSignal; log: (line: string) => void },
): Promise<IsolationResult> {
  const { signal, log } = options;
  /** One W1 round on a server, with the server's and the database's CPU over it. */
  const measuredW1 = async (side: Side) => {
    const cpu = await watchCpu([side.server], side.probe);
    const result = await runThroughput({ runs: options.runs, steps: options.steps, concurrency: options.concurrency, clients: [side.client], runTimeoutMs: 300_000, signal });
    return { result, cpu: await cpu.stop() };
  };
  const inherited = process.env.CAIRN_WORKFLOW_THREADS ?? null;
  const result: IsolationResult = {
    rounds: options.rounds,
    warmupRounds: options.warmupRounds,
    runs: options.runs,
    steps: options.steps,
    concurrency: options.concurrency,
    latencyRuns: options.latencyRuns,
    http,
    threadsVariableRemovedFromT: inherited,
    roundLoads: [],
    threaded: emptySide("T", defaultWorkflowThreads()),
    inThread: emptySide("I", 0),
  };
  const databases: string[] = [];
  const sides: Side[] = [];
  try {
    // T gets the server's default pool even if CAIRN_WORKFLOW_THREADS was set for the bench as a whole.
    for (const [record, threadsEnv] of [
      [result.threaded, undefined],
      [result.inThread, "0"],
    ] as const) {
      const database = await admin.createDatabase();
      databases.push(database);
      const databaseUrl = urlForDatabase(adminUrl, database);
      const name = `server ${record.name}`;
      log(`isolation: starting ${name} on ${database} (${record.workflowThreads === 0 ? "CAIRN_WORKFLOW_THREADS=0" : `default pool of ${record.workflowThreads} workflow threads`})`);
      const server = await ServerProcess.start(name, { ...settings, databaseUrl, env: { CAIRN_WORKFLOW_THREADS: threadsEnv } }, log);
      const probe = await BenchProbe.connect(databaseUrl).catch(async (error: unknown) => {
        await server.close();
        throw error;
      });
      sides.push({ record, server, client: sdkClient(server.url, http), probe });
    }
    if (inherited !== null) log(`isolation: CAIRN_WORKFLOW_THREADS=${inherited} is set for the bench; server T runs without it (the default pool)`);

    for (const side of sides) {
      if (signal.aborted) break;
      await warmUpThroughput([side.client], options.steps, signal);
      await warmUpLatency(side.client, side.probe, signal);
      side.record.osThreads = await osThreads(side.server.pid);
    }
    log(`isolation: OS threads after warm-up: T ${result.threaded.osThreads}, I ${result.inThread.osThreads}`);

    for (let round = 1; round <= options.warmupRounds && !signal.aborted; round++) {
      const order = round % 2 === 1 ? sides : [...sides].reverse();
      for (const side of order) {
        if (signal.aborted) break;
        const w1 = await measuredW1(side);
        side.record.warmupW1.push(w1);
        log(`isolation warm-up round ${round} (not counted): W1 on ${side.record.name}: ${stepsPerSecond(w1.result).toFixed(0)} steps/s, server ${cpuMsPerStep(w1).toFixed(3)} ms CPU/step${failed(w1.result.failures)}`);
      }
    }

    for (let round = 1; round <= options.rounds && !signal.aborted; round++) {
      const load = loadavg()[0] ?? Number.NaN;
      result.roundLoads.push(load);
      // Odd rounds T first, even rounds I first.
      const order = round % 2 === 1 ? sides : [...sides].reverse();
      log(`isolation round ${round}: W1 ${options.runs} runs × ${options.steps} steps, ${options.concurrency} in flight, order ${order.map((s) => s.record.name).join(", ")}, load ${load.toFixed(2)}`);
      for (const side of order) {
        if (signal.aborted) break;
        const w1 = await measuredW1(side);
        side.record.w1.push(w1);
        log(`isolation round ${round}: W1 on ${side.record.name}: ${stepsPerSecond(w1.result).toFixed(0)} steps/s, server ${cpuMsPerStep(w1).toFixed(3)} ms CPU/step, PostgreSQL ${perStepMs(w1, w1.cpu.postgresBenchDb.cpuSeconds).toFixed(3)} ms, client ${perStepMs(w1, w1.cpu.client.cpuSeconds).toFixed(3)} ms, machine busy ${(w1.cpu.machine.share * 100).toFixed(0)} % (stolen ${(w1.cpu.machine.stealShare * 100).toFixed(0)} %)${failed(w1.result.failures)}`);
      }
      // The W1 rows would otherwise set autovacuum off in the middle of the latency series (as before the main W2).
      await Promise.all(sides.map((s) => s.probe.vacuumEngineTables()));
      for (const side of order) {
        if (signal.aborted) break;
        const before = await serverCpuSeconds(side.server);
        const w2 = await startLatency(side.client, { runs: options.latencyRuns, signal });
        side.record.w2.push({ result: w2, serverCpuSeconds: (await serverCpuSeconds(side.server)) - before });
        log(`isolation round ${round}: W2 on ${side.record.name}: p50 ${p(w2.latenciesMs, 50)} ms, p99 ${p(w2.latenciesMs, 99)} ms${failed(w2.failures)}`);
      }
      for (const side of order) {
        if (signal.aborted) break;
        const before = await serverCpuSeconds(side.server);
        const w3 = await eventLatency(side.client, side.probe, { runs: options.latencyRuns, signal, tag: `iso-${side.record.name}-${round}` });
        side.record.w3.push({ result: w3, serverCpuSeconds: (await serverCpuSeconds(side.server)) - before });
        log(`isolation round ${round}: W3 on ${side.record.name}: p50 ${p(w3.latenciesMs, 50)} ms, p99 ${p(w3.latenciesMs, 99)} ms${failed(w3.failures)}`);
      }
      const t = result.threaded.w1[round - 1];
      const i = result.inThread.w1[round - 1];
      if (t && i) log(`isolation round ${round}: W1 T/I ${(stepsPerSecond(t.result) / stepsPerSecond(i.result)).toFixed(3)}`);
    }
    return result;
  } finally {
    await Promise.all(sides.map((s) => s.server.close()));
    await Promise.all(sides.map((s) => s.probe.close().catch(() => undefined)));
    for (const database of databases) {
      try {
        await admin.dropDatabase(database);
        log(`isolation: dropped ${database}`);
      } catch (error) {
        log(`isolation: could not drop ${database}: ${(error as Error).message}`);
      }
    }
  }
}

function emptySide(name: IsolationSideName, workflowThreads: number): IsolationSide {
  return { name, workflowThreads, osThreads: Number.NaN, w1: [], warmupW1: [], w2: [], w3: [] };
}

/** /proc counts CPU in 10 ms ticks, too coarse for 100 one-at-a-time runs. */
async function serverCpuSeconds(server: ServerProcess): Promise<number> {
  return (await server.probe(false)).cpuMicros / 1e6;
}

async function osThreads(pid: number): Promise<number> {
  try {
    return (await readdir(`/proc/${pid}/task`)).length;
  } catch {
    return Number.NaN;
  }
}

function p(sorted: readonly number[], rank: number): string {
  return percentile(sorted, rank).toFixed(2);
}

function cpuMsPerStep(w1: { result: ThroughputResult; cpu: CpuShares }): number {
  return ((w1.cpu.servers[0]?.cpuSeconds ?? Number.NaN) * 1000) / Math.max(1, w1.result.completed * w1.result.steps);
}

/** CPU seconds over a W1 round, per step, in ms. */
function perStepMs(w1: { result: ThroughputResult }, cpuSeconds: number): number {
  return (cpuSeconds * 1000) / Math.max(1, w1.result.completed * w1.result.steps);
}

function failed(failures: readonly string[]): string {
  return failures.length > 0 ? `; ${failures.length} FAILED (${failures[0]})` : "";
}
