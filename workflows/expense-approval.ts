// Event or deadline, the canonical durable-wait pattern: an expense waits for
// a manager's decision (sent with SendEvent, correlation id = the expense id)
// but escalates if none arrives in time. The run holds no memory while it
// waits; a server restart in between changes nothing.
import { z } from "zod";
import type { WorkflowContext } from "@cairnjs/sdk/workflow";

export const WORKFLOW_NAME = "expense_approval";

export const Input = z.object({
  expenseId: z.string().min(1),
  amountCents: z.number().int().positive(),
  /** How long the manager has, e.g. "2d" (short values make demos quick). */
  decideWithin: z.string().default("2d"),
});

type Decision = { approved: boolean; by: string };

export async function handler(input: z.infer<typeof Input>, ctx: WorkflowContext) {
  await ctx.step("notify-manager", () => ({ notified: true, expenseId: input.expenseId }));

  const decision = await Promise.race([
    ctx.waitForEvent<Decision>("decision", "expense.decided", input.expenseId),
    ctx.sleep("deadline", input.decideWithin).then(() => null),
  ]);

  if (!decision) {
    await ctx.step("escalate", () => ({ escalatedTo: "finance", expenseId: input.expenseId }));
    return { expenseId: input.expenseId, outcome: "escalated" };
  }
  if (decision.approved) await ctx.step("pay-out", ({ idempotencyKey }) => ({ transfer: `tr_${idempotencyKey.slice(0, 8)}` }));
  return { expenseId: input.expenseId, outcome: decision.approved ? "approved" : "rejected", by: decision.by };
}
