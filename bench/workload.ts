/**
 * W1, step throughput: N runs of bench_steps (S sequential steps each), at
 * most C in flight, through the SDK over a real socket. Each of the C
 * workers loops: createRun(eager_start) → waitForResult() (AwaitRun, a long
 * poll that answers when the run ends). With several servers, worker i
 * talks to server i mod k, so the runs are split evenly and each run is
 * created, executed and awaited on one server (eager start claims it where
 * it was created). steps/s = completed runs × S ÷ wall time from the first
 * create to the last result.
 */
import { performance } from "node:perf_hooks";
import type { CairnClient } from "../sdk/client.js";
import { WORKFLOW_NAME } from "./workflows/ten-steps.js";

export interface ThroughputOptions {
  runs: number;
  steps: number;
  concurrency: number;
  /** One per server; worker i uses clients[i % clients.length]. */
  clients: readonly CairnClient[];
  /** A run not finished after this long counts as failed. */
  runTimeoutMs: number;
  signal: AbortSignal;
  /** Default bench_steps; the flow-control comparison runs bench_steps_keyed the same way. */
  workflowName?: string;
}

export interface ThroughputResult {
  runs: number;
  steps: number;
  concurrency: number;
  servers: number;
  wallMs: number;
  completed: number;
  /** createRun sent → waitForResult resolved, ms, ascending. */
  latenciesMs: number[];
  failures: string[];
}

export async function runThroughput(options: ThroughputOptions): Promise<ThroughputResult> {
  const latencies: number[] = [];
  const failures: string[] = [];
  let next = 0;

  const worker = async (client: CairnClient): Promise<void> => {
    while (next < options.runs && !options.signal.aborted) {
      next++;
      const started = performance.now();
      try {
        const run = await client.createRun(options.workflowName ?? WORKFLOW_NAME, { steps: options.steps }, { eagerStart: true });
        await run.waitForResult({ timeoutMs: options.runTimeoutMs, signal: options.signal });
        latencies.push(performance.now() - started);
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error));
      }
    }
  };

  const begin = performance.now();
  const workers = Math.min(options.concurrency, options.runs);
  await Promise.all(Array.from({ length: workers }, (_, i) => worker(options.clients[i % options.clients.length] as CairnClient)));
  const wallMs = performance.now() - begin;
  return {
    runs: options.runs,
    steps: options.steps,
    concurrency: options.concurrency,
    servers: options.clients.length,
    wallMs,
    completed: latencies.length,
    latenciesMs: latencies.sort((a, b) => a - b),
    failures,
  };
}

export function stepsPerSecond(result: ThroughputResult): number {
  return (result.completed * result.steps) / (result.wallMs / 1000);
}

/** Unmeasured runs so connections, JIT and the servers' first queries stay out of the figures. */
export async function warmUpThroughput(clients: readonly CairnClient[], steps: number, signal: AbortSignal): Promise<void> {
  const result = await runThroughput({ runs: 16 * clients.length, steps, concurrency: 8 * clients.length, clients, runTimeoutMs: 30_000, signal });
  if (result.failures.length > 0) throw new Error(`warm-up failed: ${result.failures.slice(0, 3).join("; ")}`);
}
