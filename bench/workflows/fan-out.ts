// Benchmark workflow: starts `children` (default 100) runs of bench_child at
// once (Promise.all over ctx.runWorkflow) and returns when all have ended.
// Used by `npm run bench` for child fan-out: parent created → parent
// COMPLETED, and children per second.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import { WORKFLOW_NAME as CHILD_WORKFLOW } from "./child.js";

export const WORKFLOW_NAME = "bench_fan_out";

export interface FanOutInput {
  children?: number;
}

export async function handler(input: FanOutInput, ctx: WorkflowContext) {
  const count = input.children ?? 100;
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) => ctx.runWorkflow<{ index: number }>(`child-${i}`, CHILD_WORKFLOW, { index: i })),
  );
  return { children: results.length, sum: results.reduce((total, r) => total + r.index, 0) };
}
