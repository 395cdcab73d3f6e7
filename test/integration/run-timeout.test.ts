/**
 * Run-level timeouts on PostgreSQL, through the SDK and through plain fetch (Connect JSON): a waiting run fails
 * with RunTimeoutError about a second after its deadline and its waiting child is cancelled; a running run
 * stops at once and fails the same way; a run that ends in time is untouched; defineWorkflow({ timeout }) is
 * the default and CreateRun's timeout overrides it; bad timeouts are INVALID_ARGUMENT and store nothing.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCairnClient, type CairnClient, type RunInfo } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { postConnectJson, untilStatus } from "../support/connect-json.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("run_timeout");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  // A slow poll: prompt timeouts must come from the timer, not from polling.
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/timeout-workflows", CAIRN_POLL_INTERVAL_MS: "10000" }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const connectJson = (method: string, body: unknown) => postConnectJson(server.url, method, body);

const until = (runId: string, status: RunInfo["status"], timeoutMs?: number) => untilStatus(sdk, runId, status, timeoutMs);

const kindsOf = (runId: string) =>
  withClient(databaseUrl, async (db) => (await db.query("select kind from journal_entries where run_id = $1 order by sequence", [runId])).rows.map((r) => r.kind as string));
const countRuns = () => withClient(databaseUrl, async (db) => Number((await db.query("select count(*) from runs")).rows[0].count));

test("a waiting run with a 1s timeout fails with RunTimeoutError within about a second, its waiting child cancelled (SDK)", async () => {
  const key = `t-${Date.now()}`;
  const { run: created } = await sdk.createRun("parent_waiter", { key }, { timeout: "1s", eagerStart: true });
  assert.ok(created.timeoutAt, "the run shows its timeout");
  assert.equal(created.timeoutAt.getTime() - created.createdAt.getTime(), 1000);
  const waiting = await until(created.runId, "waiting");
  const [child] = (await sdk.listRunsPage({ parentRunId: created.runId })).runs;
  assert.ok(child);
  await until(child.runId, "waiting");

  const failed = await until(created.runId, "failed", 5_000);
  const lateness = failed.completedAt!.getTime() - created.timeoutAt.getTime();
  assert.ok(lateness >= 0 && lateness < 1_000, `failed ${lateness} ms after its deadline`);
  assert.equal(failed.error?.name, "RunTimeoutError");
  assert.match(failed.error?.message ?? "", /did not end within its timeout of 1s/);
  assert.equal(waiting.status, "waiting");
  assert.deepEqual(await kindsOf(created.runId), ["child_started", "event_wait_started", "run_failed"]);

  const cancelled = await until(child.runId, "cancelled", 3_000);
  assert.match(cancelled.error?.message ?? "", /timed out/);
  assert.deepEqual(await kindsOf(child.runId), ["event_wait_started", "run_cancelled"]);
  // Nothing left parked on either.
  const waitsLeft = await withClient(databaseUrl, async (db) => Number((await db.query("select count(*) from waits where run_id = any($1)", [[created.runId, child.runId]])).rows[0].count));
  assert.equal(waitsLeft, 0);
});

test("a running run (a long step) with a timeout stops and fails with RunTimeoutError; its next step never runs (plain fetch)", async () => {
  const created = await connectJson("CreateRun", { workflowName: "long_step", input: {}, timeout: "1s", eagerStart: true });
  assert.equal(created.status, 200, JSON.stringify(created.json));
  const run = created.json.run as { runId: string; timeoutAt: string; createdAt: string };
  assert.equal(Date.parse(run.timeoutAt) - Date.parse(run.createdAt), 1000);
  await until(run.runId, "running");
  const failed = await until(run.runId, "failed", 5_000);
  assert.ok(failed.completedAt!.getTime() - Date.parse(run.timeoutAt) < 1_500);
  const got = await connectJson("GetRun", { runId: run.runId });
  const error = (got.json.run as { error: { name: string; message: string } }).error;
  assert.equal(error.name, "RunTimeoutError");
  assert.match(error.message, /timeout of 1s/);
  // The step's abort is not journaled as a result: the run's last entry is its failure.
  assert.deepEqual(await kindsOf(run.runId), ["run_failed"]);
});

test("a run that ends in time is unaffected, and the workflow's default applies (quick: 5s)", async () => {
  const { run: handle } = await sdk.createRun("quick", { n: 21 });
  assert.equal(handle.timeoutAt!.getTime() - handle.createdAt.getTime(), 5_000);
  assert.equal(await sdk.waitForResult(handle.runId, { timeoutMs: 5_000 }), 42);
  await new Promise((resolve) => setTimeout(resolve, 5_200));
  const after = await sdk.getRun(handle.runId);
  assert.equal(after.status, "completed");
  assert.deepEqual(await kindsOf(handle.runId), ["timer_started", "timer_fired", "step_completed", "run_completed"]);
});

test("defineWorkflow({ timeout: '1s' }) fails a waiting run; CreateRun's timeout overrides the default", async () => {
  const { run: byDefault } = await sdk.createRun("impatient", { key: `d-${Date.now()}` });
  const { run: overridden } = await sdk.createRun("impatient", { key: `o-${Date.now()}` }, { timeout: "1h" });
  const viaFetch = await connectJson("CreateRun", { workflowName: "impatient", input: { key: "f" }, timeout: "3600s" });
  assert.equal(byDefault.timeoutAt!.getTime() - byDefault.createdAt.getTime(), 1_000);
  assert.equal(overridden.timeoutAt!.getTime() - overridden.createdAt.getTime(), 3_600_000);
  const fetched = viaFetch.json.run as { runId: string; timeoutAt: string; createdAt: string };
  assert.equal(Date.parse(fetched.timeoutAt) - Date.parse(fetched.createdAt), 3_600_000);

  assert.equal((await until(byDefault.runId, "failed", 5_000)).error?.name, "RunTimeoutError");
  assert.equal((await sdk.getRun(overridden.runId)).status, "waiting");
  assert.equal((await sdk.getRun(fetched.runId)).status, "waiting");
  await sdk.cancelRun(overridden.runId);
  await sdk.cancelRun(fetched.runId);
});

test("a paused run fails at its timeout too (nobody holds it: at once, with run_failed after run_paused)", async () => {
  const { run } = await sdk.createRun("impatient", { key: `p-${Date.now()}` }, { timeout: "1500ms", eagerStart: true });
  await until(run.runId, "waiting");
  await sdk.pauseRun(run.runId, "looking");
  const failed = await until(run.runId, "failed", 5_000);
  assert.equal(failed.error?.name, "RunTimeoutError");
  assert.match(failed.error?.message ?? "", /timeout of 1\.5s/);
  assert.ok(failed.completedAt!.getTime() - run.timeoutAt!.getTime() < 1_000);
  assert.deepEqual(await kindsOf(run.runId), ["event_wait_started", "run_paused", "run_failed"]);
});

test("a run failed by its timeout and retried gets its whole timeout again: it waits, and its event completes it (plain fetch)", async () => {
  const key = `r-${Date.now()}`;
  const { run } = await sdk.createRun("impatient", { key }, { timeout: "1500ms", eagerStart: true });
  assert.equal((await until(run.runId, "failed", 5_000)).error?.name, "RunTimeoutError");

  const retriedAt = Date.now();
  const retried = await connectJson("RetryRun", { runId: run.runId, reason: "more patience" });
  assert.equal(retried.status, 200, JSON.stringify(retried.json));
  const timeoutAt = Date.parse((retried.json.run as { timeoutAt: string }).timeoutAt);
  assert.ok(Math.abs(timeoutAt - (retriedAt + 1500)) < 1000, `the new deadline is ${timeoutAt - retriedAt} ms after the retry`);
  await until(run.runId, "waiting");
  // Past the old deadline, well inside the new one: still waiting, not failed again.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal((await sdk.getRun(run.runId)).status, "waiting");
  await sdk.sendEvent({ eventType: "order.approved", correlationId: key, payload: { ok: true } });
  const completed = await until(run.runId, "completed", 5_000);
  assert.deepEqual(completed.output, { ok: true });
  assert.deepEqual(await kindsOf(run.runId), ["event_wait_started", "run_failed", "run_retried", "event_received", "run_completed"]);
});

test("bad timeouts are INVALID_ARGUMENT and store nothing (SDK and plain fetch)", async () => {
  const before = await countRuns();
  for (const timeout of ["abc", -5, "-1s"] as const) {
    await assert.rejects(sdk.createRun("quick", { n: 1 }, { timeout }), (error: unknown) => {
      assert.ok(error instanceof CairnError, String(error));
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /timeout/);
      return true;
    });
  }
  // Zero passes the client's parser and is refused by the server's rule.
  await assert.rejects(sdk.createRun("quick", { n: 1 }, { timeout: 0 }), (error: unknown) => {
    assert.ok(error instanceof CairnError, String(error));
    assert.equal(error.code, Code.InvalidArgument);
    assert.match(error.rawMessage, /timeout/);
    return true;
  });
  for (const timeout of ["abc", "0s", "-1s", 5]) {
    const answer = await connectJson("CreateRun", { workflowName: "quick", input: { n: 1 }, timeout });
    assert.equal(answer.status, 400, `${JSON.stringify(timeout)}: ${JSON.stringify(answer.json)}`);
    assert.equal(answer.json.code, "invalid_argument");
    // What is not a Duration in JSON ("abc", a bare number) fails decoding, naming the type; zero or negative, the field's rule.
    assert.match(String(answer.json.message), timeout === "0s" || timeout === "-1s" ? /timeout: .*\[duration\.gt\]/ : /google\.protobuf\.Duration/);
  }
  assert.equal(await countRuns(), before);
});
