// chaos_events: two waits for events the chaos driver sends (one usually before the wait starts, one at a
// random moment), and a wait on a key nobody sends to, which must time out (null).
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import { eventTypes, type EventsInput } from "../model.js";
import { ledgerStep } from "./_ledger.js";

export const WORKFLOW_NAME = "chaos_events";

export async function handler(input: EventsInput, ctx: WorkflowContext) {
  const before = await ledgerStep(ctx, input.seed, "before");
  const first = await ctx.waitForEvent("first", eventTypes.first, input.key);
  const ghost = await ctx.waitForEvent("ghost", eventTypes.ghost, input.key, { timeout: "300ms" });
  const between = await ledgerStep(ctx, input.seed, "between");
  await ctx.sleep("nap", input.napMs);
  // The timeout is far beyond any chaos run: if it fires, the output is wrong and the checker says so.
  const second = await ctx.waitForEvent("second", eventTypes.second, input.key, { timeout: "1h" });
  const after = await ledgerStep(ctx, input.seed, "after");
  return { kind: "events", first, ghost, second, values: [before, between, after] };
}
