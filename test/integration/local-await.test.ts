// AwaitRun on runs that end in this process reads nothing for their end: the final row comes with the end's local
// telling, and the store's notice of that end, which often lands first on the listener's connection, waits for it
// (local-commits.ts) instead of reading.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { startTestServer, untilParked } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("local_await");
});

afterAll(async () => {
  await database?.drop();
});

test("awaiters here of runs that end here read nothing for the ends, even when the store's notice comes first", async () => {
  const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/local-end-workflows" });
  try {
    const readsOf = async () => (await server.metrics.waiterReads.get()).values.filter((v) => v.labels.waiter === "await_run").reduce((sum, v) => sum + v.value, 0);
    const runs = 40;
    const runIds = await Promise.all(
      Array.from({ length: runs }, async (_, i) => {
        const { run } = await client.createRun({ workflowName: "unordered_end", input: valueFromJson({ key: `awaited-${i}` }), eagerStart: true });
        return run?.runId ?? "";
      }),
    );
    await untilParked(client, runIds);
    // Parked: each AwaitRun asks for the namespace's notices, so the ends' notices reach this process too.
    const awaited = runIds.map((runId) => client.awaitRun({ runId, timeout: { seconds: 30n } }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = await readsOf();
    await Promise.all(runIds.map((_, i) => client.sendEvent({ eventType: "go", correlationId: `awaited-${i}`, payload: valueFromJson({}) })));
    const ended = await Promise.all(awaited);
    for (const { run } of ended) assert.equal(run?.status, RunStatus.COMPLETED);
    const reads = (await readsOf()) - before;
    assert.ok(reads <= 2, `${reads} reads for ${runs} ends`);
  } finally {
    await server.close();
  }
});
