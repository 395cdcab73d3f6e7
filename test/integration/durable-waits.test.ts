// Durable waits on real PostgreSQL: timers and events survive restarts,
// events are buffered, fanned out, targeted and deduplicated, cancellation
// reaches waiting and running runs, and bad arguments say what is wrong.
import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, test } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { EntryKind, RunStatus, WaitKind } from "../../sdk/gen/cairn/v1/types_pb.js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { attemptsSeen, observed } from "../fixtures/wait-workflows/waits.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

let server: CairnServer;
let client: WorkflowClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;
const env = () => ({
  DATABASE_URL: databaseUrl,
  WORKFLOW_DIRS: ["workflows", "test/fixtures/wait-workflows"].join(":"),
  CAIRN_MAX_EVENT_BYTES: "1024",
  CAIRN_MAX_CONCURRENT_RUNS: "200",
  DATABASE_POOL_SIZE: "20",
});

beforeAll(async () => {
  const database = await createTestDatabase("waits");
  databaseUrl = database.url;
  dropDatabase = database.drop;
  ({ server, client } = await startTestServer(env()));
});

afterAll(async () => {
  await server.close();
  await dropDatabase();
});

async function restart(): Promise<void> {
  await server.close();
  ({ server, client } = await startTestServer(env()));
}

async function rejects(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(Code[error.code], Code[code], error.message);
    assert.match(error.rawMessage, message);
    return true;
  });
}

async function create(workflowName: string, input: Record<string, unknown>): Promise<string> {
  const { run } = await client.createRun({ workflowName, input: valueFromJson(input as never), eagerStart: true });
  return run?.runId ?? "";
}

async function waitForStatus(runId: string, status: RunStatus, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { run } = await client.getRun({ runId });
    if (run?.status === status) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} never reached ${RunStatus[status]} (is ${run ? RunStatus[run.status] : "missing"})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const output = (run: { output?: Parameters<typeof valueToJson>[0] }) => (run.output ? valueToJson(run.output) : undefined);

describe("timers", () => {
  test("a sleeping run shows its timer, survives a restart and never wakes early", async () => {
    const before = Date.now();
    const runId = await create("sleeper", { ms: 1500 });
    const waiting = await waitForStatus(runId, RunStatus.WAITING);
    assert.equal(waiting.waitingOn?.name, "nap");
    assert.equal(waiting.waitingOn?.target.case, "timer");
    const timers = await client.listRuns({ waitingFor: WaitKind.TIMER });
    assert.ok(timers.runs.some((r) => r.runId === runId));

    await restart();
    const finished = await waitForEnd(client, runId);
    assert.equal(finished.status, RunStatus.COMPLETED);
    const { entries } = await client.getRunHistory({ runId });
    const started = entries.find((e) => e.kind === EntryKind.TIMER_STARTED);
    const fired = entries.find((e) => e.kind === EntryKind.TIMER_FIRED);
    assert.ok(started?.fireAt && fired?.createdAt);
    const fireAt = timestampDate(started.fireAt).getTime();
    assert.ok(fireAt >= before + 1500);
    assert.ok(timestampDate(fired.createdAt).getTime() >= fireAt, "fired no earlier than its fire time");
    assert.ok((output(finished) as { wokeAt: number }).wokeAt >= fireAt, "the next step ran after the fire time");
  });

  test("a negative or unparseable duration fails the run naming the step", async () => {
    for (const [duration, message] of [
      [-10, /ctx\.sleep\("nap"\): -10 is negative/],
      ["soon", /ctx\.sleep\("nap"\): "soon" is not a duration/],
    ] as const) {
      const finished = await waitForEnd(client, await create("bad_sleep", { duration }));
      assert.equal(finished.status, RunStatus.FAILED);
      assert.match(finished.error?.message ?? "", message);
    }
  });
});

