// chaos_poison: workflow code that would take its server down were it not contained: a handler or a step that never
// yields, a rejection left unhandled, a memory blow-up. Each run must end PAUSED by the poison-run breaker with a
// reason naming its cause, while the rest of the workload runs undisturbed on the same servers.
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import type { PoisonInput } from "../model.js";

export const WORKFLOW_NAME = "chaos_poison";

// (No ledger steps: the checker reads every journaled step as a ledger step; the poison runs are checked apart.)
export async function handler(input: PoisonInput, ctx: WorkflowContext) {
  switch (input.how) {
    case "spin_handler":
      for (;;) {
        // Never yields.
      }
    case "spin_step":
      return ctx.step("spin", () => {
        for (;;) {
          // Never yields.
        }
      });
    case "unhandled_rejection":
      return ctx.step("reject", async () => {
        void Promise.reject(new Error("chaos: nobody handles this"));
        await new Promise((resolve) => setTimeout(resolve, 100));
        return "unreachable";
      });
    case "memory":
      return ctx.step("hog", () => {
        const hoard: number[][] = [];
        // 8 MB a turn: the heap limit comes long before the watchdog's.
        for (;;) hoard.push(new Array(1_000_000).fill(hoard.length));
      });
  }
}
