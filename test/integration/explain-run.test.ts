/**
 * ExplainRun on PostgreSQL, through the SDK and through plain fetch (Connect JSON): an event wait names the
 * stored events that did not match and why; a queued run says whether a live process loaded its workflow
 * (the `processes` table: a second server announces itself and, closed, is gone) and its queue position; a
 * running run shows its lease holder; a run whose holder died counts an abnormal activation.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
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
  const database = await createTestDatabase("explain_run");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  // Short leases: the heartbeat (lease / 3) requeues a dead holder's run within a second.
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_POLL_INTERVAL_MS: "50", CAIRN_LEASE_MS: "1500" }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const connectJson = (method: string, body: unknown) => postConnectJson(server.url, method, body);

const until = (runId: string, status: RunInfo["status"], timeoutMs?: number) => untilStatus(sdk, runId, status, timeoutMs);

const sql = <T = Record<string, any>>(text: string, values: unknown[] = []) => withClient(databaseUrl, async (db) => (await db.query(text, values)).rows as T[]);

/** A run row put straight into the store: the situations ExplainRun must describe without waiting for them to happen. */
async function insertRun(fields: { workflow: string; status: string; input?: unknown; availableIn?: string; leaseOwner?: string; leaseExpiresIn?: string }): Promise<string> {
  const id = randomUUID();
  await sql(
    `insert into runs (id, workflow_name, status, input, available_at, lease_owner, lease_expires_at, lease_epoch)
     values ($1, $2, $3, $4, now() + $5::interval, $6, now() + $7::interval, $8)`,
    [id, fields.workflow, fields.status, JSON.stringify(fields.input ?? {}), fields.availableIn ?? "0s", fields.leaseOwner ?? null, fields.leaseExpiresIn ?? null, fields.leaseOwner ? 1 : 0],
  );
  return id;
}

test("an event wait names the stored events that did not match: another correlation id, before the lookback, sent to another run (SDK and fetch)", async () => {
  const key = `o-1-${randomUUID()}`;
  const otherKey = `o-2-${randomUUID()}`;
  // Sent before the run exists: outside the default lookback ("run": from the run's creation).
  const early = await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: { early: true } });
  await new Promise((resolve) => setTimeout(resolve, 5));
  const { runId } = await sdk.createRun("waiter", { type: "order.paid", key }, { eagerStart: true });
  const { runId: bystander } = await sdk.createRun("waiter", { type: "order.paid", key: `b-${randomUUID()}` }, { eagerStart: true });
  await until(runId, "waiting");
  await until(bystander, "waiting");
  const other = await sdk.sendEvent({ eventType: "order.paid", correlationId: otherKey, payload: {} });
  const targeted = await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: {}, runId: bystander });
  assert.deepEqual(other.matchedRunIds, []);
  assert.deepEqual(targeted.matchedRunIds, []);

  const explained = await sdk.explainRun(runId);
  assert.equal(explained.run.status, "waiting");
  assert.equal(explained.waits.length, 1);
  const [wait] = explained.waits;
  assert.equal(wait!.wait.kind, "event");
  assert.equal(wait!.lookbackFrom?.getTime(), explained.run.createdAt.getTime());
  const reasons = new Map(wait!.nearMisses.map((miss) => [miss.eventId, miss]));
  assert.equal(reasons.get(other.eventId)?.reason, "other_correlation_id");
  assert.equal(reasons.get(other.eventId)?.correlationId, otherKey);
  assert.equal(reasons.get(early.eventId)?.reason, "before_lookback");
  assert.equal(reasons.get(targeted.eventId)?.reason, "targeted_at_other_run");
  assert.equal(reasons.get(targeted.eventId)?.targetRunId, bystander);
  assert.equal(wait!.nearMisses.length, 3);
  assert.ok(explained.lines.some((line) => line.includes(`event ${other.eventId}`) && line.includes(`another correlation id than ${key}`)), explained.lines.join("\n"));
  assert.ok(explained.lines.some((line) => line.includes(`waiting on approval: event order.paid (correlation ${key})`)), explained.lines.join("\n"));
  assert.ok(explained.loadedBy.some((p) => p.id === server.scheduler.owner));
  assert.equal(explained.abnormalActivations, 0);

  const viaFetch = await connectJson("ExplainRun", { runId });
  assert.equal(viaFetch.status, 200, JSON.stringify(viaFetch.json));
  const misses = viaFetch.json.waits[0].nearMisses as { eventId: string; reason: string; explanation: string }[];
  assert.equal(misses.find((m) => m.eventId === other.eventId)?.reason, "NEAR_MISS_REASON_OTHER_CORRELATION_ID");
  assert.equal(misses.find((m) => m.eventId === early.eventId)?.reason, "NEAR_MISS_REASON_BEFORE_LOOKBACK");
  assert.equal(misses.find((m) => m.eventId === targeted.eventId)?.reason, "NEAR_MISS_REASON_TARGETED_AT_OTHER_RUN");
  assert.deepEqual(viaFetch.json.lines, explained.lines);
  // REST: GET /workflows/runs/{id}/explain answers the same (proto field names); other methods are 405.
  const rest = await fetch(`${server.url}/workflows/runs/${runId}/explain`);
  assert.equal(rest.status, 200);
  const restJson = (await rest.json()) as { waits: { near_misses: { event_id: string; reason: string }[] }[]; lines: string[] };
  assert.equal(restJson.waits[0]?.near_misses.find((m) => m.event_id === other.eventId)?.reason, "NEAR_MISS_REASON_OTHER_CORRELATION_ID");
  assert.deepEqual(restJson.lines, explained.lines);
  assert.equal((await fetch(`${server.url}/workflows/runs/${runId}/explain`, { method: "POST" })).status, 405);
  assert.equal((await fetch(`${server.url}/workflows/runs/${randomUUID()}/explain`)).status, 404);

  // The matching event ends the wait: an ended run has no waits to explain.
  await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: { paid: true } });
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { payload: { paid: true } });
  const done = await sdk.explainRun(runId);
  assert.equal(done.waits.length, 0);
  assert.match(done.lines.join("\n"), /is COMPLETED/);
  await sdk.cancelRun(bystander);
});

