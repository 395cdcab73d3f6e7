// chaos_agent: an agent turn served by the chaos agent worker processes, between steps.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import { type AgentInput, agentName, agentText } from "../model.js";
import { ledgerStep } from "./_ledger.js";

export const WORKFLOW_NAME = "chaos_agent";

export async function handler(input: AgentInput, ctx: WorkflowContext) {
  const prompt = await ledgerStep(ctx, input.seed, "prompt");
  const answer = await ctx.runAgent("ask", { agent: agentName, text: agentText(input.seed, input.text) });
  await ctx.sleep("nap", 200);
  const record = await ledgerStep(ctx, input.seed, "record");
  return { kind: "agent", answer, values: [prompt, record] };
}
