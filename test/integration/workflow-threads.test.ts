/**
 * The workflow thread pool on its own, with an in-memory host: activations handed to it in one turn (a claimed
 * batch) spread over its threads, as each goes to the thread with the fewest activations; and a group commit whose
 * items come from activations on several threads waits for every thread's answer, so one statement carries them all.
 * On a thread, appends run ahead of their commit; the rest of this file checks that nothing the code does next
 * outruns the commit (a step's function, a host call, the run's end) and that a failed append aborts the activation.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Batcher } from "../../server/store/batcher.js";
import type { ActivationHost } from "../../server/core/host.js";
import { appendOnlyHost } from "../support/append-only-host.js";
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

test("activations started in one turn spread over the threads", async () => {
  const journals = Array.from({ length: 8 }, () => [] as NewEntry[]);
  const outcomes = await Promise.all(
    journals.map((appended, i) =>
      pool.run(
        { run: { runId: `run-${i}`, workflowName: "which_thread", input: {}, createdAt: new Date() }, journal: [], host: appendOnlyHost(appended), leaseValidUntil: () => Date.now() + 60_000 },
        undefined as unknown as WorkflowRegistry,
      ),
    ),
  );
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), Array(8).fill("completed"));
  const perThread = new Map<number, number>();
  for (const [i, appended] of journals.entries()) {
    // The step's entry went to the host, or (when the end followed it in the thread's same message) rides on the end.
    const outcome = outcomes[i];
    const riding = outcome?.kind === "completed" ? (outcome.deferred ?? []) : [];
    const step = [...appended, ...riding].find((entry) => entry.kind === "step_completed");
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
        { run: { runId: `steps-${i}`, workflowName: "five_steps", input: {}, createdAt: new Date() }, journal: [], host: appendOnlyHost([], (entry) => commits.submit(entry)), leaseValidUntil: () => Date.now() + 60_000 },
        undefined as unknown as WorkflowRegistry,
      ),
    ),
  );
  assert.deepEqual(outcomes.map((outcome) => outcome.kind), Array(runs).fill("completed"));
  // Each step's appends of all eight runs (four on each thread) in one statement; one turn of the main thread
  // (the gathering without threads) split them by thread. The fifth step rides on each run's end (not written here).
  assert.deepEqual(statements, Array(4).fill(runs));
});

/** Now, in ms since the epoch with sub-millisecond precision: comparable with what a workflow thread reads. */
const now = () => performance.timeOrigin + performance.now();

/** Appends that take `ms` to commit, each noting when it committed (by the entry's step name). */
function slowCommits(ms: number, fail?: (entry: NewEntry) => Error | undefined) {
  const committedAt = new Map<string, number>();
  const write = async (entry: NewEntry) => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    const error = fail?.(entry);
    if (error) throw error;
    committedAt.set(entryName(entry), now());
  };
  return { committedAt, write };
}

function entryName(entry: NewEntry): string {
  return "name" in entry && typeof entry.name === "string" ? entry.name : entry.kind;
}

function runAhead(runId: string, input: { steps: number; child?: boolean; pauseMs?: number }, host: ActivationHost) {
  return pool.run({ run: { runId, workflowName: "ahead", input, createdAt: new Date() }, journal: [], host, leaseValidUntil: () => Date.now() + 60_000 }, undefined as unknown as WorkflowRegistry);
}

// On a thread, an append resolves before it commits, so the code goes on while the main thread commits; what it does
// next must still wait for the commit wherever that matters (thread-host.ts).
test("code runs ahead of a commit, but a step's function starts only once the step before it committed", async () => {
  const appended: NewEntry[] = [];
  const commits = slowCommits(40);
  const outcome = await runAhead("ahead-steps", { steps: 3 }, appendOnlyHost(appended, commits.write));
  assert.equal(outcome.kind, "completed");
  const { startedAt } = (outcome as unknown as { output: { startedAt: number[] } }).output;
  for (let i = 1; i < 3; i++) {
    const before = commits.committedAt.get(`step-${i - 1}`) as number;
    assert.ok((startedAt[i] as number) >= before, `step-${i}'s function started ${(before - (startedAt[i] as number)).toFixed(1)} ms before step-${i - 1} committed`);
  }
});

test("a run's last step that reaches the main thread with its end rides on the end: one write instead of two", async () => {
  const appended: NewEntry[] = [];
  const outcome = await runAhead("ahead-rides", { steps: 2 }, appendOnlyHost(appended, slowCommits(40).write));
  assert.equal(outcome.kind, "completed");
  assert.deepEqual(appended.map(entryName), ["step-0"], "the last step was appended on its own");
  const deferred = (outcome as { deferred?: NewEntry[] }).deferred ?? [];
  assert.deepEqual(deferred.map((entry) => [entry.kind, entryName(entry)]), [["step_completed", "step-1"]]);
});

test("the run's end is settled only after its last step committed, when the end comes later than the step", async () => {
  const appended: NewEntry[] = [];
  const commits = slowCommits(40);
  const outcome = await runAhead("ahead-end", { steps: 1, pauseMs: 5 }, appendOnlyHost(appended, commits.write));
  const settledAt = now();
  assert.equal(outcome.kind, "completed");
  assert.deepEqual(appended.map(entryName), ["step-0"]);
  assert.ok(settledAt >= (commits.committedAt.get("step-0") as number), "the end was settled before the step's entry committed");
});

test("a call made after the code saw an uncommitted outcome waits for the commit: a child is not started on it", async () => {
  const commits = slowCommits(40);
  let childStartedAt = 0;
  const host = appendOnlyHost([], commits.write);
  host.startChild = async () => {
    childStartedAt = now();
  };
  const outcome = await runAhead("ahead-child", { steps: 1, child: true }, host);
  assert.equal(outcome.kind, "completed");
  assert.ok(childStartedAt > 0, "the child was never started");
  assert.ok(childStartedAt >= (commits.committedAt.get("step-0") as number), "the child was started before the step it follows committed");
});

test("an append ahead that fails aborts the activation: nothing after it runs or is written, the end is not reported", async () => {
  const appended: NewEntry[] = [];
  const logged: string[] = [];
  const lost = new Error("lease lost while step-0 committed");
  const commits = slowCommits(40, (entry) => ("name" in entry && entry.name === "step-0" ? lost : undefined));
  const outcome = await runAhead("ahead-fails", { steps: 3 }, appendOnlyHost(appended, commits.write, logged));
  assert.equal(outcome.kind, "aborted");
  assert.equal((outcome as { reason: Error }).reason.message, lost.message);
  assert.deepEqual(appended, []);
  // step-1's function was waiting for step-0's commit: it never started.
  assert.deepEqual(logged, ["step-0 started"]);
});
