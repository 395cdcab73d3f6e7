// A cancel batch over 1,000 waiting runs whose server is SIGKILLed halfway (real server processes on one
// PostgreSQL database): once the batch's lease lapses another server goes on from the pending items, and every
// selected run ends cancelled exactly once, with exact counters. Checked through the SDK and plain Connect JSON.
import { afterAll, test } from "vitest";
import assert from "node:assert/strict";
import { createCairnClient } from "../../sdk/client.js";
import { diagnostic } from "../support/diagnostic.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { describeExit, sleep, startServerProcess, stopAllServerProcesses, waitFor } from "../support/server-process.js";

const databases: TestDatabase[] = [];

afterAll(async () => {
  await stopAllServerProcesses();
  for (const db of databases.splice(0)) await db.drop();
});

test("SIGKILL mid-batch: another server completes it; each selected run is cancelled exactly once, counts exact", async () => {
  const db = await createTestDatabase("batch_crash");
  databases.push(db);
  const query = <T>(text: string, values: unknown[] = []) => withClient(db.url, async (c) => (await c.query(text, values)).rows as T[]);
  // Small chunks, so the batch takes long enough to be caught halfway.
  const env = { CAIRN_BATCH_CHUNK_SIZE: "2" };
  const a = await startServerProcess({ databaseUrl: db.url, workflowDirs: "test/fixtures/wait-workflows", name: "A", env });
  const sdkA = createCairnClient({ baseUrl: a.url });

  const selected: string[] = [];
  for (let i = 0; i < 1000; i += 50) {
    const created = await Promise.all(
      Array.from({ length: 50 }, () => sdkA.createRun("waiter", { type: "never.sent", key: "k" }, { eagerStart: true, metadata: { cohort: "crash" } })),
    );
    selected.push(...created.map((c) => c.runId));
  }
  const others = await Promise.all(
    Array.from({ length: 20 }, async () => (await sdkA.createRun("waiter", { type: "never.sent", key: "k" }, { eagerStart: true, metadata: { cohort: "keep" } })).runId),
  );
  await waitFor(
    async () => ((await query<{ n: number }>("select count(*)::int as n from runs where status = 'waiting'"))[0]?.n === 1020 ? true : undefined),
    60_000,
    () => "the runs did not all park",
  );

  const started = await sdkA.startBatch({ filter: { metadata: { cohort: "crash" } }, operation: "cancel", reason: "crash test" });
  assert.ok(!started.dryRun);
  const batchId = started.batch.batchId;
  assert.equal(started.batch.selectedCount, 1000);

  let seen = 0;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    seen = (await query<{ processed_count: number }>("select processed_count from batches where id = $1", [batchId]))[0]?.processed_count ?? 0;
    // About a fifth of the way: several chunks committed, most of the batch still to do.
    if (seen >= 200) break;
    await sleep(5);
  }
  assert.ok(seen >= 1 && seen < 1000, `processed ${seen} before the kill`);
  a.kill("SIGKILL");
  const exit = await a.exited;
  assert.equal(exit.signal, "SIGKILL", describeExit(exit));
  await sleep(100);
  const [atKill] = await query<{ processed_count: number; status: string; lease_owner: string; cancelled: number }>(
    "select processed_count, status, lease_owner, (select count(*)::int from runs where metadata @> '{\"cohort\":\"crash\"}' and status = 'cancelled') as cancelled from batches where id = $1",
    [batchId],
  );
  assert.ok(atKill);
  assert.equal(atKill.status, "running");
  assert.equal(atKill.lease_owner, a.owner, "A held the batch when it died");
  assert.ok(atKill.processed_count >= 1 && atKill.processed_count < 1000, `processed ${atKill.processed_count} at the kill`);
  // A committed chunk's runs are cancelled and its items done, together: never one without the other.
  assert.equal(atKill.cancelled, atKill.processed_count, "cancelled runs and processed items agree at the kill");

  const b = await startServerProcess({ databaseUrl: db.url, workflowDirs: "test/fixtures/wait-workflows", name: "B", env });
  const sdkB = createCairnClient({ baseUrl: b.url });
  const done = await waitFor(
    async () => {
      const batch = await sdkB.getBatch(batchId);
      return batch.status === "running" ? undefined : batch;
    },
    60_000,
    () => `the batch did not complete on B; B's output:\n${b.logs()}`,
  );
  assert.equal(done.status, "completed");
  assert.deepEqual([done.selectedCount, done.processedCount, done.skippedCount, done.failedCount], [1000, 1000, 0, 0]);

  // Plain fetch, Connect JSON: the same counters.
  const response = await fetch(`${b.url}/cairn.v1.WorkflowService/GetBatch`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ batchId }),
  });
  const json = (await response.json()) as { batch: Record<string, unknown> };
  assert.equal(json.batch.status, "BATCH_STATUS_COMPLETED");
  assert.equal(json.batch.processedCount, "1000");
  assert.equal(json.batch.selectedCount, "1000");

  const perRun = await query<{ id: string; status: string; n: number }>(
    "select r.id, r.status, count(j.run_id)::int as n from runs r left join journal_entries j on j.run_id = r.id and j.kind = 'run_cancelled' where r.id = any($1) group by r.id, r.status",
    [selected],
  );
  assert.equal(perRun.length, 1000);
  assert.deepEqual(perRun.filter((r) => r.status !== "cancelled" || r.n !== 1), [], "every selected run cancelled exactly once");
  const [items] = await query<{ done: number; other: number }>(
    "select count(*) filter (where outcome = 'done')::int as done, count(*) filter (where outcome <> 'done')::int as other from batch_items where batch_id = $1",
    [batchId],
  );
  assert.deepEqual(items, { done: 1000, other: 0 });
  const untouched = await query<{ status: string; n: number }>(
    "select r.status, count(j.run_id)::int as n from runs r left join journal_entries j on j.run_id = r.id and j.kind = 'run_cancelled' where r.id = any($1) group by r.id, r.status",
    [others],
  );
  assert.deepEqual(untouched.filter((r) => r.status !== "waiting" || r.n !== 0), [], "runs outside the filter untouched");
  assert.match(b.logs(), /batch completed/);
  diagnostic(`killed A after ${atKill.processed_count} of 1000 runs; B completed the batch`);
});
