/**
 * Workflow evolution with real server processes (DESIGN §12): a run recorded on v1 of "order_fee" (waiting for
 * its payment) survives a restart on v2, which adds a fee step behind ctx.patched("new-fee"): the old run takes
 * the old branch, a new run the new one; v3 deprecates the patch and still replays v2 journals. The same change
 * without a patch pauses the old run with a readable reason; the reverted code and ResumeRun complete it.
 * ctx.now / ctx.random / ctx.uuid come back the same after a restart and share their commit with the next entry.
 * Through the SDK and through plain fetch (Connect JSON).
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient, type RunInfo } from "../../sdk/client.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

const dirs = (version: string) => [`test/fixtures/evolution-workflows/${version}`, "test/fixtures/evolution-workflows/common"];

let db: TestDatabase;
let server: ServerProcess | undefined;
let sdk: CairnClient;

beforeAll(async () => {
  db = await createTestDatabase("evolution");
});

afterAll(async () => {
  await stopAllServerProcesses();
  await db?.drop();
});

/** Stops the current server (SIGTERM hands its runs back) and starts one on `version`'s workflow files. */
async function deploy(version: string): Promise<void> {
  if (server) {
    server.kill("SIGTERM");
    await server.exited;
  }
  server = await startServerProcess({ databaseUrl: db.url, workflowDirs: dirs(version), name: `server-${version}` });
  sdk = createCairnClient({ baseUrl: server.url });
}