describe("events", () => {
  test("a run waiting on an event survives a restart and resumes with its payload", async () => {
    const runId = await create("waiter", { type: "approval", key: "restart-1" });
    const waiting = await waitForStatus(runId, RunStatus.WAITING);
    assert.equal(waiting.waitingOn?.target.case, "event");
    const listed = await client.listRuns({ waitingEventType: "approval", waitingCorrelationId: "restart-1" });
    assert.deepEqual(listed.runs.map((r) => r.runId), [runId]);

    await restart();
    const sent = await client.sendEvent({ eventType: "approval", correlationId: "restart-1", payload: valueFromJson({ ok: true }) });
    assert.deepEqual(sent.matchedRunIds, [runId]);
    const finished = await waitForEnd(client, runId);
    assert.deepEqual(output(finished), { payload: { ok: true } });
    const { entries } = await client.getRunHistory({ runId });
    const received = entries.find((e) => e.kind === EntryKind.EVENT_RECEIVED);
    assert.equal(received?.eventId, sent.eventId);
  });

  test("an event sent before the wait starts is delivered", async () => {
    const first = await client.sendEvent({ eventType: "early", correlationId: "k1", payload: valueFromJson("too early?") });
    assert.deepEqual(first.matchedRunIds, []);
    // lookback "all": the event predates the run.
    const runId = await create("waiter", { type: "early", key: "k1", lookback: "all" });
    assert.deepEqual(output(await waitForEnd(client, runId)), { payload: "too early?" });
  });

  test("an event sent after the run is created but before it waits is delivered with the default lookback", async () => {
    const { run } = await client.createRun({ workflowName: "waiter", input: valueFromJson({ type: "buffered", key: "k2" }) });
    await client.sendEvent({ eventType: "buffered", correlationId: "k2", payload: valueFromJson(42) });
    assert.deepEqual(output(await waitForEnd(client, run?.runId ?? "")), { payload: 42 });
  });

  test("by default an event from before the run existed is not consumed", async () => {
    await client.sendEvent({ eventType: "stale", correlationId: "k3", payload: valueFromJson("old") });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const runId = await create("waiter", { type: "stale", key: "k3", timeout: "300ms" });
    assert.deepEqual(output(await waitForEnd(client, runId)), { payload: null });
  });

  test("one event wakes 100 waiting runs", async () => {
    const ids = await Promise.all(Array.from({ length: 100 }, () => create("waiter", { type: "broadcast", key: "all-hands" })));
    for (const id of ids) await waitForStatus(id, RunStatus.WAITING);
    const sent = await client.sendEvent({ eventType: "broadcast", correlationId: "all-hands", payload: valueFromJson({ go: 1 }) });
    assert.equal(sent.matchedRunIds.length, 100);
    assert.deepEqual(new Set(sent.matchedRunIds), new Set(ids));
    for (const id of ids) assert.deepEqual(output(await waitForEnd(client, id, 20_000)), { payload: { go: 1 } });
  });

  test("SendEvent delivers: when it answers, the run's event_received is committed and the run is claimed here", async () => {
    const runId = await create("waiter", { type: "delivered", key: "d1" });
    await waitForStatus(runId, RunStatus.WAITING);
    const sent = await client.sendEvent({ eventType: "delivered", correlationId: "d1", payload: valueFromJson({ n: 7 }) });
    assert.deepEqual(sent.matchedRunIds, [runId]);
    // Read at once, before the run could have looked for the event itself.
    const { entries } = await client.getRunHistory({ runId });
    const received = entries.find((e) => e.kind === EntryKind.EVENT_RECEIVED);
    assert.ok(received, "event_received is in the journal when SendEvent answers");
    assert.equal(received.name, "approval");
    assert.equal(received.eventId, sent.eventId);
    assert.deepEqual(output(await waitForEnd(client, runId)), { payload: { n: 7 } });
    const history = (await client.getRunHistory({ runId })).entries.map((e) => EntryKind[e.kind]);
    assert.equal(history.filter((k) => k === "EVENT_RECEIVED").length, 1, history.join(", "));
  });

  test("two waits on one key: each event goes to the wait that started first and is still open", async () => {
    const runId = await create("two_waits", { type: "pair", key: "p" });
    await waitForStatus(runId, RunStatus.WAITING);
    await client.sendEvent({ eventType: "pair", correlationId: "p", payload: valueFromJson("first") });
    await waitForStatus(runId, RunStatus.WAITING);
    await client.sendEvent({ eventType: "pair", correlationId: "p", payload: valueFromJson("second") });
    assert.deepEqual(output(await waitForEnd(client, runId)), { zeta: "first", alpha: "second" });
  });

  test("a targeted event wakes only its run", async () => {
    const [a, b] = [await create("waiter", { type: "targeted", key: "same" }), await create("waiter", { type: "targeted", key: "same" })];
    await waitForStatus(a, RunStatus.WAITING);
    await waitForStatus(b, RunStatus.WAITING);
    const sent = await client.sendEvent({ eventType: "targeted", correlationId: "same", runId: b, payload: valueFromJson("for b") });
    assert.deepEqual(sent.matchedRunIds, [b]);
    assert.deepEqual(output(await waitForEnd(client, b)), { payload: "for b" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await client.getRun({ runId: a })).run?.status, RunStatus.WAITING);
    await client.cancelRun({ runId: a, reason: "test cleanup" });
  });

  test("SendEvent with one idempotency key twice stores the event once", async () => {
    const request = { eventType: "dedup", correlationId: "k4", payload: valueFromJson(1), idempotencyKey: "evt-1" };
    const first = await client.sendEvent(request);
    const second = await client.sendEvent(request);
    assert.equal(first.deduplicated, false);
    assert.equal(second.deduplicated, true);
    assert.equal(second.eventId, first.eventId);
    const ids = [await create("waiter", { type: "dedup", key: "k4", lookback: "all" })];
    assert.deepEqual(output(await waitForEnd(client, ids[0] ?? "")), { payload: 1 });
    // A second waiter finds no second copy.
    const again = await create("waiter", { type: "dedup", key: "k4", lookback: "all", timeout: "200ms" });
    assert.deepEqual(output(await waitForEnd(client, again)), { payload: 1 }, "fan-out: every run may consume the one stored event");
  });

  test("a wait with a timeout ends on time when no event comes", async () => {
    const started = Date.now();
    const runId = await create("waiter", { type: "never", key: "k5", timeout: "700ms" });
    const finished = await waitForEnd(client, runId);
    assert.deepEqual(output(finished), { payload: null });
    const { entries } = await client.getRunHistory({ runId });
    const timedOut = entries.find((e) => e.kind === EntryKind.EVENT_WAIT_TIMED_OUT);
    assert.ok(timedOut?.createdAt && timedOut.timeoutAt);
    assert.ok(timestampDate(timedOut.createdAt) >= timestampDate(timedOut.timeoutAt), "not before the timeout");
    assert.ok(timestampDate(timedOut.timeoutAt).getTime() >= started + 700);
  });

  test("an event for an unknown key is stored and matched by nobody", async () => {
    const sent = await client.sendEvent({ eventType: "orphan", correlationId: "nobody", payload: valueFromJson({ x: 1 }) });
    assert.ok(sent.eventId);
    assert.deepEqual(sent.matchedRunIds, []);
    // It was stored: a later run that looks back finds it.
    const runId = await create("waiter", { type: "orphan", key: "nobody", lookback: "all" });
    assert.deepEqual(output(await waitForEnd(client, runId)), { payload: { x: 1 } });
  });

  test("event or deadline: the example workflow takes whichever comes first", async () => {
    const approved = await create("expense_approval", { expenseId: "ex-1", amountCents: 500, decideWithin: "1m" });
    await waitForStatus(approved, RunStatus.WAITING);
    await client.sendEvent({ eventType: "expense.decided", correlationId: "ex-1", payload: valueFromJson({ approved: true, by: "maria" }) });
    assert.deepEqual(output(await waitForEnd(client, approved)), { expenseId: "ex-1", outcome: "approved", by: "maria" });

    const escalated = await create("expense_approval", { expenseId: "ex-2", amountCents: 500, decideWithin: "400ms" });
    assert.deepEqual(output(await waitForEnd(client, escalated)), { expenseId: "ex-2", outcome: "escalated" });
    // A late decision changes nothing.
    const late = await client.sendEvent({ eventType: "expense.decided", correlationId: "ex-2", payload: valueFromJson({ approved: true, by: "late" }) });
    assert.deepEqual(late.matchedRunIds, []);
  });

  test("bad SendEvent input: empty type, oversized payload, unknown target", async () => {
    await rejects(client.sendEvent({ eventType: "", correlationId: "k" }), Code.InvalidArgument, /event_type: value is required \[required\]/);
    await rejects(
      client.sendEvent({ eventType: "big", correlationId: "k", payload: valueFromJson("x".repeat(2000)) }),
      Code.InvalidArgument,
      /payload is \d+ bytes, over the limit of 1024 bytes \(CAIRN_MAX_EVENT_BYTES\)/,
    );
    await rejects(
      client.sendEvent({ eventType: "t", correlationId: "k", runId: "00000000-0000-4000-8000-000000000000" }),
      Code.NotFound,
      /names no run/,
    );
  });
});

