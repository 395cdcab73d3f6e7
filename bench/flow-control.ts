/**
 * Flow control's cost: W1 (10-step runs, the W1 concurrency in flight) over bench_steps against the same over
 * bench_steps_keyed (a concurrency key, limit 64, so every run passes the claim gate), in one run, alternating
 * rounds so a burst of load elsewhere hits both alike. Goal: keyed within 15% of plain (docs/flow-control.md).
 */
import type { CairnClient } from "../sdk/client.js";
import { runThroughput, stepsPerSecond, type ThroughputResult } from "./workload.js";

export interface FlowControlResult {
  rounds: number;
  plain: ThroughputResult[];
  keyed: ThroughputResult[];
}

export async function flowControlThroughput(
  clients: readonly CairnClient[],
  options: { runs: number; steps: number; concurrency: number; rounds: number; signal: AbortSignal; log: (line: string) => void },
): Promise<FlowControlResult> {
  const result: FlowControlResult = { rounds: options.rounds, plain: [], keyed: [] };
  const base = { runs: options.runs, steps: options.steps, concurrency: options.concurrency, clients, runTimeoutMs: 300_000, signal: options.signal };
  // Warm-up of the keyed path (its first claims, the gate's plans), unmeasured.
  await runThroughput({ ...base, runs: Math.min(200, options.runs), workflowName: "bench_steps_keyed" });
  for (let round = 1; round <= options.rounds && !options.signal.aborted; round++) {
    const plain = await runThroughput(base);
    options.log(`flow control round ${round}: plain ${stepsPerSecond(plain).toFixed(0)} steps/s`);
    const keyed = await runThroughput({ ...base, workflowName: "bench_steps_keyed" });
    options.log(`flow control round ${round}: keyed (limit 64) ${stepsPerSecond(keyed).toFixed(0)} steps/s`);
    result.plain.push(plain);
    result.keyed.push(keyed);
  }
  return result;
}

/** Median steps/s of each, and keyed / plain. */
export function flowControlSummary(result: FlowControlResult): { plain: number; keyed: number; ratio: number; failed: number } {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const plain = median(result.plain.map(stepsPerSecond));
  const keyed = median(result.keyed.map(stepsPerSecond));
  const failed = [...result.plain, ...result.keyed].reduce((n, r) => n + r.failures.length, 0);
  return { plain, keyed, ratio: plain > 0 ? keyed / plain : 0, failed };
}
