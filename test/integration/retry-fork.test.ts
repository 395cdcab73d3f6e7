/**
 * RetryRun and ForkRun on PostgreSQL, through the SDK, plain fetch (Connect JSON) and the REST routes. Steps
 * count every real execution in a side table (test/fixtures/retry-fork-workflows), so "replayed, not run
 * again" is checked against what actually ran; bad requests are checked to change nothing.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCairnClient, type CairnClient, type HistoryEntryInfo, type RunInfo } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { closeSidePool, side, sideTablesSql } from "../fixtures/retry-fork-workflows/retry-fork.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { postConnectJson, untilStatus } from "../support/connect-json.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("retry_fork");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  side.url = database.url;
  await withClient(databaseUrl, (db) => db.query(sideTablesSql));
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/retry-fork-workflows", CAIRN_POLL_INTERVAL_MS: "50" }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await closeSidePool();
  await dropDatabase?.();
});

const connectJson = (method: string, body: unknown) => postConnectJson(server.url, method, body);

const until = (runId: string, status: RunInfo["status"], timeoutMs?: number) => untilStatus(sdk, runId, status, timeoutMs);

/** The real executions of each step of `runId`: step → attempts (and labels), in order. */
const callsOf = (runId: string) =>
  withClient(databaseUrl, async (db) => {
    const rows = (await db.query("select step, attempt, label from step_calls where run_id = $1 order by ctid", [runId])).rows;
    const calls: Record<string, string[]> = {};
    for (const row of rows) (calls[row.step] ??= []).push(row.label ? `${row.attempt}:${row.label}` : String(row.attempt));
    return calls;
  });

const rowOf = (runId: string) =>
  withClient(databaseUrl, async (db) => {
    const run = (await db.query("select status, error, completed_at, lease_epoch, forked_from_run_id from runs where id = $1", [runId])).rows[0];
    const entries = (await db.query("select sequence, kind, name from journal_entries where run_id = $1 order by sequence", [runId])).rows.map(
      (r) => `${r.sequence} ${r.kind}${r.name ? ` ${r.name}` : ""}`,
    );
    return { ...run, entries };
  });

/** An ended run's history through the SDK (WatchRun of an ended run answers its history and ends). */
async function historyOf(runId: string): Promise<HistoryEntryInfo[]> {
  const entries: HistoryEntryInfo[] = [];
  for await (const update of sdk.watchRun(runId)) if (update.type === "entry") entries.push(update.entry);
  return entries;
}

const runCount = () => withClient(databaseUrl, async (db) => Number((await db.query("select count(*) from runs")).rows[0].count));
const setFlag = (key: string) => withClient(databaseUrl, (db) => db.query("insert into retry_flags (key) values ($1)", [key]));

async function expectCode(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof CairnError, String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.rawMessage, message);
    return true;
  });
}

test("RetryRun (SDK): a failed run continues where it failed; completed steps are not run again, the failed step gets a fresh budget, twice", async () => {
  const key = `k-sdk-${Date.now()}`;
  const { runId } = await sdk.createRun("flagged_charge", { key }, { eagerStart: true });
  const failed = await until(runId, "failed");
  assert.match(failed.error?.message ?? "", /no flag for/);
  assert.deepEqual(await callsOf(runId), { prepare: ["1"], charge: ["1", "2"] });

  // A retry without the flag: the charge step runs again from attempt 1 (not 3) and fails again after 2 attempts.
  const retried = await sdk.retryRun(runId, { reason: "partner was down" });
  assert.equal(retried.status, "queued");
  assert.equal(retried.error, undefined);
  await until(runId, "failed");
  assert.deepEqual(await callsOf(runId), { prepare: ["1"], charge: ["1", "2", "1", "2"] });

  // Second retry with the flag set: completes; prepare still ran exactly once, ship once.
  await setFlag(key);
  assert.equal((await sdk.retryRun(runId)).status, "queued");
  // The run is no longer FAILED: another RetryRun is refused, whatever it has reached meanwhile.
  await expectCode(sdk.retryRun(runId), Code.FailedPrecondition, /only a FAILED run can be retried/);
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { prepared: "prepared", charged: "charged", shipped: "shipped" });
  assert.deepEqual(await callsOf(runId), { prepare: ["1"], charge: ["1", "2", "1", "2", "1"], ship: ["1"] });

  // The history is append-only: every earlier entry is still there, each retry shows.
  assert.deepEqual((await rowOf(runId)).entries, [
    "1 step_completed prepare",
    "2 step_attempt_failed charge",
    "3 step_failed charge",
    "4 run_failed",
    "5 run_retried",
    "6 step_attempt_failed charge",
    "7 step_failed charge",
    "8 run_failed",
    "9 run_retried",
    "10 step_completed charge",
    "11 step_completed ship",
    "12 run_completed",
  ]);
  // The watch stream (the SDK's history) shows them.
  const retries = (await historyOf(runId)).filter((entry) => entry.kind === "run_retried");
  assert.deepEqual(
    retries.map((entry) => entry.summary),
    ["run retried: partner was down (replay skips entries 2, 3, 4)", "run retried (replay skips entries 6, 7, 8)"],
  );
  assert.deepEqual(retries[0]?.result, { supersedes: [2, 3, 4] });
});

