import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../server/config.js";
import { defaultWorkflowThreads } from "../../server/worker/threads/workflow-threads.js";

describe("the default number of workflow threads", () => {
  it("leaves the main thread a core of its own: one per core but one, at least one, at most four", () => {
    expect([1, 2, 3, 4, 5, 8, 64].map((cores) => defaultWorkflowThreads(cores))).toEqual([1, 1, 2, 3, 4, 4, 4]);
  });

  it("is what CAIRN_WORKFLOW_THREADS defaults to, and the variable still overrides it", () => {
    expect(loadConfig({}).workflowThreads).toBe(Math.max(1, Math.min(4, availableParallelism() - 1)));
    expect(loadConfig({ CAIRN_WORKFLOW_THREADS: "3" }).workflowThreads).toBe(3);
    expect(loadConfig({ CAIRN_WORKFLOW_THREADS: "0" }).workflowThreads).toBe(0);
  });
});