describe("step retries", () => {
  test("a server restart during a 5 s backoff still retries on time; every attempt is in the history", async () => {
    const runId = await create("flaky", { failures: 1, backoff: "5s" });
    const waiting = await waitForStatus(runId, RunStatus.WAITING);
    assert.equal(waiting.waitingOn?.target.case, "retry");
    const retryStamp = waiting.waitingOn?.target.case === "retry" ? waiting.waitingOn.target.value.retryAt : undefined;
    assert.ok(retryStamp);
    const retryAt = timestampDate(retryStamp).getTime();
    assert.equal((await client.listRuns({ waitingFor: WaitKind.RETRY })).runs.some((r) => r.runId === runId), true);

    await restart();
    const finished = await waitForEnd(client, runId, 15_000);
    assert.deepEqual(output(finished), { attempt: 2 });
    const attempts = attemptsSeen.get(runId) ?? [];
    assert.equal(attempts.length, 2);
    assert.ok((attempts[1] ?? 0) >= retryAt, "the retry did not run early");
    assert.ok((attempts[1] ?? 0) - retryAt < 2000, "the retry ran on time after the restart");
    const { entries } = await client.getRunHistory({ runId });
    assert.deepEqual(
      entries.map((e) => [EntryKind[e.kind], e.attempt, e.error?.message ?? ""]),
      [
        ["STEP_ATTEMPT_FAILED", 1, "partner unavailable (attempt 1)"],
        ["STEP_COMPLETED", 2, ""],
        ["RUN_COMPLETED", 1, ""],
      ],
    );
  });
});