test("RetryRun through plain fetch (Connect JSON)", async () => {
  const key = `k-json-${Date.now()}`;
  const { runId } = await sdk.createRun("flagged_charge", { key }, { eagerStart: true });
  await until(runId, "failed");
  await setFlag(key);
  const retried = await connectJson("RetryRun", { runId, reason: "by fetch" });
  assert.equal(retried.status, 200, JSON.stringify(retried.json));
  assert.equal((retried.json.run as { status: string }).status, "RUN_STATUS_QUEUED");
  await until(runId, "completed");
  assert.deepEqual(await callsOf(runId), { prepare: ["1"], charge: ["1", "2", "1"], ship: ["1"] });
  const history = await connectJson("GetRunHistory", { runId });
  const entries = history.json.entries as { kind: string; summary: string }[];
  assert.deepEqual(
    entries.map((entry) => entry.kind),
    [
      "ENTRY_KIND_STEP_COMPLETED",
      "ENTRY_KIND_STEP_ATTEMPT_FAILED",
      "ENTRY_KIND_STEP_FAILED",
      "ENTRY_KIND_RUN_FAILED",
      "ENTRY_KIND_RUN_RETRIED",
      "ENTRY_KIND_STEP_COMPLETED",
      "ENTRY_KIND_STEP_COMPLETED",
      "ENTRY_KIND_RUN_COMPLETED",
    ],
  );
  assert.match(entries[4]?.summary ?? "", /^run retried: by fetch/);
  const again = await connectJson("RetryRun", { runId });
  assert.equal(again.json.code, "failed_precondition", JSON.stringify(again.json));
});

test("ForkRun (SDK) from the third of five steps with a new input: steps 1-2 replayed, 3-5 run live with the new input", async () => {
  const { runId: source } = await sdk.createRun("five_steps", { label: "a" }, { eagerStart: true });
  await sdk.waitForResult(source, { timeoutMs: 10_000 });
  const sourceBefore = await rowOf(source);
  const sourceCalls = await callsOf(source);
  assert.deepEqual(sourceCalls, { s1: ["1:a"], s2: ["1:a"], s3: ["1:a"], s4: ["1:a"], s5: ["1:a"] });

  const fork = await sdk.forkRun(source, { fromOperation: "s3", input: { label: "b" } });
  assert.notEqual(fork.runId, source);
  assert.equal(fork.forkedFromRunId, source);
  assert.equal(fork.workflowName, "five_steps");
  assert.deepEqual(fork.input, { label: "b" });
  assert.deepEqual(await sdk.waitForResult(fork.runId, { timeoutMs: 10_000 }), { results: ["s1:a", "s2:a", "s3:b", "s4:b", "s5:b"] });
  // Steps 1-2 never ran for the fork; 3-5 ran once each with the new input; the source is untouched.
  assert.deepEqual(await callsOf(fork.runId), { s3: ["1:b"], s4: ["1:b"], s5: ["1:b"] });
  assert.deepEqual(await callsOf(source), sourceCalls);
  assert.deepEqual(await rowOf(source), sourceBefore);

  const forked = await rowOf(fork.runId);
  assert.equal(forked.forked_from_run_id, source);
  assert.deepEqual(forked.entries, [
    "1 run_forked",
    "2 step_completed s1",
    "3 step_completed s2",
    "4 step_completed s3",
    "5 step_completed s4",
    "6 step_completed s5",
    "7 run_completed",
  ]);
  const [first] = await historyOf(fork.runId);
  assert.equal(first?.kind, "run_forked");
  assert.equal(first?.summary, `run forked from run ${source} at s3`);
  assert.deepEqual(first?.result, { sourceRunId: source, fromOperation: "s3", fromSequence: 3 });
  assert.equal((await sdk.getRun(fork.runId)).forkedFromRunId, source);
});

test("ForkRun through plain fetch (Connect JSON), keeping the source's input, from a failed source", async () => {
  const key = `k-fork-${Date.now()}`;
  const { runId: source } = await sdk.createRun("flagged_charge", { key }, { eagerStart: true });
  await until(source, "failed");
  await setFlag(key);
  const forked = await connectJson("ForkRun", { runId: source, fromOperation: "charge" });
  assert.equal(forked.status, 200, JSON.stringify(forked.json));
  const run = forked.json.run as { runId: string; forkedFromRunId: string; input: unknown };
  assert.equal(run.forkedFromRunId, source);
  assert.deepEqual(run.input, { key });
  await until(run.runId, "completed");
  assert.deepEqual(await callsOf(run.runId), { charge: ["1"], ship: ["1"] });
  assert.equal((await sdk.getRun(source)).status, "failed");
  const got = await connectJson("GetRun", { runId: run.runId });
  assert.equal((got.json.run as { forkedFromRunId: string }).forkedFromRunId, source);
  const history = await connectJson("GetRunHistory", { runId: run.runId });
  const first = (history.json.entries as { kind: string; targetRunId: string; result: unknown }[])[0];
  assert.equal(first?.kind, "ENTRY_KIND_RUN_FORKED");
  assert.equal(first?.targetRunId, source);
  assert.deepEqual(first?.result, { sourceRunId: source, fromOperation: "charge", fromSequence: 2 });
});

