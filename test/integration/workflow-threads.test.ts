/**
 * The workflow thread pool on its own, with an in-memory host: activations handed to it in one turn (a claimed
 * batch) spread over its threads, as each goes to the thread with the fewest activations; and a group commit whose
 * items come from activations on several threads waits for every thread's answer, so one statement carries them all.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Batcher } from "../../server/store/batcher.js";
import type { ActivationHost } from "../../server/core/host.js";
import type { NewEntry } from "../../server/core/journal.js";
import { createLogger } from "../../server/logger.js";
import { WorkflowThreads } from "../../server/worker/threads/workflow-threads.js";
import type { WorkflowRegistry } from "../../server/workflows/registry.js";

let pool: WorkflowThreads;

beforeAll(async () => {
  // A generous cap on the wait for the threads' answers: a slow machine must not split a statement in this test.
  pool = new WorkflowThreads({ workflowDirs: ["test/fixtures/thread-workflows"], threads: 2, blockedCodeMs: 5000, heapMb: 256, gatherCapMs: 2000, logger: createLogger("silent") });
  await pool.start();
});

afterAll(async () => {
  await pool?.close();
});

/** A host that keeps the journal in memory; the workflow under test only appends. */
function memoryHost(appended: NewEntry[], write: (entry: NewEntry) => Promise<void> = async () => undefined): ActivationHost {
  const unused = async (): Promise<never> => {
    throw new Error("not used by this workflow");
  };
  const muted = () => undefined;
  return {
    signal: new AbortController().signal,
    logger: { debug: muted, info: muted, warn: muted, error: muted },
    now: () => new Date(),
    append: async (entry) => {
      await write(entry);
      appended.push(entry);
    },
    findEvent: unused,
    startChild: unused,
    startAgentTurn: unused,
    findTurnOutcome: unused,
    findChildOutcome: unused,
    suspend: unused,
  };
}

test("activations started in one turn spread over the threads", async () => {
  const journals = Array.from({ length: 8 }, () => [] as NewEntry[]);
  const outcomes = await Promise.all(
    journals.map((appended, i) =>
      pool.run(
        { run: { runId: `run-${i}`, workflowName: "which_thread", input: {}, createdAt: new Date() }, journal: [], host: memoryHost(appended), leaseValidUntil: () => Date.now() + 60_000 },
        undefined as unknown as WorkflowRegistry,
      ),
    ),
  );
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), Array(8).fill("completed"));
  const perThread = new Map<number, number>();
  for (const appended of journals) {
    const step = appended.find((entry) => entry.kind === "step_completed");
    assert.ok(step && step.kind === "step_completed");
    const { threadId } = step.result as { threadId: number };
    perThread.set(threadId, (perThread.get(threadId) ?? 0) + 1);
  }
  assert.deepEqual([...perThread.values()], [4, 4], `activations per thread: ${JSON.stringify([...perThread])}`);
});

test("a group commit waits for every thread: the appends one commit resumed, on both threads, share the next statement", async () => {
  const statements: number[] = [];
  // A group commit as the store's, gathering as the server has it gather with threads; each statement takes 5 ms.
  const commits = new Batcher<NewEntry, undefined>(async (entries) => {
    statements.push(entries.length);
    await new Promise((resolve) => setTimeout(resolve, 5));
    return entries.map(() => undefined);
  });
  commits.gatherWith(pool.gather);
  const runs = 8;
  const outcomes = await Promise.all(
    Array.from({ length: runs }, (_, i) =>
      pool.run(
        { run: { runId: `steps-${i}`, workflowName: "five_steps", input: {}, createdAt: new Date() }, journal: [], host: memoryHost([], (entry) => commits.submit(entry)), leaseValidUntil: () => Date.now() + 60_000 },
        undefined as unknown as WorkflowRegistry,
      ),
    ),
  );
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), Array(runs).fill("completed"));
  // Each step's appends of all eight runs (four on each thread) in one statement; one turn of the main thread
  // (the gathering without threads) split them by thread.
  assert.deepEqual(statements, Array(5).fill(runs));
});
