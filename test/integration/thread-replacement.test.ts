/**
 * A workflow thread whose young generation grew under load gives that memory back only by being replaced (V8 never
 * shrinks a young generation): once such a thread has stayed idle a while, the pool starts a fresh one, which takes
 * over when it is ready. A run that reaches the old thread while the new one loads still finishes there, and the old
 * thread stops once it has none; a replacement that does not load in time is stopped and the old one serves on; a
 * thread whose young generation stayed small is left alone.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, test } from "vitest";
import { createLogger } from "../../server/logger.js";
import { WorkflowThreads, type WorkflowThreadsOptions } from "../../server/worker/threads/workflow-threads.js";
import type { WorkflowRegistry } from "../../server/workflows/registry.js";
import { appendOnlyHost } from "../support/append-only-host.js";
import { waitFor } from "../support/server-process.js";

let pool: WorkflowThreads | undefined;

afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

async function startPool(options: Partial<WorkflowThreadsOptions>): Promise<WorkflowThreads> {
  pool = new WorkflowThreads({ workflowDirs: ["test/fixtures/thread-workflows"], threads: 1, blockedCodeMs: 5000, heapMb: 256, logger: createLogger("silent"), ...options });
  await pool.start();
  return pool;
}

let runs = 0;

/** Runs which_thread to its end: the worker thread its step ran on. */
async function whichThread(threads: WorkflowThreads, pauseMs?: number): Promise<number> {
  const outcome = await threads.run(
    { run: { runId: `run-${++runs}`, workflowName: "which_thread", input: pauseMs === undefined ? {} : { pauseMs }, createdAt: new Date() }, journal: [], host: appendOnlyHost(), leaseValidUntil: () => Date.now() + 60_000 },
    undefined as unknown as WorkflowRegistry,
  );
  assert.equal(outcome.kind, "completed", JSON.stringify(outcome));
  return (outcome as unknown as { output: { threadId: number } }).output.threadId;
}

test("an idle thread whose young generation grew is replaced; a run that reaches it meanwhile finishes there, and it stops after", async () => {
  // Every reported young generation counts as grown here: a thread is replaced after each quiet spell of 3 s (long
  // enough that the replacement, busy with this test's runs, is not replaced in turn before the test ends).
  const threads = await startPool({ replaceIdleAfterMs: 3000, replaceAboveYoungBytes: 0 });
  const first = await whichThread(threads);
  // The thread falls idle, collects, reports its young generation; 3 s after its run its replacement starts loading.
  await waitFor(() => (threads.size === 2 ? true : undefined), 15_000, () => "a replacement loads");
  // The old thread serves on while the new one loads: this run goes to it and holds it for a while.
  const held = whichThread(threads, 1500);
  // Runs go to the old thread until the new one is ready, then to the new one.
  const deadline = Date.now() + 15_000;
  let next = first;
  while (next === first) {
    assert.ok(Date.now() < deadline, "the replacement never took over");
    next = await whichThread(threads);
  }
  // The replacement took over while the old thread still held its run: both are there.
  assert.equal(threads.size, 2, "the old thread stopped before its run ended");
  assert.equal(await held, first, "the run that reached the old thread did not finish there");
  assert.equal(threads.size, 1, "the old thread was not stopped once its last run ended");
  // And the new one goes on serving.
  assert.equal(await whichThread(threads), next);
});

test("a thread whose young generation stayed small is not replaced", async () => {
  const threads = await startPool({ replaceIdleAfterMs: 200 });
  const first = await whichThread(threads);
  // Past the idle collection (1 s) and the idle wait: a thread with a young generation that grew would be replaced.
  await sleep(2000);
  assert.equal(threads.size, 1);
  assert.equal(await whichThread(threads), first);
});

test("a replacement that does not load in time is stopped, and the idle thread serves on", async () => {
  const folder = mkdtempSync(join(tmpdir(), "cairn-hang-on-load-"));
  const marker = join(folder, "hang");
  process.env.CAIRN_TEST_HANG_ON_LOAD = marker;
  try {
    const threads = await startPool({ workflowDirs: ["test/fixtures/hang-on-load-workflows"], replaceIdleAfterMs: 200, replaceAboveYoungBytes: 0, replacementLoadMs: 1000 });
    const first = await whichThread(threads);
    // From now on a new thread spins while it loads the workflow module.
    writeFileSync(marker, "");
    await waitFor(() => (threads.size === 2 ? true : undefined), 15_000, () => "a replacement loads");
    await waitFor(() => (threads.size === 1 ? true : undefined), 15_000, () => "the replacement that did not load is stopped");
    assert.equal(await whichThread(threads), first);
  } finally {
    delete process.env.CAIRN_TEST_HANG_ON_LOAD;
    rmSync(folder, { recursive: true, force: true });
  }
});
