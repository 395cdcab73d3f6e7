// Benchmark workflow: one durable timer of `input.ms` milliseconds, then
// return. Used by `npm run bench` to measure timer lateness: the journal's
// timer_fired created_at minus its timer_started fire_at.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_sleep";

export interface SleepInput {
  ms: number;
}

export async function handler(input: SleepInput, ctx: WorkflowContext) {
  await ctx.sleep("nap", input.ms);
  return { slept: input.ms };
}
