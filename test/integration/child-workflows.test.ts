// Child workflows on real PostgreSQL: fan-out, typed failures, cancellation
// cascading to attached children, and exactly-once creation.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { childRunId } from "../../server/core/activation.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { insertChildRun } from "../../server/store/runs/create.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

let server: CairnServer;
let client: WorkflowClient;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("children");
  dropDatabase = database.drop;
  ({ server, client } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/child-workflows",
    CAIRN_MAX_CONCURRENT_RUNS: "100",
    DATABASE_POOL_SIZE: "20",
  }));
});

afterAll(async () => {
  await server.close();
  await dropDatabase();
});

async function create(workflowName: string, input: Record<string, unknown>): Promise<string> {
  const { run } = await client.createRun({ workflowName, input: valueFromJson(input as never), eagerStart: true });
  return run?.runId ?? "";
}

const output = (run: { output?: Parameters<typeof valueToJson>[0] }) => (run.output ? valueToJson(run.output) : undefined);

test("a parent waits on 50 children started with Promise.all", async () => {
  const parent = await create("fan_out", { count: 50 });
  const finished = await waitForEnd(client, parent, 30_000);
  assert.equal(finished.status, RunStatus.COMPLETED);
  assert.deepEqual(output(finished), { sum: Array.from({ length: 50 }, (_, i) => i * i).reduce((a, b) => a + b, 0) });
  const children = await client.listRuns({ parentRunId: parent, pageSize: 100 });
  assert.equal(children.runs.length, 50, "exactly one child per operation");
  assert.ok(children.runs.every((r) => r.parentRunId === parent && r.status === RunStatus.COMPLETED));
});

test("a child's failure surfaces in the parent as a catchable typed error", async () => {
  const parent = await create("careful_parent", {});
  const finished = await waitForEnd(client, parent);
  const caught = (output(finished) as { caught: { child: string; status: string; failure: { name: string; message: string } } }).caught;
  assert.equal(caught.status, "failed");
  assert.deepEqual(caught.failure, { name: "RangeError", message: "out of range" });
  const child = await client.getRun({ runId: caught.child });
  assert.equal(child.run?.parentRunId, parent);
  assert.equal(child.run?.status, RunStatus.FAILED);
});

test("cancelling a parent cancels its attached children and leaves detached ones running", async () => {
  const parent = await create("parent_of_waiters", { key: "c1" });
  const attached = childRunId(parent, "attached");
  const detached = childRunId(parent, "detached");
  const deadline = Date.now() + 10_000;
  while ((await client.getRun({ runId: parent })).run?.status !== RunStatus.WAITING) {
    assert.ok(Date.now() < deadline, "parent parked");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await client.cancelRun({ runId: parent, reason: "order withdrawn" });
  const attachedRun = await waitForEnd(client, attached);
  assert.equal(attachedRun.status, RunStatus.CANCELLED);
  assert.match(attachedRun.error?.message ?? "", /parent run .* was cancelled: order withdrawn/);
  assert.equal((await client.getRun({ runId: detached })).run?.status, RunStatus.WAITING);
  await client.cancelRun({ runId: detached });
});

test("a child's end wakes a parked parent", async () => {
  const parent = await create("parent_of_waiters", { key: "c2" });
  const attached = childRunId(parent, "attached");
  const deadline = Date.now() + 10_000;
  while ((await client.getRun({ runId: parent })).run?.status !== RunStatus.WAITING) {
    assert.ok(Date.now() < deadline, "parent parked");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await client.sendEvent({ eventType: "child.go", correlationId: "c2-a", payload: valueFromJson("from the child") });
  const finished = await waitForEnd(client, parent);
  assert.equal(output(finished), "from the child");
  assert.equal((await client.getRun({ runId: attached })).run?.status, RunStatus.COMPLETED);
  await client.cancelRun({ runId: childRunId(parent, "detached") });
});

test("a child of an unknown workflow fails the parent's operation with a clear error", async () => {
  const finished = await waitForEnd(client, await create("orphan_parent", {}));
  assert.match(String(output(finished)), /unknown workflow "no_such_workflow"; known workflows: broken, careful_parent/);
});

test("creating the same child twice (a parent replaying after a crash) leaves one child", async () => {
  const parent = await create("square", { n: 2 });
  await waitForEnd(client, parent);
  const id = childRunId(parent, "again");
  const child = { id, namespace: "default", workflowName: "square", input: { n: 3 }, metadata: {}, parentRunId: parent, detached: false };
  assert.equal(await insertChildRun(server.database.db, child), true);
  assert.equal(await insertChildRun(server.database.db, child), false);
  const children = await client.listRuns({ parentRunId: parent });
  assert.deepEqual(children.runs.map((r) => r.runId), [id]);
  await waitForEnd(client, id);
});
