// A run parked by this process is woken here without reading its journal
// again (the scheduler kept it). That shortcut must never hide entries
// written by another process in between: it holds only for the claim that
// directly follows the parking (lease epoch + 1); otherwise the journal is
// read from the store, as after a restart.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { startTestServer, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

let server: CairnServer;
let client: WorkflowClient;
let url: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("parked_journals");
  url = database.url;
  dropDatabase = database.drop;
  ({ server, client } = await startTestServer({ DATABASE_URL: url, WORKFLOW_DIRS: "test/fixtures/wait-workflows" }));
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const timeout = { seconds: 10n, nanos: 0 };

async function parkedWaiter(key: string): Promise<string> {
  const { run } = await client.createRun({ workflowName: "waiter", input: valueFromJson({ type: "go", key }), eagerStart: true });
  const { run: parked } = await client.awaitRun({ runId: run!.runId, timeout: { seconds: 0n, nanos: 300_000_000 } });
  assert.equal(parked?.status, RunStatus.WAITING);
  return run!.runId;
}

test("woken in the process that parked it, the run resumes from the kept journal", async () => {
  const runId = await parkedWaiter("kept");
  await client.sendEvent({ eventType: "go", correlationId: "kept", payload: valueFromJson({ n: 1 }) });
  const { run } = await client.awaitRun({ runId, timeout });
  assert.equal(run?.status, RunStatus.COMPLETED);
  assert.deepEqual(valueToJson(run!.output!), { payload: { n: 1 } });
});

test("after another process's claim in between, the journal is read from the store", async () => {
  const runId = await parkedWaiter("moved");
  // What another process would leave behind: a claim (epoch + 1) that journaled the event, then parked again.
  await withClient(url, async (c) => {
    await c.query(
      `insert into journal_entries (run_id, sequence, namespace, kind, name, result, attempt, event_id, event_type, correlation_id)
       values ($1, 2, 'default', 'event_received', 'approval', '{"from": "elsewhere"}', 1, $2, 'go', 'moved')`,
      [runId, randomUUID()],
    );
    await c.query("update runs set lease_epoch = lease_epoch + 1, available_at = now() where id = $1", [runId]);
  });
  // Wake this process; it claims at epoch + 2 and must not trust what it kept at epoch 1.
  await client.sendEvent({ eventType: "nudge", correlationId: "nobody" });
  await withClient(url, (c) => c.query("select pg_notify('cairn_wake', '')"));
  const { run } = await client.awaitRun({ runId, timeout });
  assert.equal(run?.status, RunStatus.COMPLETED, "a stale kept journal would have parked the run again");
  assert.deepEqual(valueToJson(run!.output!), { payload: { from: "elsewhere" } });
});
