// The embedded default: no DATABASE_URL, PGlite in CAIRN_DATA_DIR. Runs
// complete, and what was accepted is still there after a restart.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, test } from "vitest";
import { EntryKind, RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { rawQuery } from "../../server/store/database.js";
import { startTestServer, waitForEnd } from "../support/in-process-server.js";

const dataDir = mkdtempSync(join(tmpdir(), "cairn-pglite-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

test("PGlite store: a run completes, and survives a restart with its history", async () => {
  // With a workflow thread, as `npm start` runs: the run's last step then rides on its end's statement (rows.ts).
  const env = { CAIRN_DATA_DIR: dataDir, WORKFLOW_DIRS: "workflows", CAIRN_WORKFLOW_THREADS: "1" };
  const first = await startTestServer(env);
  assert.equal(first.server.database.kind, "pglite");
  const input = { orderId: "pg-1", items: [{ sku: "a", quantity: 1 }], amountCents: 99 };
  const { run } = await first.client.createRun({ workflowName: "order_fulfillment", input: valueFromJson(input), eagerStart: true });
  const finished = await waitForEnd(first.client, run?.runId ?? "");
  assert.equal(finished.status, RunStatus.COMPLETED);
  // WatchRun reads its run's entries through the batched tail reads, on PGlite too: the final status and the whole history.
  const watched = [];
  for await (const update of first.client.watchRun({ runId: finished.runId })) watched.push(update);
  assert.deepEqual(
    watched.flatMap((u) => (u.update.case === "entry" ? [Number(u.update.value.sequence)] : [])),
    [1, 2, 3, 4],
  );
  assert.deepEqual(watched.flatMap((u) => (u.update.case === "run" ? [u.update.value.status] : [])), [RunStatus.COMPLETED]);
  assert.deepEqual(
    watched.flatMap((u) => (u.update.case === "entry" ? [u.update.value.kind] : [])).slice(-2),
    [EntryKind.STEP_COMPLETED, EntryKind.RUN_COMPLETED],
  );
  const [together] = await rawQuery<{ n: number }>(
    first.server.database.db,
    "select count(distinct xmin::text)::int as n from journal_entries where run_id = $1 and sequence >= 3",
    [finished.runId],
  );
  assert.equal(together?.n, 1, "the last step and the run's end were written in one transaction");
  // Accepted just before shutdown (whether or not this process got to run it): the next process must finish it.
  const { run: queued } = await first.client.createRun({ workflowName: "document_ingest", input: valueFromJson({ url: "https://example.com" }) });
  await first.server.close();

  const second = await startTestServer(env);
  const again = await second.client.getRun({ runId: finished.runId });
  assert.deepEqual(valueToJson(again.run?.output ?? valueFromJson(null)), valueToJson(finished.output ?? valueFromJson(null)));
  const history = await second.client.getRunHistory({ runId: finished.runId });
  assert.equal(history.entries.length, 4);
  const resumed = await waitForEnd(second.client, queued?.runId ?? "");
  assert.equal(resumed.status, RunStatus.COMPLETED);
  await second.server.close();
});
