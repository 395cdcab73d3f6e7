// chaos_mixed: everything in one run: a step, a sleep, then an agent turn, a child and an event wait at once
// (Promise.all), parallel steps, a final step.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import { agentName, agentText, eventTypes, type MixedInput, mixedChildInput } from "../model.js";
import { ledgerStep } from "./_ledger.js";

export const WORKFLOW_NAME = "chaos_mixed";

export async function handler(input: MixedInput, ctx: WorkflowContext) {
  const start = await ledgerStep(ctx, input.seed, "start");
  await ctx.sleep("nap", input.napMs);
  const [answer, child, signal] = await Promise.all([
    ctx.runAgent("ask", { agent: agentName, text: agentText(input.seed, input.text) }),
    ctx.runWorkflow("child", "chaos_child", mixedChildInput(input)),
    ctx.waitForEvent("signal", eventTypes.signal, input.key),
  ]);
  const [x, y] = await Promise.all([ledgerStep(ctx, input.seed, "x"), ledgerStep(ctx, input.seed, "y")]);
  const end = await ledgerStep(ctx, input.seed, "end");
  return { kind: "mixed", answer, child, signal, values: [start, x, y, end] };
}
