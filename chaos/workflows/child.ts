// chaos_child: started by chaos_parent and chaos_mixed; a few steps around a sleep.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import type { ChildInput } from "../model.js";
import { ledgerStep } from "./_ledger.js";

export const WORKFLOW_NAME = "chaos_child";

export async function handler(input: ChildInput, ctx: WorkflowContext) {
  const values: string[] = [];
  for (let n = 0; n < input.steps; n++) values.push(await ledgerStep(ctx, input.seed, `c${n}`));
  await ctx.sleep("nap", input.napMs);
  values.push(await ledgerStep(ctx, input.seed, "done"));
  return { kind: "child", values };
}
