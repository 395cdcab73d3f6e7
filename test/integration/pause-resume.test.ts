/**
 * PauseRun / ResumeRun on PostgreSQL, through the SDK and through plain fetch (Connect JSON): a paused waiting
 * run is not claimed when its event arrives or its timeout comes due; resumed, it completes with that event;
 * the history tells the story; bad requests are FAILED_PRECONDITION and change nothing.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCairnClient, type CairnClient, type RunInfo } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { pacedCalls } from "../fixtures/wait-workflows/waits.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { postConnectJson, untilStatus } from "../support/connect-json.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("pause_resume");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_POLL_INTERVAL_MS: "50" }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const connectJson = (method: string, body: unknown) => postConnectJson(server.url, method, body);

const until = (runId: string, status: RunInfo["status"], timeoutMs?: number) => untilStatus(sdk, runId, status, timeoutMs);

const rowOf = (runId: string) =>
  withClient(databaseUrl, async (db) => {
    const run = (await db.query("select status, activation_count, lease_owner from runs where id = $1", [runId])).rows[0];
    const entries = (await db.query("select kind from journal_entries where run_id = $1 order by sequence", [runId])).rows.map((r) => r.kind as string);
    return { ...run, entries };
  });

async function expectPrecondition(call: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof CairnError, String(error));
    assert.equal(error.code, Code.FailedPrecondition);
    assert.match(error.rawMessage, message);
    return true;
  });
}

test("a paused waiting run ignores its event and its due timeout until resumed, then completes with the event (SDK)", async () => {
  const key = `o-${Date.now()}`;
  const { runId } = await sdk.createRun("waiter", { type: "order.paid", key, timeout: "1s" }, { eagerStart: true });
  await until(runId, "waiting");

  const paused = await sdk.pauseRun(runId, "inspecting the order");
  assert.equal(paused.status, "paused");
  // A repeated pause (a retry after a lost reply) answers the same.
  assert.equal((await sdk.pauseRun(runId)).status, "paused");
  const before = await rowOf(runId);

  await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: { amount: 42 } });
  // Past the 1 s timeout and many polls: nothing claimed it, nothing was journaled.
  await new Promise((resolve) => setTimeout(resolve, 1_600));
  const during = await rowOf(runId);
  assert.deepEqual(during, before);
  assert.equal(during.status, "paused");
  assert.equal(during.lease_owner, null);
  assert.deepEqual((await sdk.listRunsPage({ statuses: ["paused"], pageSize: 1000 })).runs.map((run) => run.runId).includes(runId), true);

  const resumed = await sdk.resumeRun(runId, "order checked");
  assert.equal(resumed.status, "queued");
  // The event arrived before the timeout was looked at: the run completes with it, not with a timeout.
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { payload: { amount: 42 } });

  const kinds = (await rowOf(runId)).entries;
  assert.deepEqual(kinds, ["event_wait_started", "run_paused", "run_resumed", "event_received", "step_completed", "run_completed"]);
  const history: { kind: string; summary: string }[] = [];
  for await (const update of sdk.watchRun(runId)) if (update.type === "entry") history.push(update.entry);
  assert.deepEqual(
    history.filter((entry) => entry.kind.startsWith("run_")).map((entry) => [entry.kind, entry.summary]),
    [
      ["run_paused", "run paused: inspecting the order"],
      ["run_resumed", "run resumed: order checked"],
      ["run_completed", "run completed"],
    ],
  );
});

test("the same through plain fetch (Connect JSON), with RUN_STATUS_PAUSED and the history's entry kinds", async () => {
  const key = `o-json-${Date.now()}`;
  const { runId } = await sdk.createRun("waiter", { type: "order.paid", key }, { eagerStart: true });
  await until(runId, "waiting");

  const paused = await connectJson("PauseRun", { runId, reason: "by fetch" });
  assert.equal(paused.status, 200, JSON.stringify(paused.json));
  assert.equal((paused.json.run as { status: string }).status, "RUN_STATUS_PAUSED");
  await connectJson("SendEvent", { eventType: "order.paid", correlationId: key, payload: { via: "fetch" } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal((await sdk.getRun(runId)).status, "paused");

  const resumed = await connectJson("ResumeRun", { runId });
  assert.equal(resumed.status, 200, JSON.stringify(resumed.json));
  assert.equal((resumed.json.run as { status: string }).status, "RUN_STATUS_QUEUED");
  await until(runId, "completed");
  const history = await connectJson("GetRunHistory", { runId });
  const kinds = (history.json.entries as { kind: string }[]).map((entry) => entry.kind);
  assert.deepEqual(kinds.slice(0, 3), ["ENTRY_KIND_EVENT_WAIT_STARTED", "ENTRY_KIND_RUN_PAUSED", "ENTRY_KIND_RUN_RESUMED"]);
});

test("a running run stops at its next durable operation, paused; resumed, it goes on from its journal", async () => {
  const { runId } = await sdk.createRun("paced", { ms: 400 }, { eagerStart: true });
  await until(runId, "running");
  // Wait until step "one" has completed and "two" is under way, then pause: "two" finishing is the next write.
  for (let i = 0; i < 200 && (pacedCalls.get(runId) ?? []).length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(pacedCalls.get(runId), ["one", "two"]);
  const requested = await sdk.pauseRun(runId, "hold on");
  assert.equal(requested.status, "running");
  const paused = await until(runId, "paused");
  assert.equal(paused.status, "paused");
  // Step two's result was refused: the journal holds step one and the pause, nothing after it.
  assert.deepEqual((await rowOf(runId)).entries, ["step_completed", "run_paused"]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal((await sdk.getRun(runId)).status, "paused");

  await sdk.resumeRun(runId);
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { one: "one", two: "two" });
  // Step one replayed from the journal; step two, whose result never committed, ran again.
  assert.deepEqual(pacedCalls.get(runId), ["one", "two", "two"]);
  assert.deepEqual((await rowOf(runId)).entries, ["step_completed", "run_paused", "run_resumed", "step_completed", "run_completed"]);
});

test("the REST routes POST /workflows/runs/{id}/pause and /resume", async () => {
  const key = `o-rest-${Date.now()}`;
  const { runId } = await sdk.createRun("waiter", { type: "order.paid", key }, { eagerStart: true });
  await until(runId, "waiting");
  const post = async (path: string, body?: string) => {
    const response = await fetch(`${server.url}/workflows/runs/${runId}/${path}`, {
      method: "POST",
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body }),
    });
    return { status: response.status, json: (await response.json()) as { run?: { status: string }; code?: string; message?: string } };
  };
  const misspelt = await post("pause", '{"reson": "typo"}');
  assert.equal(misspelt.status, 400);
  assert.match(String(misspelt.json.message), /"reson" is unknown/);
  assert.equal((await sdk.getRun(runId)).status, "waiting");

  const paused = await post("pause", '{"reason": "via rest"}');
  assert.equal(paused.status, 200, JSON.stringify(paused.json));
  assert.equal(paused.json.run?.status, "RUN_STATUS_PAUSED");
  const resumed = await post("resume");
  assert.equal(resumed.status, 200, JSON.stringify(resumed.json));
  assert.equal(resumed.json.run?.status, "RUN_STATUS_QUEUED");
  const again = await post("resume");
  assert.equal(again.status, 409);
  assert.equal(again.json.code, "failed_precondition");
  const get = await fetch(`${server.url}/workflows/runs/${runId}/pause`);
  assert.equal(get.status, 405);
  await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: 1 });
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { payload: 1 });
  assert.deepEqual((await rowOf(runId)).entries.slice(0, 3), ["event_wait_started", "run_paused", "run_resumed"]);
});

test("bad requests are FAILED_PRECONDITION and change nothing", async () => {
  // ResumeRun of a run that is not paused.
  const key = `o-bad-${Date.now()}`;
  const { runId: waiting } = await sdk.createRun("waiter", { type: "order.paid", key }, { eagerStart: true });
  await until(waiting, "waiting");
  const before = await rowOf(waiting);
  await expectPrecondition(sdk.resumeRun(waiting), /is not paused \(WAITING\); only a paused run can be resumed/);
  assert.deepEqual(await rowOf(waiting), before);

  // PauseRun of an ended run; ResumeRun of it.
  const { runId: done } = await sdk.createRun("sleeper", { ms: 1 }, { eagerStart: true });
  await sdk.waitForResult(done, { timeoutMs: 10_000 });
  const ended = await rowOf(done);
  await expectPrecondition(sdk.pauseRun(done), /already ended \(COMPLETED\); only queued, running or waiting runs can be paused/);
  await expectPrecondition(sdk.resumeRun(done), /is not paused \(COMPLETED\)/);
  assert.deepEqual(await rowOf(done), ended);

  // A paused run can still be cancelled.
  await sdk.pauseRun(waiting);
  assert.equal((await sdk.cancelRun(waiting, "gave up")).status, "cancelled");
  assert.deepEqual((await rowOf(waiting)).entries, ["event_wait_started", "run_paused", "run_cancelled"]);

  // Over Connect JSON: the code and message.
  const refused = await connectJson("ResumeRun", { runId: done });
  assert.equal(refused.status, 400);
  assert.equal(refused.json.code, "failed_precondition");
  assert.match(String(refused.json.message), /is not paused \(COMPLETED\)/);
});