async function until(runId: string, status: RunInfo["status"], timeoutMs = 15_000): Promise<RunInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await sdk.getRun(runId);
    if (run.status === status) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} is ${run.status}, not ${status}, after ${timeoutMs} ms: ${JSON.stringify(run.error)}`);
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}

async function connectJson(method: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${server?.url}/cairn.v1.WorkflowService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

type Row = { sequence: number; kind: string; name: string; xmin: string };
const entries = (runId: string) =>
  withClient(db.url, async (c) => (await c.query("select sequence, kind, name, xmin::text from journal_entries where run_id = $1 order by sequence", [runId])).rows as Row[]);
const named = (rows: Row[]) => rows.map((row) => `${row.kind}:${row.name}`);

test("patched: a v1 run takes the old branch on v2, a new run the new one; deprecatePatch on v3 accepts both", async () => {
  await deploy("v1");
  const old = await sdk.createRun("order_fee", { order: "o-old" }, { eagerStart: true });
  await until(old.runId, "waiting");
  assert.deepEqual(named(await entries(old.runId)), ["step_completed:charge", "event_wait_started:paid"]);

  await deploy("v2");
  const fresh = await sdk.createRun("order_fee", { order: "o-new" }, { eagerStart: true });
  await until(fresh.runId, "waiting");
  const freshRows = await entries(fresh.runId);
  assert.deepEqual(named(freshRows), ["patch_marked:$patch:new-fee", "step_completed:charge", "event_wait_started:paid"]);
  // The marker rode on the charge step's write: one transaction for both.
  assert.equal(freshRows[0]?.xmin, freshRows[1]?.xmin);

  await sdk.sendEvent({ eventType: "order.paid", correlationId: "o-old", payload: { ok: 1 } });
  // The independent client: plain Connect JSON.
  const sent = await connectJson("SendEvent", { eventType: "order.paid", correlationId: "o-new", payload: { ok: 2 } });
  assert.equal(sent.status, 200, JSON.stringify(sent.json));
  assert.deepEqual(await sdk.waitForResult(old.runId, { timeoutMs: 15_000 }), { charged: 10, paid: { ok: 1 }, fee: 0 });
  assert.deepEqual(await sdk.waitForResult(fresh.runId, { timeoutMs: 15_000 }), { charged: 10, paid: { ok: 2 }, fee: 2 });
  assert.deepEqual(named(await entries(old.runId)), ["step_completed:charge", "event_wait_started:paid", "event_received:paid", "run_completed:"]);

  // A v2 run still waiting when v3 (deprecatePatch, old branch gone) is deployed, and a run started on v3.
  const v2run = await sdk.createRun("order_fee", { order: "o-v2" }, { eagerStart: true });
  await until(v2run.runId, "waiting");
  await deploy("v3");
  const v3run = await sdk.createRun("order_fee", { order: "o-v3" }, { eagerStart: true });
  await until(v3run.runId, "waiting");
  assert.deepEqual(named(await entries(v3run.runId)), ["step_completed:charge", "event_wait_started:paid"]);
  await sdk.sendEvent({ eventType: "order.paid", correlationId: "o-v2", payload: { ok: 3 } });
  await sdk.sendEvent({ eventType: "order.paid", correlationId: "o-v3", payload: { ok: 4 } });
  assert.deepEqual(await sdk.waitForResult(v2run.runId, { timeoutMs: 15_000 }), { charged: 10, paid: { ok: 3 }, fee: 2 });
  assert.deepEqual(await sdk.waitForResult(v3run.runId, { timeoutMs: 15_000 }), { charged: 10, paid: { ok: 4 }, fee: 2 });
  const history = await connectJson("GetRunHistory", { runId: v2run.runId });
  assert.equal((history.json.entries as { kind: string }[])[0]?.kind, "ENTRY_KIND_PATCH_MARKED");
});

test("without a patch the old run pauses with a readable reason; reverted code and ResumeRun complete it", async () => {
  await deploy("v1");
  const old = await sdk.createRun("order_fee", { order: "o-diverge" }, { eagerStart: true });
  await until(old.runId, "waiting");
  const effectsBefore = await entries(old.runId);

  await deploy("unpatched");
  await sdk.sendEvent({ eventType: "order.paid", correlationId: "o-diverge", payload: { ok: 5 } });
  const paused = await until(old.runId, "paused");
  assert.equal(paused.status, "paused");
  const rows = await entries(old.runId);
  // SendEvent journaled the event for the waiting run; the changed code then started "fee" (journaled while
  // replaying) and found the journal's "paid" it no longer starts.
  assert.deepEqual(named(rows).slice(0, effectsBefore.length), named(effectsBefore));
  assert.deepEqual(named(rows).slice(effectsBefore.length), ["event_received:paid", "step_completed:fee", "run_paused:"]);
  const json = await connectJson("GetRunHistory", { runId: old.runId });
  const pauseEntry = (json.json.entries as { kind: string; summary: string; error?: { name: string; message: string } }[]).find(
    (entry) => entry.kind === "ENTRY_KIND_RUN_PAUSED",
  );
  assert.equal(pauseEntry?.error?.name, "DeterminismError");
  assert.match(pauseEntry?.error?.message ?? "", /records "paid" \(event_wait_started\) next, but workflow "order_fee" did not start that operation \(it started "fee" \(step\) instead\)/);
  assert.match(pauseEntry?.error?.message ?? "", /code changed under a running run .*ctx\.patched.*clocks, randomness or I\/O outside steps/);
  assert.match(pauseEntry?.summary ?? "", /\(replay skips entries 4\)$/);
  // The status through the independent client.
  const got = await connectJson("GetRun", { runId: old.runId });
  assert.equal((got.json.run as { status: string }).status, "RUN_STATUS_PAUSED");
  const explained = await connectJson("ExplainRun", { runId: old.runId });
  assert.match(String(explained.json.pauseReason), /records "paid" \(event_wait_started\) next/);

  await deploy("v1");
  const resumed = await connectJson("ResumeRun", { runId: old.runId, reason: "v1 is back" });
  assert.equal(resumed.status, 200, JSON.stringify(resumed.json));
  assert.deepEqual(await sdk.waitForResult(old.runId, { timeoutMs: 15_000 }), { charged: 10, paid: { ok: 5 }, fee: 0 });
  // v1 replayed past the superseded "fee" entry: it stays in the history, nothing new ran.
  assert.deepEqual(named(await entries(old.runId)).slice(2), ["event_received:paid", "step_completed:fee", "run_paused:", "run_resumed:", "run_completed:"]);
});

test("ctx.now/random/uuid: the same values after a restart, journaled in the next entry's transaction", async () => {
  await deploy("v1");
  const run = await sdk.createRun("stamped", { key: "s-1" }, { eagerStart: true });
  await until(run.runId, "waiting");
  const rows = await entries(run.runId);
  assert.deepEqual(named(rows), ["now_recorded:$now#1", "random_recorded:$random#1", "uuid_recorded:$uuid#1", "step_completed:use", "event_wait_started:go"]);
  // No commit of their own: the three values share the step's transaction.
  assert.equal(new Set(rows.slice(0, 4).map((row) => row.xmin)).size, 1);

  await deploy("v2");
  await sdk.sendEvent({ eventType: "stamp.go", correlationId: "s-1" });
  const output = (await sdk.waitForResult(run.runId, { timeoutMs: 15_000 })) as { seen: unknown; replayed: unknown; last: string };
  assert.deepEqual(output.replayed, output.seen);
  // The uuid drawn after the last write is journaled before the run's end.
  const after = await entries(run.runId);
  assert.deepEqual(named(after).slice(-2), ["uuid_recorded:$uuid#2", "run_completed:"]);
  const history = await connectJson("GetRunHistory", { runId: run.runId });
  const kinds = (history.json.entries as { kind: string }[]).map((entry) => entry.kind);
  assert.deepEqual(kinds.slice(0, 3), ["ENTRY_KIND_NOW_RECORDED", "ENTRY_KIND_RANDOM_RECORDED", "ENTRY_KIND_UUID_RECORDED"]);
});

test("an unknown option key fails the run naming it; an operation left pending is logged at warn level", async () => {
  await deploy("v1");
  const typo = await sdk.createRun("typo_option", {}, { eagerStart: true });
  const failed = await until(typo.runId, "failed");
  assert.equal(failed.error?.name, "InvalidOperationError");
  const expected = 'ctx.step("pay"): unknown option maxAttempt in retry policy; known: maxAttempts, initialInterval, backoffCoefficient, maxInterval, jitter, nonRetryableErrors';
  assert.equal(failed.error?.message, expected);
  const got = await connectJson("GetRun", { runId: typo.runId });
  assert.equal((got.json.run as { status: string }).status, "RUN_STATUS_FAILED");
  assert.equal((got.json.run as { error: { message: string } }).error.message, expected);
  // Nothing ran for the misconfigured step: the journal holds only the run's end.
  assert.deepEqual(named(await entries(typo.runId)), ["run_failed:"]);

  const forgetful = await connectJson("CreateRun", { workflowName: "forgetful", eagerStart: true });
  assert.equal(forgetful.status, 200, JSON.stringify(forgetful.json));
  const runId = (forgetful.json.run as { runId: string }).runId;
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 15_000 }), "done");
  const warning = server?.logRecords().find((record) => record.runId === runId && record.level === 40);
  assert.match(String(warning?.msg), /workflow returned with operations still pending: forgotten-nap \(a missing await\?\)/);
});
