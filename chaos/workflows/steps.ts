// chaos_steps: sequential steps, a Promise.all of parallel steps, a durable sleep, a last step.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import type { StepsInput } from "../model.js";
import { ledgerStep } from "./_ledger.js";

export const WORKFLOW_NAME = "chaos_steps";

export async function handler(input: StepsInput, ctx: WorkflowContext) {
  const seq: string[] = [];
  for (let n = 0; n < input.steps; n++) seq.push(await ledgerStep(ctx, input.seed, `s${n}`));
  const par = await Promise.all(Array.from({ length: input.parallel }, (_, n) => ledgerStep(ctx, input.seed, `p${n}`)));
  await ctx.sleep("nap", input.napMs);
  const last = await ledgerStep(ctx, input.seed, "last");
  return { kind: "steps", seq, par, last };
}
