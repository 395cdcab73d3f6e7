// chaos_parent: one child started and awaited later (startWorkflow + waitForWorkflow), one run to the end
// in between (runWorkflow).
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import { type ParentInput, parentChildInputs } from "../model.js";
import { ledgerStep } from "./_ledger.js";

export const WORKFLOW_NAME = "chaos_parent";

export async function handler(input: ParentInput, ctx: WorkflowContext) {
  const children = parentChildInputs(input);
  const prepare = await ledgerStep(ctx, input.seed, "prepare");
  const idA = await ctx.startWorkflow("a", "chaos_child", children.a);
  const b = await ctx.runWorkflow("b", "chaos_child", children.b);
  const a = await ctx.waitForWorkflow("a-done", idA);
  const combine = await ledgerStep(ctx, input.seed, "combine");
  return { kind: "parent", a, b, values: [prepare, combine] };
}
