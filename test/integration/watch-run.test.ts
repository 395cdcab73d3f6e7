// WatchRun: every entry in order without gaps or repeats, exact resumption,
// across processes, many watchers at once, and a watcher that never reads
// holds nothing up.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import pg from "pg";
import { EntryKind, RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { WatchRunResponse } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

let executor: { server: CairnServer; client: WorkflowClient };
let front: { server: CairnServer; client: WorkflowClient };
let dropDatabase: () => Promise<void>;
let databaseUrl: string;

beforeAll(async () => {
  const database = await createTestDatabase("watch");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  executor = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/watch-workflows" });
  // The front process loads no workflows: it can never execute the runs it is asked to watch.
  // 200 concurrent watchers from one address: above the default per-caller cap (100, CAIRN_MAX_STREAMS_PER_CALLER).
  front = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "/nonexistent", CAIRN_MAX_STREAMS_PER_CALLER: "1000" });
});

afterAll(async () => {
  await front.server.close();
  await executor.server.close();
  await dropDatabase();
});

async function startRun(steps: number, delayMs: number): Promise<string> {
  const { run } = await executor.client.createRun({ workflowName: "many_steps", input: valueFromJson({ steps, delayMs }) });
  return run?.runId ?? "";
}

async function collect(client: WorkflowClient, runId: string, afterSequence = 0n, stopAfterEntries = Infinity): Promise<WatchRunResponse[]> {
  const updates: WatchRunResponse[] = [];
  const controller = new AbortController();
  let entries = 0;
  try {
    for await (const update of client.watchRun({ runId, afterSequence }, { signal: controller.signal })) {
      updates.push(update);
      if (update.update.case === "entry" && ++entries >= stopAfterEntries) {
        controller.abort();
        break;
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  }
  return updates;
}

const sequences = (updates: WatchRunResponse[]) =>
  updates.flatMap((u) => (u.update.case === "entry" ? [Number(u.update.value.sequence)] : []));

test("a watcher on another process sees every entry of a 20-step run in order, then the end", async () => {
  const runId = await startRun(20, 15);
  const updates = await collect(front.client, runId);
  assert.deepEqual(sequences(updates), Array.from({ length: 21 }, (_, i) => i + 1), "20 steps and the run's end, no gaps, no repeats");
  const last = updates.at(-1);
  assert.equal(last?.update.case, "run");
  assert.equal(last?.update.case === "run" && last.update.value.status, RunStatus.COMPLETED);
  const entries = updates.flatMap((u) => (u.update.case === "entry" ? [u.update.value] : []));
  assert.equal(entries.at(-1)?.kind, EntryKind.RUN_COMPLETED);
  const statuses = updates.flatMap((u) => (u.update.case === "run" ? [u.update.value.status] : []));
  assert.ok(statuses.includes(RunStatus.COMPLETED));
});

test("a dropped watcher resumes with after_sequence exactly where it stopped", async () => {
  const runId = await startRun(20, 25);
  const first = await collect(front.client, runId, 0n, 7);
  assert.deepEqual(sequences(first), [1, 2, 3, 4, 5, 6, 7]);
  const rest = await collect(front.client, runId, 7n);
  assert.deepEqual(sequences(rest), Array.from({ length: 14 }, (_, i) => i + 8));
});

test("200 concurrent watchers of one run all receive the full stream", async () => {
  const runId = await startRun(10, 30);
  const all = await Promise.all(Array.from({ length: 200 }, () => collect(front.client, runId)));
  for (const updates of all) assert.deepEqual(sequences(updates), Array.from({ length: 11 }, (_, i) => i + 1));
});

test("reads shared by many watched runs: 100 runs changing together, a burst past a batch's share, results too large to batch", async () => {
  // 100 runs of 3 steps at once: their watchers' reads go in shared batches (server/runs/tail-reader.ts).
  const runIds = await Promise.all(Array.from({ length: 100 }, () => startRun(3, 5)));
  const streams = await Promise.all(runIds.map((runId) => collect(front.client, runId)));
  for (const updates of streams) assert.deepEqual(sequences(updates), [1, 2, 3, 4]);
  // 300 entries new to a tail at once (the run ended before the watch): more than a batch takes for one run
  // (entriesPerRun), so the tail pages through the rest itself.
  const burst = await startRun(300, 0);
  await waitForEnd(executor.client, burst, 30_000);
  assert.deepEqual(sequences(await collect(front.client, burst)), Array.from({ length: 301 }, (_, i) => i + 1));
  // Step results of 100 KiB, over what a batch carries (maxBatchedEntryBytes): read by the tail's own paged read.
  const { run } = await executor.client.createRun({ workflowName: "big_steps", input: valueFromJson({ steps: 4, bytes: 100 * 1024 }) });
  await waitForEnd(executor.client, run?.runId ?? "", 30_000);
  const updates = await collect(front.client, run?.runId ?? "");
  assert.deepEqual(sequences(updates), [1, 2, 3, 4, 5]);
  const results = updates.flatMap((u) => (u.update.case === "entry" && u.update.value.kind === EntryKind.STEP_COMPLETED ? [u.update.value.result] : []));
  assert.equal(results.length, 4);
  for (const [i, result] of results.entries()) {
    assert.equal(result?.kind.case, "stringValue");
    assert.equal((result?.kind.value as string).length, 100 * 1024);
    assert.ok((result?.kind.value as string).startsWith(`${i}:`));
  }
});

test("a watcher that never reads does not stall the run", async () => {
  const runId = await startRun(30, 5);
  const controller = new AbortController();
  const stream = front.client.watchRun({ runId }, { signal: controller.signal })[Symbol.asyncIterator]();
  await stream.next(); // opened, then never read again
  const finished = await waitForEnd(executor.client, runId, 15_000);
  assert.equal(finished.status, RunStatus.COMPLETED);
  controller.abort();
  await stream.return?.();
});

test("watching a finished run replays its history and ends", async () => {
  const runId = await startRun(3, 0);
  await waitForEnd(executor.client, runId);
  assert.deepEqual(sequences(await collect(front.client, runId)), [1, 2, 3, 4]);
  assert.deepEqual(sequences(await collect(front.client, runId, 4n)), []);
});

test("a watched run's changes come as notices naming the run with its namespace and what changed, by kind", async () => {
  const listener = new pg.Client({ connectionString: databaseUrl });
  await listener.connect();
  const heard: string[] = [];
  listener.on("notification", (message) => heard.push(message.payload ?? ""));
  await listener.query("listen cairn_runs");
  try {
    // Steps 100 ms apart: the watcher on the front registers its namespace long before the run ends.
    const runId = await startRun(3, 100);
    await collect(front.client, runId);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const items = heard.flatMap((payload) => payload.slice(2).split(",").map((item) => `${payload[0]} ${item}`));
    const naming = items.filter((item) => item.slice(2).startsWith(`default:${runId}:`));
    // Its end: a status notice with the final status; its steps and the end: journal notices with the last new sequence
    // number (3 steps, then the end as entry 4), in order.
    assert.ok(naming.includes(`s default:${runId}:completed`), `a status notice: ${JSON.stringify(naming)}`);
    const sequences = naming.filter((item) => item.startsWith("e ")).map((item) => Number(item.slice(item.lastIndexOf(":") + 1)));
    assert.equal(sequences.at(-1), 4, `journal notices: ${JSON.stringify(naming)}`);
    assert.deepEqual(sequences, [...sequences].sort((a, b) => a - b));
  } finally {
    await listener.end();
  }
});

test("WatchRuns streams status changes of matching runs", async () => {
  const controller = new AbortController();
  const seen: string[] = [];
  const watching = (async () => {
    try {
      for await (const { run } of front.client.watchRuns({ workflowName: "many_steps", statuses: [RunStatus.COMPLETED] }, { signal: controller.signal })) {
        if (run) seen.push(run.runId);
      }
    } catch {
      // aborted below
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const runId = await startRun(2, 0);
  await waitForEnd(executor.client, runId);
  const deadline = Date.now() + 5000;
  while (!seen.includes(runId) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  controller.abort();
  await watching;
  assert.ok(seen.includes(runId), "the completed run was announced");
});

test("create → watch → end, one run after another: no watcher waits for the safety net to see the end", async () => {
  // The end must arrive by notice (this process's own, or the store's), not by the safety net's recheck (5 s).
  // 700 ms sits far above a run of one step (a few ms) and far below the recheck.
  const slow: string[] = [];
  for (const [label, watcher] of [["executing process", executor], ["other process", front]] as const) {
    for (let i = 0; i < 100; i++) {
      const started = performance.now();
      const { run } = await executor.client.createRun({ workflowName: "many_steps", input: valueFromJson({ steps: 1, delayMs: 0 }) });
      const updates = await collect(watcher.client, run?.runId ?? "");
      const ms = performance.now() - started;
      assert.ok(updates.some((u) => u.update.case === "run" && u.update.value.status === RunStatus.COMPLETED), `run ${i}: the stream ended without the run's end`);
      if (ms > 700) slow.push(`${label}: run ${i} took ${ms.toFixed(0)} ms`);
    }
  }
  assert.deepEqual(slow, []);
});
