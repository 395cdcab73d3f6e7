// The "new code" of the deploy-check bench (bench/deploy-check.ts): bench_event_wait (bench/workflows/event-wait.ts)
// changed so that runs whose key ends in 0 look the key up before they wait. Runs of it already parked on the
// event have no such step in their journal: exactly those would diverge, and `cairn deploy check` must list them.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_event_wait";
export const EVENT_TYPE = "bench.go";

export async function handler(input: { key: string }, ctx: WorkflowContext) {
  if (input.key.endsWith("0")) await ctx.step("lookup", () => ({ key: input.key }));
  const payload = await ctx.waitForEvent("e", EVENT_TYPE, input.key);
  return ctx.step("after", () => ({ key: input.key, payload }));
}
