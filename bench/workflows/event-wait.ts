// Benchmark workflow: park on one event keyed by `input.key`, then one step.
// Used by `npm run bench` for event → resume latency and for parked-run
// memory (many runs waiting on distinct keys).
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_event_wait";
export const EVENT_TYPE = "bench.go";

export interface EventWaitInput {
  key: string;
}

export async function handler(input: EventWaitInput, ctx: WorkflowContext) {
  const payload = await ctx.waitForEvent("e", EVENT_TYPE, input.key);
  return ctx.step("after", () => ({ key: input.key, payload }));
}
