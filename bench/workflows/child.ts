// Benchmark workflow: one step, then return. The child of bench_fan_out.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_child";

export interface ChildInput {
  index?: number;
}

export async function handler(input: ChildInput, ctx: WorkflowContext) {
  return ctx.step("only", () => ({ index: input.index ?? 0 }));
}