test("bad requests: the right code and nothing changed (SDK and Connect JSON)", async () => {
  const { runId: done } = await sdk.createRun("five_steps", { label: "done" }, { eagerStart: true });
  await sdk.waitForResult(done, { timeoutMs: 10_000 });
  const before = await rowOf(done);
  const runsBefore = await runCount();

  await expectCode(sdk.retryRun(done), Code.FailedPrecondition, /is COMPLETED; only a FAILED run can be retried/);
  await expectCode(sdk.forkRun(done, { fromOperation: "s9" }), Code.FailedPrecondition, /never reached operation "s9"/);
  await expectCode(sdk.forkRun(done, { fromOperation: "" }), Code.InvalidArgument, /from_operation/);
  await expectCode(sdk.forkRun(done, { fromOperation: "s2", input: [1] as never }), Code.InvalidArgument, /input must be a JSON object/);
  const unknown = "00000000-0000-4000-8000-000000000000";
  await expectCode(sdk.retryRun(unknown), Code.NotFound, /not found/);
  await expectCode(sdk.forkRun(unknown, { fromOperation: "s1" }), Code.NotFound, /not found/);

  const json = await connectJson("RetryRun", { runId: done });
  assert.equal(json.json.code, "failed_precondition");
  const jsonFork = await connectJson("ForkRun", { runId: done, fromOperation: "nowhere" });
  assert.equal(jsonFork.json.code, "failed_precondition");
  assert.match(String(jsonFork.json.message), /"nowhere"/);
  assert.equal((await connectJson("RetryRun", { runId: unknown })).json.code, "not_found");
  assert.equal((await connectJson("ForkRun", { runId: unknown, fromOperation: "s1" })).json.code, "not_found");
  assert.equal((await connectJson("ForkRun", { runId: done, fromOperation: "s1", fromOp: "x" })).json.code, "invalid_argument");

  assert.deepEqual(await rowOf(done), before);
  assert.equal(await runCount(), runsBefore);
});

test("the REST routes POST /workflows/runs/{id}/retry and /fork", async () => {
  const key = `k-rest-${Date.now()}`;
  const { runId } = await sdk.createRun("flagged_charge", { key }, { eagerStart: true });
  await until(runId, "failed");
  const post = async (id: string, path: string, body?: string) => {
    const response = await fetch(`${server.url}/workflows/runs/${id}/${path}`, {
      method: "POST",
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body }),
    });
    return { status: response.status, json: (await response.json()) as { run?: { run_id: string; status: string; forked_from_run_id?: string }; code?: string; message?: string } };
  };
  const misspelt = await post(runId, "retry", '{"reson": "typo"}');
  assert.equal(misspelt.status, 400);
  assert.match(String(misspelt.json.message), /"reson" is unknown/);
  assert.equal((await sdk.getRun(runId)).status, "failed");

  const forkedEarly = await post(runId, "fork", '{"from_operation": "charge"}');
  assert.equal(forkedEarly.status, 200, JSON.stringify(forkedEarly.json));
  assert.equal(forkedEarly.json.run?.forked_from_run_id, runId);

  await setFlag(key);
  const retried = await post(runId, "retry", '{"reason": "via rest"}');
  assert.equal(retried.status, 200, JSON.stringify(retried.json));
  assert.equal(retried.json.run?.status, "RUN_STATUS_QUEUED");
  await until(runId, "completed");
  const again = await post(runId, "retry");
  assert.equal(again.status, 409);
  assert.equal(again.json.code, "failed_precondition");

  const unreached = await post(runId, "fork", '{"from_operation": "nope"}');
  assert.equal(unreached.status, 409);
  const noBody = await post(runId, "fork");
  assert.equal(noBody.status, 400);
  const get = await fetch(`${server.url}/workflows/runs/${runId}/retry`);
  assert.equal(get.status, 405);
});

test("a failed child whose parent already received its failure is refused; nothing changed", async () => {
  const { runId: parent } = await sdk.createRun("parent_of_failing", {}, { eagerStart: true });
  await until(parent, "failed");
  const [child] = (await sdk.listRunsPage({ parentRunId: parent })).runs;
  assert.ok(child);
  assert.equal(child.status, "failed");
  const before = await rowOf(child.runId);
  await expectCode(sdk.retryRun(child.runId), Code.FailedPrecondition, new RegExp(`parent ${parent} already received its failure`));
  const json = await connectJson("RetryRun", { runId: child.runId });
  assert.equal(json.json.code, "failed_precondition");
  assert.deepEqual(await rowOf(child.runId), before);
});
