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
import { startTestServer, until, waitForEnd } from "../support/in-process-server.js";
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

test("a watcher in the process that executes the run gets every step as told, as the store reads them, with few reads", async () => {
  const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/local-end-workflows", CAIRN_WORKFLOW_THREADS: "1" });
  try {
    const readsOf = async () => (await server.metrics.waiterReads.get()).values.filter((v) => v.labels.waiter === "watch_run").reduce((sum, v) => sum + v.value, 0);
    const before = await readsOf();
    const steps = 30;
    const { run } = await client.createRun({ workflowName: "unordered_steps", input: valueFromJson({ steps }), eagerStart: true });
    const runId = run?.runId ?? "";
    const streamed: unknown[] = [];
    for await (const update of client.watchRun({ runId, afterSequence: 0n })) {
      if (update.update.case === "entry") streamed.push(update.update.value);
    }
    const history = await client.getRunHistory({ runId, pageSize: 1000 });
    assert.equal(streamed.length, steps + 1, "every step and the end");
    // The same entries, byte for byte, as the history (read from the store) gives them.
    assert.equal(JSON.stringify(streamed.map(comparable)), JSON.stringify(history.entries.map(comparable)));
    // Told, not read: the stream's first read (and the one after it, if the run had moved on by then). A notice that
    // beats its telling waits for it (local-commits.ts); without that wait, 4 to 11 reads here.
    const reads = (await readsOf()) - before;
    assert.ok(reads <= 3, `${reads} reads for ${steps + 1} entries`);
  } finally {
    await server.close();
  }
});

/** An entry as the API gives it, without protobuf-es's internals. */
function comparable(entry: unknown): unknown {
  const { $typeName: _, ...rest } = entry as Record<string, unknown>;
  return JSON.parse(JSON.stringify(rest, (_key, value) => (typeof value === "bigint" ? value.toString() : value)));
}
