/**
 * StartBatch / GetBatch on PostgreSQL, through the SDK and through plain fetch (Connect JSON): a cancel batch over
 * 1,000 waiting runs selected by metadata cancels each exactly once and touches nothing else; a dry run counts and
 * samples and stores nothing; per-run refusals are kept and listed; a repeated batch skips what is already done;
 * bad requests are INVALID_ARGUMENT / NOT_FOUND and store nothing.
 */
import assert from "node:assert/strict";
import { delimiter } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { type BatchInfo, createCairnClient, type CairnClient } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { startTestServer } from "../support/in-process-server.js";
import { scrape, valueOf } from "../support/prometheus-text.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { postConnectJson } from "../support/connect-json.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("batches");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: ["test/fixtures/wait-workflows", "test/fixtures/child-workflows"].join(delimiter), CAIRN_POLL_INTERVAL_MS: "50" }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const connectJson = (method: string, body: unknown) => postConnectJson(server.url, method, body);

const sql = <T = Record<string, unknown>>(text: string, values: unknown[] = []) =>
  withClient(databaseUrl, async (db) => (await db.query(text, values)).rows as T[]);

/** `n` runs parked on an event nobody sends, labelled with `metadata`. */
async function waitingRuns(n: number, metadata: Record<string, string>): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 50) {
    const created = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, () => sdk.createRun("waiter", { type: "never.sent", key: "k" }, { eagerStart: true, metadata })),
    );
    ids.push(...created.map((c) => c.runId));
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    const [row] = await sql<{ n: number }>("select count(*)::int as n from runs where id = any($1) and status = 'waiting'", [ids]);
    if (row?.n === n) return ids;
    if (Date.now() > deadline) throw new Error(`only ${row?.n} of ${n} runs are waiting`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function finished(batchId: string, timeoutMs = 60_000): Promise<BatchInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await sdk.getBatch(batchId);
    if (batch.status !== "running") return batch;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} still running after ${timeoutMs} ms: ${JSON.stringify(batch)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** run id → how many entries of `kind` its history has. */
async function entriesOf(kind: string, runIds: readonly string[]): Promise<Map<string, number>> {
  const rows = await sql<{ run_id: string; n: number }>(
    "select r.id as run_id, count(j.run_id)::int as n from runs r left join journal_entries j on j.run_id = r.id and j.kind = $1 where r.id = any($2) group by r.id",
    [kind, runIds],
  );
  return new Map(rows.map((r) => [r.run_id, r.n]));
}

async function statusesOf(runIds: readonly string[]): Promise<Record<string, number>> {
  const rows = await sql<{ status: string; n: number }>("select status, count(*)::int as n from runs where id = any($1) group by status", [runIds]);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

async function storedBatches(): Promise<{ batches: number; items: number }> {
  const [row] = await sql<{ batches: number; items: number }>("select (select count(*)::int from batches) as batches, (select count(*)::int from batch_items) as items");
  return row!;
}

test("a cancel batch over 1,000 runs selected by metadata cancels each exactly once and nothing else (SDK)", async () => {
  const selected = await waitingRuns(1000, { cohort: "sdk-a" });
  const others = await waitingRuns(40, { cohort: "sdk-b" });
  const before = await storedBatches();

  const dry = await sdk.startBatch({ filter: { metadata: { cohort: "sdk-a" } }, operation: "cancel", dryRun: true });
  assert.equal(dry.dryRun, true);
  assert.equal(dry.matchedCount, 1000);
  assert.ok(dry.dryRun && dry.sampleRunIds.length === 20);
  assert.ok(dry.dryRun && dry.sampleRunIds.every((id) => selected.includes(id)), "the sample is drawn from the selected runs");
  assert.deepEqual(await storedBatches(), before, "a dry run stores nothing");
  assert.deepEqual(await statusesOf(selected), { waiting: 1000 }, "a dry run changes no run");

  const started = await sdk.startBatch({ filter: { metadata: { cohort: "sdk-a" } }, operation: "cancel", reason: "cohort a retired" });
  assert.equal(started.dryRun, false);
  assert.ok(!started.dryRun);
  assert.equal(started.matchedCount, 1000);
  assert.equal(started.batch.selectedCount, 1000);
  assert.equal(started.batch.operation, "cancel");
  const done = await finished(started.batch.batchId);
  assert.equal(done.status, "completed");
  assert.deepEqual(
    { selected: done.selectedCount, processed: done.processedCount, skipped: done.skippedCount, failed: done.failedCount },
    { selected: 1000, processed: 1000, skipped: 0, failed: 0 },
  );
  assert.ok(done.finishedAt instanceof Date);
  assert.deepEqual(done.failures, []);

  assert.deepEqual(await statusesOf(selected), { cancelled: 1000 });
  const cancelledEntries = await entriesOf("run_cancelled", selected);
  assert.equal(cancelledEntries.size, 1000);
  assert.deepEqual([...cancelledEntries.values()].filter((n) => n !== 1), [], "every selected run has exactly one run_cancelled entry");
  const [reasons] = await sql<{ n: number }>("select count(*)::int as n from runs where id = any($1) and error->>'message' = 'cohort a retired'", [selected]);
  assert.equal(reasons?.n, 1000, "the batch's reason is each run's cancel reason");
  const [items] = await sql<{ n: number }>("select count(*)::int as n from batch_items where batch_id = $1 and outcome = 'done'", [done.batchId]);
  assert.equal(items?.n, 1000);

  assert.deepEqual(await statusesOf(others), { waiting: 40 }, "runs with other metadata are untouched");
  assert.deepEqual([...(await entriesOf("run_cancelled", others)).values()].filter((n) => n !== 0), []);

  // The batch's set-based cancel leaves a run exactly as CancelRun does (row values and history).
  const single = others[0]!;
  await sdk.cancelRun(single, "cohort a retired");
  const shape = async (runId: string) => {
    const [row] = await sql(
      `select status, error, cancel_reason, waiting_on, available_at, lease_owner, lease_expires_at, lease_epoch, completed_at is not null as ended,
              (select count(*)::int from waits where run_id = $1) as waits,
              (select json_agg(json_build_object('kind', kind, 'name', name, 'error', error, 'attempt', attempt) order by sequence) from journal_entries where run_id = $1) as entries
       from runs where id = $1`,
      [runId],
    );
    return row;
  };
  assert.deepEqual(await shape(selected[0]!), await shape(single));
});

test("the same over plain fetch (Connect JSON); a second batch over the same runs skips every one", async () => {
  const selected = await waitingRuns(1000, { cohort: "json-a" });
  const others = await waitingRuns(40, { cohort: "json-b" });
  const filter = { metadata: { cohort: "json-a" }, workflowName: "waiter" };

  const dry = await connectJson("StartBatch", { filter, operation: "BATCH_OPERATION_CANCEL", dryRun: true });
  assert.equal(dry.status, 200, JSON.stringify(dry.json));
  assert.equal(dry.json.matchedCount, "1000");
  assert.equal(dry.json.batch, undefined);
  assert.equal((dry.json.sampleRunIds as string[]).length, 20);

  const started = await connectJson("StartBatch", { filter, operation: "BATCH_OPERATION_CANCEL" });
  assert.equal(started.status, 200, JSON.stringify(started.json));
  const batchId = (started.json.batch as { batchId: string }).batchId;
  assert.equal((started.json.batch as { selectedCount: string }).selectedCount, "1000");
  await finished(batchId);
  const got = await connectJson("GetBatch", { batchId });
  assert.equal(got.status, 200);
  const batch = got.json.batch as Record<string, unknown>;
  assert.equal(batch.status, "BATCH_STATUS_COMPLETED");
  assert.equal(batch.operation, "BATCH_OPERATION_CANCEL");
  assert.equal(batch.processedCount, "1000");
  assert.equal(batch.failedCount ?? "0", "0");
  assert.deepEqual(batch.filter, { workflowName: "waiter", metadata: { cohort: "json-a" } });

  assert.deepEqual(await statusesOf(selected), { cancelled: 1000 });
  assert.deepEqual([...(await entriesOf("run_cancelled", selected)).values()].filter((n) => n !== 1), []);
  assert.deepEqual(await statusesOf(others), { waiting: 40 });

  // Again over the same (now cancelled) runs: each is skipped, nothing is journaled twice.
  const again = await connectJson("StartBatch", { filter, operation: "BATCH_OPERATION_CANCEL" });
  const second = await finished((again.json.batch as { batchId: string }).batchId);
  assert.deepEqual([second.processedCount, second.skippedCount, second.failedCount], [1000, 1000, 0]);
  assert.deepEqual([...(await entriesOf("run_cancelled", selected)).values()].filter((n) => n !== 1), []);

  const listed = await connectJson("ListBatches", {});
  assert.ok((listed.json.batches as { batchId: string }[]).some((b) => b.batchId === batchId));
});

test("a pause batch over a mix keeps per-run failures (ended runs) with their run ids; a resume batch undoes it", async () => {
  const waiting = await waitingRuns(6, { cohort: "mix" });
  // Three that end first: their event arrives and they complete.
  const ended = await Promise.all(
    [1, 2, 3].map(async (i) => (await sdk.createRun("waiter", { type: "mix.done", key: `e${i}` }, { eagerStart: true, metadata: { cohort: "mix" } })).runId),
  );
  for (const [i] of ended.entries()) await sdk.sendEvent({ eventType: "mix.done", correlationId: `e${i + 1}`, payload: i });
  for (const runId of ended) await sdk.waitForResult(runId, { timeoutMs: 10_000 });
  // One already paused: skipped.
  await sdk.pauseRun(waiting[0]!, "paused by hand");

  const metricsBefore = await scrape(`${server.url}/metrics`);
  const started = await sdk.startBatch({ filter: { metadata: { cohort: "mix" } }, operation: "pause", reason: "maintenance" });
  assert.ok(!started.dryRun);
  assert.equal(started.matchedCount, 9);
  const paused = await finished(started.batch.batchId);
  assert.equal(paused.status, "completed");
  assert.deepEqual([paused.processedCount, paused.skippedCount, paused.failedCount], [9, 1, 3]);
  const metricsAfter = await scrape(`${server.url}/metrics`);
  const moved = (outcome: string) =>
    valueOf(metricsAfter, "cairn_batch_runs_total", { operation: "pause", outcome }) - valueOf(metricsBefore, "cairn_batch_runs_total", { operation: "pause", outcome });
  assert.deepEqual([moved("done"), moved("skipped"), moved("failed")], [5, 1, 3], "cairn_batch_runs_total counts each run once by outcome");
  assert.deepEqual(paused.failures.map((f) => f.runId).sort(), [...ended].sort());
  for (const failure of paused.failures) assert.match(failure.message, /already ended \(COMPLETED\)/);
  assert.deepEqual(await statusesOf(waiting), { paused: 6 });
  assert.deepEqual(await statusesOf(ended), { completed: 3 });
  assert.deepEqual([...(await entriesOf("run_paused", waiting)).values()], [1, 1, 1, 1, 1, 1]);
  assert.deepEqual([...(await entriesOf("run_paused", ended)).values()], [0, 0, 0]);

  // Over plain fetch: GetBatch shows the same failures.
  const got = await connectJson("GetBatch", { batchId: paused.batchId });
  const failures = (got.json.batch as { failures: { runId: string; message: string }[] }).failures;
  assert.deepEqual(failures.map((f) => f.runId).sort(), [...ended].sort());

  const resumed = await finished(((await connectJson("StartBatch", { filter: { metadata: { cohort: "mix" } }, operation: "BATCH_OPERATION_RESUME" })).json.batch as { batchId: string }).batchId);
  assert.deepEqual([resumed.processedCount, resumed.skippedCount, resumed.failedCount], [9, 0, 3]);
  for (const failure of resumed.failures) assert.match(failure.message, /not paused \(COMPLETED\)/);
  const deadline = Date.now() + 10_000;
  while ((await statusesOf(waiting)).waiting !== 6 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(await statusesOf(waiting), { waiting: 6 }, "resumed runs park on their event again");
  assert.deepEqual([...(await entriesOf("run_resumed", waiting)).values()], [1, 1, 1, 1, 1, 1]);
});

test("a cancel batch over parents and plain runs: parents (one by one) end their attached children, plain runs take the fast path", async () => {
  const plain = await waitingRuns(3, { cohort: "family" });
  const parents = await Promise.all(
    [1, 2, 3].map(async (i) => (await sdk.createRun("parent_of_waiters", { key: `fam-${i}-${Date.now()}` }, { eagerStart: true, metadata: { cohort: "family" } })).runId),
  );
  const children = async () =>
    sql<{ id: string; detached: boolean; status: string }>("select id, detached, status from runs where parent_run_id = any($1)", [parents]);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const kids = await children();
    const parentsWaiting = (await statusesOf(parents)).waiting === 3;
    if (parentsWaiting && kids.length === 6 && kids.every((k) => k.status === "waiting")) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.deepEqual(await statusesOf(parents), { waiting: 3 });

  const started = await sdk.startBatch({ filter: { metadata: { cohort: "family" } }, operation: "cancel" });
  assert.ok(!started.dryRun);
  assert.equal(started.matchedCount, 6, "children carry no metadata: only the parents and the plain runs are selected");
  const done = await finished(started.batch.batchId);
  assert.deepEqual([done.processedCount, done.skippedCount, done.failedCount], [6, 0, 0]);
  assert.deepEqual(await statusesOf([...plain, ...parents]), { cancelled: 6 });
  const kids = await children();
  assert.deepEqual(kids.filter((k) => !k.detached).map((k) => k.status), ["cancelled", "cancelled", "cancelled"], "attached children end with their parent");
  assert.deepEqual(kids.filter((k) => k.detached).map((k) => k.status), ["waiting", "waiting", "waiting"], "detached children run on");
  assert.deepEqual([...(await entriesOf("run_cancelled", [...plain, ...parents, ...kids.map((k) => k.id)])).values()].sort(), [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  const [why] = await sql<{ message: string }>("select error->>'message' as message from runs where id = $1", [kids.find((k) => !k.detached)!.id]);
  assert.match(why!.message, /^parent run .* was cancelled: cancelled by batch /);
});

test("retry: each failed run is retried once (its run_retried entry), a run in another state is a listed failure", async () => {
  const waiting = await waitingRuns(2, { cohort: "retry" });
  const failed = (await Promise.all([1, 2, 3].map(() => sdk.createRun("broken", {}, { eagerStart: true, metadata: { cohort: "retry" } })))).map((c) => c.runId);
  const deadline = Date.now() + 20_000;
  while ((await statusesOf(failed)).failed !== 3) {
    if (Date.now() > deadline) throw new Error(`runs never failed: ${JSON.stringify(await statusesOf(failed))}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const started = await sdk.startBatch({ filter: { metadata: { cohort: "retry" } }, operation: "retry", reason: "flaky dependency fixed" });
  assert.ok(!started.dryRun);
  const done = await finished(started.batch.batchId);
  assert.deepEqual([done.status, done.processedCount, done.failedCount], ["completed", 5, 2]);
  assert.deepEqual(done.failures.map((failure) => failure.runId).sort(), [...waiting].sort());
  for (const failure of done.failures) assert.match(failure.message, /only a FAILED run can be retried/);
  assert.deepEqual([...(await entriesOf("run_retried", failed)).values()], [1, 1, 1]);
  assert.deepEqual([...(await entriesOf("run_retried", waiting)).values()], [0, 0]);
  assert.deepEqual(await statusesOf(waiting), { waiting: 2 });
});

test("bad input: no filter or an empty one is INVALID_ARGUMENT naming why, no operation too; unknown batch is NOT_FOUND; nothing is stored", async () => {
  await waitingRuns(2, { cohort: "bad" });
  const before = await storedBatches();
  const [runsBefore] = await sql<{ n: number }>("select count(*)::int as n from journal_entries where kind in ('run_cancelled', 'run_paused')");

  for (const filter of [{}, { workflow: "", metadata: {} }, { statuses: [] }]) {
    await assert.rejects(sdk.startBatch({ filter, operation: "cancel" }), (error: unknown) => {
      assert.ok(error instanceof CairnError, String(error));
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /would select every run/);
      return true;
    });
  }
  for (const body of [{ operation: "BATCH_OPERATION_CANCEL" }, { operation: "BATCH_OPERATION_CANCEL", filter: {} }, { operation: "BATCH_OPERATION_PAUSE", filter: { workflowName: "" }, dryRun: true }]) {
    const answer = await connectJson("StartBatch", body);
    assert.equal(answer.status, 400, JSON.stringify(answer.json));
    assert.equal(answer.json.code, "invalid_argument");
    assert.match(String(answer.json.message), /filter/);
  }
  const noOperation = await connectJson("StartBatch", { filter: { metadata: { cohort: "bad" } } });
  assert.equal(noOperation.json.code, "invalid_argument");
  assert.match(String(noOperation.json.message), /operation/);
  const unknownField = await connectJson("StartBatch", { filter: { metdata: { cohort: "bad" } }, operation: "BATCH_OPERATION_CANCEL" });
  assert.equal(unknownField.json.code, "invalid_argument");
  assert.deepEqual(await storedBatches(), before);
  const [runsAfter] = await sql<{ n: number }>("select count(*)::int as n from journal_entries where kind in ('run_cancelled', 'run_paused')");
  assert.deepEqual(runsAfter, runsBefore);

  const unknown = "00000000-0000-4000-8000-000000000000";
  await assert.rejects(sdk.getBatch(unknown), (error: unknown) => error instanceof CairnError && error.code === Code.NotFound && /not found/.test(error.rawMessage));
  const notFound = await connectJson("GetBatch", { batchId: unknown });
  assert.equal(notFound.status, 404);
  assert.equal(notFound.json.code, "not_found");
  const malformed = await connectJson("GetBatch", { batchId: "nope" });
  assert.equal(malformed.json.code, "invalid_argument");
});

test("REST: POST /workflows/batches starts one (snake_case body), GET /workflows/batches/{id} shows it; bad bodies are 400", async () => {
  const runs = await waitingRuns(5, { cohort: "rest" });
  const post = (body: unknown) =>
    fetch(`${server.url}/workflows/batches`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const dry = await post({ filter: { metadata: { cohort: "rest" } }, operation: "BATCH_OPERATION_PAUSE", dry_run: true });
  assert.equal(dry.status, 200);
  const dryJson = (await dry.json()) as { matched_count: string; sample_run_ids: string[] };
  assert.equal(dryJson.matched_count, "5");
  assert.deepEqual([...dryJson.sample_run_ids].sort(), [...runs].sort());

  const started = await post({ filter: { metadata: { cohort: "rest" } }, operation: "BATCH_OPERATION_PAUSE", reason: "rest" });
  assert.equal(started.status, 200);
  const batchId = ((await started.json()) as { batch: { batch_id: string } }).batch.batch_id;
  await finished(batchId);
  const got = await fetch(`${server.url}/workflows/batches/${batchId}`);
  assert.equal(got.status, 200);
  const batch = ((await got.json()) as { batch: Record<string, unknown> }).batch;
  assert.deepEqual([batch.status, batch.processed_count, batch.selected_count], ["BATCH_STATUS_COMPLETED", "5", "5"]);
  assert.deepEqual(await statusesOf(runs), { paused: 5 });

  const before = await storedBatches();
  const empty = await post({ operation: "BATCH_OPERATION_CANCEL", filter: {} });
  assert.equal(empty.status, 400);
  assert.match(((await empty.json()) as { message: string }).message, /would select every run/);
  const misspelt = await post({ operation: "BATCH_OPERATION_CANCEL", filter: { metdata: { cohort: "rest" } } });
  assert.equal(misspelt.status, 400);
  assert.deepEqual(await storedBatches(), before);
  assert.equal((await fetch(`${server.url}/workflows/batches/00000000-0000-4000-8000-000000000000`)).status, 404);
});
