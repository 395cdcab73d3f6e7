// The design's own example: collect data, let it settle durably, then hand
// the writing to an agent worker (see examples/agent-worker.ts) and wait for
// its answer. The run holds no server memory while it sleeps or waits.
import { z } from "zod";
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "nightly_report";

export const Input = z.object({
  channel: z.string().min(1),
  topic: z.string().min(1),
  /** How long the data settles before the report is written (default 30 s). */
  settle: z.string().default("30s"),
});

export async function handler(input: z.infer<typeof Input>, ctx: WorkflowContext) {
  const data = await ctx.step("collect", () => ({ topic: input.topic, collectedAt: new Date().toISOString() }));
  await ctx.sleep("settle", input.settle);
  const report = await ctx.runAgent("summarize", { text: `Write a short report about ${data.topic}`, channel: input.channel });
  return { channel: input.channel, report };
}
