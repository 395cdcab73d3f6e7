// Events sent while their runs are parking: the sender and the parking run take
// the event key's lock (inside cairn_send_event and cairn_park_on_events), so
// either the send sees the wait and wakes the run, or the parking sees the event
// and does not park. A lost wake-up would leave a run WAITING forever (its
// available_at is NULL, so no poll finds it).
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { startTestServer, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

let servers: { server: CairnServer; client: WorkflowClient }[] = [];
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("event_races");
  dropDatabase = database.drop;
  const env = { DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_MAX_CONCURRENT_RUNS: "300", DATABASE_POOL_SIZE: "20" };
  servers = [await startTestServer(env), await startTestServer(env)];
});

afterAll(async () => {
  for (const { server } of servers) await server.close();
  await dropDatabase?.();
});

test("events racing their runs' parking, over two processes, wake every run exactly once", async () => {
  const rounds = 150;
  const runs = await Promise.all(
    Array.from({ length: rounds }, async (_, i) => {
      const { client } = servers[i % 2]!;
      const key = `race-${i}`;
      const { run } = await client.createRun({ workflowName: "waiter", input: valueFromJson({ type: "race", key }), eagerStart: true });
      // Sent at once, from the other process: the run is usually still running towards its wait.
      await servers[(i + 1) % 2]!.client.sendEvent({ eventType: "race", correlationId: key, payload: valueFromJson({ i }) });
      return { runId: run!.runId, i };
    }),
  );
  const ended = await Promise.all(runs.map(({ runId }, i) => servers[i % 2]!.client.awaitRun({ runId, timeout: { seconds: 20n, nanos: 0 } })));
  const stuck = ended.filter((r) => r.run?.status !== RunStatus.COMPLETED).map((r) => `${r.run?.runId}: ${RunStatus[r.run?.status ?? 0]}`);
  assert.deepEqual(stuck, [], "every run received its event");
  ended.forEach((r, index) => assert.deepEqual(valueToJson(r.run!.output!), { payload: { i: runs[index]!.i } }));
});
