// Benchmark workflow: `steps` (default 50) sequential steps, each sleeping
// `stepMs` (default 20) inside the step, so journal entries are written at a
// steady pace. Used by `npm run bench` for the watch delay: journal write →
// arrival at WatchRun watchers. With `gate`, the run first parks on the event
// (bench.watch.go, gate), so watchers can subscribe before any step is written.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_watched";
export const GATE_EVENT = "bench.watch.go";

export interface WatchedInput {
  steps?: number;
  stepMs?: number;
  gate?: string;
}

export async function handler(input: WatchedInput, ctx: WorkflowContext) {
  const steps = input.steps ?? 50;
  const stepMs = input.stepMs ?? 20;
  if (input.gate) await ctx.waitForEvent("gate", GATE_EVENT, input.gate);
  for (let i = 0; i < steps; i++) {
    await ctx.step(`step-${i}`, async () => {
      await new Promise((resolve) => setTimeout(resolve, stepMs));
      return { index: i };
    });
  }
  return { steps };
}
