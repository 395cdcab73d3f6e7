// Benchmark workflow: bench_steps (ten-steps.ts) with a concurrency key, limit 64: every run is claimed through
// flow control's gate (no eager start), so W1 over it against W1 over bench_steps is flow control's cost.
import { defineWorkflow } from "@cairnjs/sdk/workflow";

export const benchStepsKeyed = defineWorkflow<{ steps?: number; key?: string }, { steps: number; sum: number }>({
  name: "bench_steps_keyed",
  concurrency: { limit: 64, key: (input) => input.key ?? "bench" },
  handler: async (input, ctx) => {
    const steps = input.steps ?? 10;
    let sum = 0;
    for (let i = 0; i < steps; i++) {
      const result = await ctx.step(`step-${i}`, () => ({ index: i, value: i * 2, ok: true }));
      sum += result.value;
    }
    return { steps, sum };
  },
});
