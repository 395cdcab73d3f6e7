// Wake-ups without polling: a timer fires from the process's deadline timer,
// an event sent to one process wakes a run that only another process can
// execute (LISTEN/NOTIFY), and when the listener connection is cut, polling
// still delivers.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
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