describe("cancellation", () => {
  test("a waiting run is cancelled at once, with the reason", async () => {
    const runId = await create("waiter", { type: "cancel", key: "k6" });
    await waitForStatus(runId, RunStatus.WAITING);
    const { run } = await client.cancelRun({ runId, reason: "customer withdrew" });
    assert.equal(run?.status, RunStatus.CANCELLED);
    assert.equal(run?.error?.message, "customer withdrew");
    const { entries } = await client.getRunHistory({ runId });
    assert.equal(entries.at(-1)?.kind, EntryKind.RUN_CANCELLED);
    // An event for it later wakes nothing.
    const sent = await client.sendEvent({ eventType: "cancel", correlationId: "k6" });
    assert.deepEqual(sent.matchedRunIds, []);
  });

  test("a running run stops: its step's signal aborts and no later step runs", async () => {
    const runId = await create("cancellable", {});
    const deadline = Date.now() + 5000;
    while (!observed.started.includes(runId) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    const { run } = await client.cancelRun({ runId, reason: "stop now" });
    assert.equal(run?.status, RunStatus.RUNNING, "a running run is cancelled at its next durable operation");
    const finished = await waitForEnd(client, runId);
    assert.equal(finished.status, RunStatus.CANCELLED);
    assert.equal(finished.error?.message, "stop now");
    assert.ok(observed.aborted.includes(runId), "the step's signal was aborted");
    const { entries } = await client.getRunHistory({ runId });
    assert.deepEqual(entries.map((e) => EntryKind[e.kind]), ["RUN_CANCELLED"]);
  });

  test("cancelling a finished run is FAILED_PRECONDITION; an unknown run is NOT_FOUND", async () => {
    const runId = await create("sleeper", { ms: 0 });
    await waitForEnd(client, runId);
    await rejects(client.cancelRun({ runId }), Code.FailedPrecondition, /already ended \(COMPLETED\)/);
    await rejects(client.cancelRun({ runId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound, /not found/);
  });
});