test("an event this run already consumed (one of two waits on a key took it) is a near miss of the other wait", async () => {
  const key = `two-${randomUUID()}`;
  const { runId } = await sdk.createRun("two_waits", { type: "order.paid", key }, { eagerStart: true });
  await until(runId, "waiting");
  const first = await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: { n: 1 } });
  assert.deepEqual(first.matchedRunIds, [runId]);
  // zeta took it; the run parks again on alpha alone.
  const deadline = Date.now() + 10_000;
  let explained = await sdk.explainRun(runId);
  while (!(explained.run.status === "waiting" && explained.waits.length === 1 && explained.waits[0]?.wait.name === "alpha")) {
    assert.ok(Date.now() < deadline, `never parked on alpha alone: ${explained.lines.join(" | ")}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
    explained = await sdk.explainRun(runId);
  }
  // Events of other tests (other correlation ids) follow; those with this key come first.
  assert.deepEqual(explained.waits[0]?.nearMisses[0] && [explained.waits[0].nearMisses[0].eventId, explained.waits[0].nearMisses[0].reason], [first.eventId, "already_consumed"]);
  assert.ok(explained.waits[0]?.nearMisses.slice(1).every((miss) => miss.correlationId !== key && miss.reason === "other_correlation_id"));
  assert.ok(explained.lines.some((line) => line.includes(`event ${first.eventId}`) && line.endsWith("already consumed by this run")), explained.lines.join("\n"));
  await sdk.sendEvent({ eventType: "order.paid", correlationId: key, payload: { n: 2 } });
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { zeta: { n: 1 }, alpha: { n: 2 } });
});

test("a queued run says which live process loaded its workflow, and that none has once that process stops; its queue position (SDK and fetch)", async () => {
  // A second server that loads "quick" (the first does not) announces itself in the processes table.
  const { server: second } = await startTestServer({ DATABASE_URL: databaseUrl, WORKFLOW_DIRS: "test/fixtures/timeout-workflows", CAIRN_POLL_INTERVAL_MS: "50" });
  let closed = false;
  try {
    const rows = await sql<{ id: string; workflows: string[]; pid: number }>("select id, workflows, pid from processes order by started_at");
    assert.deepEqual(rows.map((r) => r.id).sort(), [server.scheduler.owner, second.scheduler.owner].sort());
    assert.ok(rows.find((r) => r.id === second.scheduler.owner)?.workflows.includes("quick"));
    assert.equal(rows[0]?.pid, process.pid);

    // Claimable in an hour: queued, and not claimed meanwhile.
    const runId = await insertRun({ workflow: "quick", status: "queued", input: { n: 1 }, availableIn: "1 hour" });
    const loaded = await sdk.explainRun(runId);
    assert.equal(loaded.run.status, "queued");
    assert.deepEqual(loaded.loadedBy.map((p) => p.id), [second.scheduler.owner]);
    assert.ok(loaded.lines.some((line) => line.includes("workflow quick is loaded by 1 live process(es)")), loaded.lines.join("\n"));

    await second.close();
    closed = true;
    assert.deepEqual((await sql("select id from processes where id = $1", [second.scheduler.owner])).length, 0);
    const orphaned = await sdk.explainRun(runId);
    assert.deepEqual(orphaned.loadedBy, []);
    assert.ok(orphaned.lines.some((line) => line.includes("no live process has loaded workflow quick")), orphaned.lines.join("\n"));

    // A due queued run of a workflow nobody serves ("ghost") stays queued; one more due run ahead of it in claim order.
    const ahead = await insertRun({ workflow: "ghost", status: "queued", availableIn: "-2 seconds" });
    const ghost = await insertRun({ workflow: "ghost", status: "queued", availableIn: "-1 second" });
    const viaFetch = await connectJson("ExplainRun", { runId: ghost });
    assert.equal(viaFetch.status, 200, JSON.stringify(viaFetch.json));
    assert.equal(viaFetch.json.run.status, "RUN_STATUS_QUEUED");
    assert.equal(viaFetch.json.queue.runsAhead, "1");
    assert.equal(viaFetch.json.loadedBy, undefined);
    assert.ok((viaFetch.json.lines as string[]).some((line) => line.includes("no live process has loaded workflow ghost")));
    assert.ok((viaFetch.json.lines as string[]).some((line) => line.includes("1 claimable run(s) ahead of it")));
    assert.equal((await sdk.getRun(ahead)).status, "queued");
  } finally {
    if (!closed) await second.close();
  }
});

test("a running run shows its lease holder, live, with its last heartbeat; an unknown holder is said to be unknown", async () => {
  const { runId } = await sdk.createRun("cancellable", {}, { eagerStart: true });
  await until(runId, "running");
  const explained = await sdk.explainRun(runId);
  assert.equal(explained.lease?.owner, server.scheduler.owner);
  assert.equal(explained.lease?.ownerLive, true);
  assert.ok(explained.lease?.lastHeartbeatAt && Date.now() - explained.lease.lastHeartbeatAt.getTime() < 5_000);
  assert.ok(explained.lease?.leaseExpiresAt && explained.lease.leaseExpiresAt.getTime() > Date.now() - 1_000);
  assert.ok(explained.lines.some((line) => line.startsWith(`held by ${server.scheduler.owner}`)), explained.lines.join("\n"));
  assert.ok(explained.lines.some((line) => line.includes("that process is live")));

  const viaFetch = await connectJson("ExplainRun", { runId });
  assert.equal(viaFetch.json.lease.owner, server.scheduler.owner);
  assert.equal(viaFetch.json.lease.ownerLive, true);
  await sdk.cancelRun(runId, "done looking");
  await until(runId, "cancelled");

  // Held (for a minute more) by a process that never announced itself.
  const stranger = await insertRun({ workflow: "waiter", status: "running", input: { type: "x", key: "y" }, leaseOwner: "elsewhere:1:dead", leaseExpiresIn: "1 minute" });
  const unknown = await sdk.explainRun(stranger);
  assert.equal(unknown.lease?.owner, "elsewhere:1:dead");
  assert.equal(unknown.lease?.ownerLive, false);
  assert.equal(unknown.lease?.lastHeartbeatAt, undefined);
  assert.ok(unknown.lines.some((line) => line.includes("that process is not known")));
  await sql("update runs set lease_expires_at = now() + interval '1 hour' where id = $1", [stranger]);
});

test("a run whose holder died is requeued with one abnormal activation, which ExplainRun reports", async () => {
  const key = `dead-${randomUUID()}`;
  const runId = await insertRun({ workflow: "waiter", status: "running", input: { type: "order.paid", key }, leaseOwner: "crashed:2:gone", leaseExpiresIn: "-1 second" });
  await until(runId, "waiting", 10_000);
  const [row] = await sql<{ abnormal_activations: number; activation_count: number }>("select abnormal_activations, activation_count from runs where id = $1", [runId]);
  assert.equal(row?.abnormal_activations, 1);
  const explained = await sdk.explainRun(runId);
  assert.equal(explained.abnormalActivations, 1);
  assert.ok(explained.lines.some((line) => line.endsWith("1 ended abnormally (lease lapsed, or code that blocked, crashed or ran its thread out of memory)")), explained.lines.join("\n"));
  const viaFetch = await connectJson("ExplainRun", { runId });
  assert.equal(viaFetch.json.abnormalActivations, 1);
  await sdk.cancelRun(runId);
});

test("a paused run gives its pause reason and the wait it keeps (SDK and fetch)", async () => {
  const key = `paused-${randomUUID()}`;
  const { runId } = await sdk.createRun("waiter", { type: "order.paid", key }, { eagerStart: true });
  await until(runId, "waiting");
  await sdk.pauseRun(runId, "checking the invoice");
  const explained = await sdk.explainRun(runId);
  assert.equal(explained.run.status, "paused");
  assert.equal(explained.pauseReason, "checking the invoice");
  assert.deepEqual(explained.waits.map((w) => [w.wait.kind, w.wait.name]), [["event", "approval"]]);
  assert.ok(explained.lines.includes("paused: checking the invoice"), explained.lines.join("\n"));
  assert.equal(explained.queue, undefined);
  const viaFetch = await connectJson("ExplainRun", { runId });
  assert.equal(viaFetch.json.pauseReason, "checking the invoice");
  await sdk.cancelRun(runId);
});

test("an unknown run is NOT_FOUND, a malformed id INVALID_ARGUMENT", async () => {
  await assert.rejects(sdk.explainRun(randomUUID()), (error: unknown) => error instanceof CairnError && error.code === Code.NotFound);
  const malformed = await connectJson("ExplainRun", { runId: "nope" });
  assert.equal(malformed.status, 400);
  assert.equal(malformed.json.code, "invalid_argument");
});
