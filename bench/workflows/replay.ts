// Benchmark workflow: `steps` sequential steps; then, with `key`, park on the
// event (bench.replay.go, key) and run one more step. Used by `npm run bench`
// for per-step cost as runs grow (10, 100, 1,000 steps, no key) and for a
// long run resumed after a server restart: the new process must load and
// replay every step before the event's activation journals the step "after".
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_replay";
export const EVENT_TYPE = "bench.replay.go";

export interface ReplayInput {
  steps: number;
  key?: string;
}

export async function handler(input: ReplayInput, ctx: WorkflowContext) {
  for (let i = 0; i < input.steps; i++) {
    await ctx.step(`step-${i}`, () => ({ index: i }));
  }
  if (input.key === undefined) return { steps: input.steps };
  await ctx.waitForEvent("go", EVENT_TYPE, input.key);
  return ctx.step("after", () => ({ steps: input.steps, resumed: true }));
}
