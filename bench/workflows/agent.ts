// Benchmark workflow: one agent turn for agent "bench" (served by
// bench/agent-worker-process.ts, which answers at once), then return. Used by
// `npm run bench` for the agent turn round trip through a real worker process.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "bench_agent";
export const AGENT = "bench";

export async function handler(_input: Record<string, never>, ctx: WorkflowContext) {
  return ctx.runAgent("ask", { agent: AGENT, text: "hi" });
}
