// A cancel or a pause made in this process (CancelRun, PauseRun, a batch's chunk) tells the run's waiters here its new
// row and the entry the change journaled, as committed, so that its watch streams need not read them. Both come from
// what the statement returned, so they must be exactly what a read of the store gives: the same row, the same entry
// (jsonb's key order, the commit's timestamp).
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { EntryKind } from "../../sdk/gen/cairn/v1/types_pb.js";
import { BatchOperation, BatchStatus } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { JournalEntry } from "../../server/core/journal.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import type { RunChange } from "../../server/runs/run-feed.js";
import { loadJournal } from "../../server/store/journal.js";
import { getRun } from "../../server/store/runs/read.js";
import type { RunRow } from "../../server/store/schema.js";
import { startTestServer, until, untilParked } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("local_run_control");
});

afterAll(async () => {
  await database?.drop();
});

test("a cancel or pause made here tells local waiters the run's row and entry exactly as the store reads them", async () => {
  const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/local-end-workflows" });
  try {
    const park = async (label: string, cohort: string): Promise<string> => {
      const { run } = await client.createRun({ workflowName: "unordered_end", input: valueFromJson({ key: label }), metadata: { cohort }, eagerStart: true });
      return run?.runId ?? "";
    };
    const cancelled = await park("cancel-one", "single");
    const paused = await park("pause-one", "single");
    const batched = await Promise.all(Array.from({ length: 5 }, (_, i) => park(`batch-${i}`, "batch")));
    const pausedInBatch = await Promise.all(Array.from({ length: 2 }, (_, i) => park(`batch-pause-${i}`, "batch-pause")));
    const all = [cancelled, paused, ...batched, ...pausedInBatch];
    await untilParked(client, all);

    const told = new Map<string, { row: RunRow; entries: readonly JournalEntry[] }[]>();
    const unsubscribes = all.map((runId) =>
      server.feed.subscribe(runId, (_id, change: RunChange) => {
        if (change.source !== "local") return;
        assert.ok(change.row && change.entries, `run ${runId}: a local change without its row or entries`);
        told.set(runId, [...(told.get(runId) ?? []), { row: change.row, entries: change.entries() }]);
      }),
    );
    try {
      await client.cancelRun({ runId: cancelled, reason: "ende — 終わり" });
      await client.pauseRun({ runId: paused, reason: "wartung ü" });
      for (const [cohort, operation] of [["batch", BatchOperation.CANCEL], ["batch-pause", BatchOperation.PAUSE]] as const) {
        const started = await client.startBatch({ filter: { metadata: { cohort } }, operation, reason: `batch ${cohort} — ✓` });
        const batchId = started.batch?.batchId ?? "";
        await until(async () => (await client.getBatch({ batchId })).batch?.status === BatchStatus.COMPLETED, `batch ${cohort} never completed`);
      }
    } finally {
      for (const unsubscribe of unsubscribes) unsubscribe();
    }

    for (const runId of all) {
      const changes = told.get(runId) ?? [];
      assert.equal(changes.length, 1, `run ${runId}: told once`);
      const { row, entries } = changes[0]!;
      const stored = await getRun(server.database.db, "default", runId);
      assert.deepEqual(row, stored, `run ${runId}: the told row is the stored row`);
      const expectedKind = paused === runId || pausedInBatch.includes(runId) ? "run_paused" : "run_cancelled";
      assert.deepEqual(
        entries.map((e) => e.kind),
        [expectedKind],
      );
      const read = (await loadJournal(server.database.db, runId)).filter((entry) => entry.sequence >= entries[0]!.sequence);
      assert.deepEqual(entries, read, `run ${runId}: the told entry is the stored one`);
      // Key order too: what a watcher gets must not depend on whether it was told or read.
      assert.equal(JSON.stringify(entries), JSON.stringify(read));
    }
  } finally {
    await server.close();
  }
});

test("watchers here of runs a batch cancels get the cancel without reading it", async () => {
  const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/local-end-workflows" });
  try {
    const readsOf = async () => (await server.metrics.waiterReads.get()).values.filter((v) => v.labels.waiter === "watch_run").reduce((sum, v) => sum + v.value, 0);
    const runs = 40;
    const runIds = await Promise.all(
      Array.from({ length: runs }, async (_, i) => {
        const { run } = await client.createRun({ workflowName: "unordered_end", input: valueFromJson({ key: `watched-${i}` }), metadata: { cohort: "watched" }, eagerStart: true });
        return run?.runId ?? "";
      }),
    );
    await untilParked(client, runIds);
    const opened = new Set<string>();
    const streams = runIds.map(async (runId) => {
      const entries: EntryKind[] = [];
      for await (const update of client.watchRun({ runId, afterSequence: 0n })) {
        if (update.update.case === "run") opened.add(runId);
        if (update.update.case === "entry") entries.push(update.update.value.kind);
      }
      return entries;
    });
    await until(async () => opened.size === runs, "the streams never opened");
    const before = await readsOf();
    const started = await client.startBatch({ filter: { metadata: { cohort: "watched" } }, operation: BatchOperation.CANCEL });
    const ended = await Promise.all(streams);
    for (const kinds of ended) assert.equal(kinds.at(-1), EntryKind.RUN_CANCELLED, "every stream ends with the cancel");
    assert.equal((await client.getBatch({ batchId: started.batch?.batchId ?? "" })).batch?.processedCount, BigInt(runs));
    // One read per stream without the telling, and as many when a tail read on the store's notice of the chunk's
    // commit, which usually lands before the committing connection's answer (local-commits.ts).
    const reads = (await readsOf()) - before;
    assert.ok(reads <= 2, `${reads} reads for ${runs} cancelled runs`);
  } finally {
    await server.close();
  }
});
