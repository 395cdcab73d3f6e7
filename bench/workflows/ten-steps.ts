// Benchmark workflow: `steps` (default 10) sequential steps, each journaling a
// small JSON object, then a summary. Used by `npm run bench`; it does nothing
// but exercise the journal, so its throughput is the engine's overhead.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_steps";

export interface BenchInput {
  steps?: number;
}

export async function handler(input: BenchInput, ctx: WorkflowContext) {
  const steps = input.steps ?? 10;
  let sum = 0;
  for (let i = 0; i < steps; i++) {
    const result = await ctx.step(`step-${i}`, () => ({ index: i, value: i * 2, ok: true }));
    sum += result.value;
  }
  return { steps, sum };
}
