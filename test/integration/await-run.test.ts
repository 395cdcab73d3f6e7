// AwaitRun, the long poll behind the SDK's waitForResult, on real PostgreSQL
// with two server processes' worth of schedulers on one database: it answers
// when the run ends, wherever it ends, and at its timeout otherwise.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { performance } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createCairnClient } from "../../sdk/client.js";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { startTestServer, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

let first: { server: CairnServer; client: WorkflowClient };
let second: { server: CairnServer; client: WorkflowClient };
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("await_run");
  dropDatabase = database.drop;
  // A slow poll: whatever AwaitRun learns sooner than a second comes from a notice, not from polling.
  const env = { DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_POLL_INTERVAL_MS: "5000" };
  first = await startTestServer(env);
  second = await startTestServer(env);
});

afterAll(async () => {
  await first?.server.close();
  await second?.server.close();
  await dropDatabase?.();
});

const input = (value: Record<string, unknown>) => valueFromJson(value as never);
const timeout = (ms: number) => ({ seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });

test("answers as soon as a run executing in this process ends", async () => {
  const { run } = await first.client.createRun({ workflowName: "sleeper", input: input({ ms: 300 }), eagerStart: true });
  const { run: ended } = await first.client.awaitRun({ runId: run!.runId, timeout: timeout(10_000) });
  const answeredAt = Date.now();
  assert.equal(ended?.status, RunStatus.COMPLETED);
  // The server runs in this process: one clock. Re-reads happen every second, so a late answer means the end was missed.
  const lag = answeredAt - timestampDate(ended!.completedAt!).getTime();
  assert.ok(lag < 800, `answered ${lag} ms after the run ended`);
});

test("answers when a run parked here is woken and finished by an event", async () => {
  const key = `k-${Date.now()}`;
  const { run } = await first.client.createRun({ workflowName: "waiter", input: input({ type: "approved", key }), eagerStart: true });
  const awaited = first.client.awaitRun({ runId: run!.runId, timeout: timeout(10_000) });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await first.client.sendEvent({ eventType: "approved", correlationId: key, payload: input({ ok: true }) });
  const { run: ended } = await awaited;
  assert.equal(ended?.status, RunStatus.COMPLETED);
  assert.deepEqual(valueToJson(ended!.output!), { payload: { ok: true } });
});

test("answers when the run ends in another process", async () => {
  // Created (and so executed) by the second server; awaited through the first.
  const { run } = await second.client.createRun({ workflowName: "sleeper", input: input({ ms: 100 }), eagerStart: true });
  const started = performance.now();
  const { run: ended } = await first.client.awaitRun({ runId: run!.runId, timeout: timeout(20_000) });
  const waited = performance.now() - started;
  assert.equal(ended?.status, RunStatus.COMPLETED);
  // Without the store's notice the first process would only see it at its next re-read (1 s) or poll (5 s).
  assert.ok(waited < 800, `answered after ${waited.toFixed(0)} ms`);
});

test("answers with the run as it is when the timeout passes first", async () => {
  const { run } = await first.client.createRun({ workflowName: "waiter", input: input({ type: "never", key: "never" }), eagerStart: true });
  const started = performance.now();
  const { run: current } = await first.client.awaitRun({ runId: run!.runId, timeout: timeout(500) });
  const waited = performance.now() - started;
  assert.equal(current?.status, RunStatus.WAITING);
  assert.ok(waited >= 450 && waited < 3000, `answered after ${waited.toFixed(0)} ms for a 500 ms timeout`);
  await first.client.cancelRun({ runId: run!.runId });
});

test("answers when the run is cancelled", async () => {
  const { run } = await first.client.createRun({ workflowName: "waiter", input: input({ type: "never", key: "cancel" }), eagerStart: true });
  const awaited = second.client.awaitRun({ runId: run!.runId, timeout: timeout(10_000) });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await first.client.cancelRun({ runId: run!.runId, reason: "test" });
  const { run: ended } = await awaited;
  assert.equal(ended?.status, RunStatus.CANCELLED);
});

test("bad requests: unknown run, malformed id, negative timeout", async () => {
  const expectCode = async (call: Promise<unknown>, code: Code) =>
    assert.rejects(call, (error: unknown) => error instanceof ConnectError && error.code === code);
  await expectCode(first.client.awaitRun({ runId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound);
  await expectCode(first.client.awaitRun({ runId: "nope" }), Code.InvalidArgument);
  await expectCode(first.client.awaitRun({ runId: "00000000-0000-4000-8000-000000000000", timeout: { seconds: -1n, nanos: 0 } }), Code.InvalidArgument);
});

test("the SDK's waitForResult resolves through AwaitRun", async () => {
  const sdk = createCairnClient({ baseUrl: first.server.url });
  const handle = await sdk.createRun("sleeper", { ms: 200 }, { eagerStart: true });
  const output = (await handle.waitForResult({ timeoutMs: 10_000 })) as { wokeAt: number };
  assert.equal(typeof output.wokeAt, "number");
});
