// A run that ends in this process tells its local waiters (AwaitRun, WatchRun's tails) of the end with the final row
// and the journal entries the end wrote, so that they read nothing. Those entries are built, not read: they must be
// exactly what a read of the journal gives (jsonb's key order, the statement's timestamp), on the main thread and
// from a workflow thread (where the run's last step usually rides on its end).
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { JournalEntry } from "../../server/core/journal.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { loadJournal } from "../../server/store/journal.js";
import { startTestServer, waitForEnd } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("local_end");
});

afterAll(async () => {
  await database?.drop();
});

for (const threads of ["0", "1"]) {
  test(`with CAIRN_WORKFLOW_THREADS=${threads}, a run's end hands local waiters its entries exactly as the store reads them`, async () => {
    const { server, client } = await startTestServer({
      DATABASE_URL: database.url,
      WORKFLOW_DIRS: "test/fixtures/local-end-workflows",
      CAIRN_WORKFLOW_THREADS: threads,
    });
    try {
      for (const fail of [false, true]) {
        const key = `unordered-${threads}-${fail}`;
        const { run } = await client.createRun({ workflowName: "unordered_end", input: valueFromJson({ key, fail }) });
        const runId = run?.runId ?? "";
        const told: JournalEntry[][] = [];
        const unsubscribe = server.feed.subscribe(runId, (_id, change) => {
          if (change.source === "local" && change.entries) told.push([...change.entries()]);
        });
        try {
          await until(async () => (await client.getRun({ runId })).run?.status === RunStatus.WAITING, "the run never parked");
          await client.sendEvent({ eventType: "go", correlationId: key, payload: valueFromJson({}) });
          await waitForEnd(client, runId);
        } finally {
          unsubscribe();
        }
        assert.equal(told.length, 1, "the end was told once, with its entries");
        const local = told[0]!;
        const read = (await loadJournal(server.database.db, runId)).filter((entry) => entry.sequence >= local[0]!.sequence);
        // The value ctx.now() recorded and the end, at least; from a thread usually the last step too, when it reached
        // the main thread with the end (group-commit.test.ts checks riding entries at the store).
        assert.deepEqual(local.map((entry) => entry.kind).slice(-2), ["now_recorded", fail ? "run_failed" : "run_completed"]);
        assert.deepEqual(local, read);
        // Key order too (jsonb's, not the order the workflow wrote): what a watcher gets must not depend on the path.
        assert.equal(JSON.stringify(local), JSON.stringify(read));
      }
    } finally {
      await server.close();
    }
  });
}

async function until(check: () => Promise<boolean>, message: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
