// Wake-ups without polling: a timer fires from the process's deadline timer,
// an event sent to one process wakes a run that only another process can
// execute (LISTEN/NOTIFY), and when the listener connection is cut, polling
// still delivers. Runs parked on the clock alone are claimed a little ahead of
// their deadline and fire on time, never early.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { openDatabase } from "../../server/store/database.js";
import { claimDueRuns, nextDueAt } from "../../server/store/runs/lease.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

let databaseUrl: string;
let dropDatabase: () => Promise<void>;
const servers: CairnServer[] = [];

beforeAll(async () => {
  const database = await createTestDatabase("wakeups");
  databaseUrl = database.url;
  dropDatabase = database.drop;
});

afterAll(async () => {
  for (const server of servers) await server.close();
  await dropDatabase();
});

/** `executes`: whether this process loads the fixture workflows (otherwise it can only accept requests). */
async function start(executes: boolean, pollMs: number): Promise<{ server: CairnServer; client: WorkflowClient }> {
  const started = await startTestServer({
    DATABASE_URL: databaseUrl,
    WORKFLOW_DIRS: executes ? "test/fixtures/wait-workflows" : "/nonexistent",
    CAIRN_POLL_INTERVAL_MS: String(pollMs),
  });
  servers.push(started.server);
  return started;
}

async function waitingNow(client: WorkflowClient, runId: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((await client.getRun({ runId })).run?.status !== RunStatus.WAITING) {
    if (Date.now() > deadline) throw new Error("run never parked");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("a timer wakes its run on time with polling effectively off", async () => {
  const { client } = await start(true, 60_000);
  const { run } = await client.createRun({ workflowName: "sleeper", input: valueFromJson({ ms: 300 }), eagerStart: true });
  const started = Date.now();
  const finished = await waitForEnd(client, run?.runId ?? "", 3000);
  assert.equal(finished.status, RunStatus.COMPLETED);
  assert.ok(Date.now() - started < 2500, "woken by the deadline timer, not a 60 s poll");
});

test("an event sent to another process wakes the run through NOTIFY", async () => {
  const executor = await start(true, 60_000);
  const front = await start(false, 60_000);
  const { run } = await executor.client.createRun({ workflowName: "waiter", input: valueFromJson({ type: "cross", key: "p1" }), eagerStart: true });
  const runId = run?.runId ?? "";
  await waitingNow(front.client, runId);
  const sent = await front.client.sendEvent({ eventType: "cross", correlationId: "p1", payload: valueFromJson("via front") });
  assert.deepEqual(sent.matchedRunIds, [runId]);
  const finished = await waitForEnd(front.client, runId, 3000);
  assert.deepEqual(valueToJson(finished.output ?? valueFromJson(null)), { payload: "via front" });
});

test("with its listener connection cut, a process still wakes runs by polling", async () => {
  const executor = await start(true, 300);
  const front = await start(false, 60_000);
  const { run } = await executor.client.createRun({ workflowName: "waiter", input: valueFromJson({ type: "cut", key: "p2" }), eagerStart: true });
  const runId = run?.runId ?? "";
  await waitingNow(front.client, runId);
  const terminated = await withClient(databaseUrl, async (c) => {
    const result = await c.query(
      "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen %'",
    );
    return result.rowCount ?? 0;
  });
  assert.ok(terminated >= 1, "some listener connection was cut");
  await front.client.sendEvent({ eventType: "cut", correlationId: "p2", payload: valueFromJson("after the cut") });
  const finished = await waitForEnd(front.client, runId, 5000);
  assert.deepEqual(valueToJson(finished.output ?? valueFromJson(null)), { payload: "after the cut" });
});

test("timers are claimed a little ahead and fire on time, never early; a short sleep never parks", async () => {
  const { client } = await start(true, 60_000);
  const created = await Promise.all(
    Array.from({ length: 20 }, (_, i) => client.createRun({ workflowName: "sleeper", input: valueFromJson({ ms: 300 + 10 * i }), eagerStart: true })),
  );
  const short = await client.createRun({ workflowName: "sleeper", input: valueFromJson({ ms: 15 }), eagerStart: true });
  for (const { run } of [...created, short]) assert.equal((await waitForEnd(client, run?.runId ?? "", 5000)).status, RunStatus.COMPLETED);
  const ids = created.map(({ run }) => run?.runId ?? "");
  const rows = await withClient(databaseUrl, async (db) =>
    (
      await db.query(
        `select r.id, r.activation_count, s.fire_at, f.created_at as fired_at
           from runs r join journal_entries s on s.run_id = r.id and s.kind = 'timer_started'
                       join journal_entries f on f.run_id = r.id and f.kind = 'timer_fired'
          where r.id = any($1::uuid[])`,
        [[...ids, short.run?.runId]],
      )
    ).rows as { id: string; activation_count: number; fire_at: Date; fired_at: Date }[],
  );
  assert.equal(rows.length, 21);
  for (const row of rows) assert.ok(row.fired_at.getTime() >= row.fire_at.getTime(), `run ${row.id} fired ${row.fire_at.getTime() - row.fired_at.getTime()} ms early`);
  // The 15 ms sleep was held from the start, never parked. The others parked and woke once (claimed ahead and held),
  // or, when their first activation reached the sleep late (a slow commit), were held from the start as well.
  for (const row of rows) {
    if (row.id === short.run?.runId) assert.equal(row.activation_count, 1, "the short sleep never parked");
    else assert.ok(row.activation_count === 1 || row.activation_count === 2, `run ${row.id}: ${row.activation_count} activations`);
  }
});

test("the claim takes runs parked on the clock alone ahead of their deadline, and nothing else", async () => {
  const store = await openDatabase({ url: databaseUrl, dataDir: join(tmpdir(), "cairn-unused") });
  try {
    const [clockOnly, onEvent, delayed] = [randomUUID(), randomUUID(), randomUUID()];
    await withClient(databaseUrl, async (db) => {
      // Due in 500 ms: one parked on a timer, one on an event with a 500 ms timeout (a waits row), one queued with a delay.
      await db.query(
        `insert into runs (id, workflow_name, status, input, available_at) values
           ($1, 'ahead_probe', 'waiting', '{}', now() + interval '500 milliseconds'),
           ($2, 'ahead_probe', 'waiting', '{}', now() + interval '500 milliseconds'),
           ($3, 'ahead_probe', 'queued', '{}', now() + interval '500 milliseconds')`,
        [clockOnly, onEvent, delayed],
      );
      await db.query(
        `insert into waits (run_id, name, namespace, kind, event_type, correlation_id, deadline)
         values ($1, 'reply', 'default', 'event', 'answer', 'q-1', now() + interval '500 milliseconds')`,
        [onEvent],
      );
    });
    assert.deepEqual(await claimDueRuns(store.db, "A", 60_000, 10, ["ahead_probe"], 0), [], "nothing is due yet");
    assert.deepEqual(await nextDueAt(store.db, ["ahead_probe"]).then((due) => due?.clockOnly), true);
    const claimed = await claimDueRuns(store.db, "A", 60_000, 10, ["ahead_probe"], 2_000);
    assert.deepEqual(claimed.map((run) => run.id), [clockOnly]);
  } finally {
    await store.close();
  }
});
