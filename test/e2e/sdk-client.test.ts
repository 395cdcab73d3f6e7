// The SDK client end to end on real PostgreSQL: a server in this process, the client over real
// sockets with the browser transports (connect-web over Node's fetch), plus a Node gRPC transport.
import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, test } from "vitest";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { CairnServer } from "../../server/app.js";
import {
  CairnError,
  type CairnClient,
  createCairnClient,
  RunCancelledError,
  RunFailedError,
  type RunInfo,
  WaitTimeoutError,
  workflowRef,
} from "../../sdk/index.js";
import { echo } from "../fixtures/service-workflows/echo.js";
import { waiter } from "../fixtures/wait-workflows/waits.js";
import { createTestDatabase } from "../support/postgres.js";
import { startTestServer } from "../support/in-process-server.js";

let server: CairnServer;
let cairn: CairnClient;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("sdk");
  dropDatabase = database.drop;
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: ["workflows", "test/fixtures/service-workflows", "test/fixtures/wait-workflows"].join(":"),
  }));
  cairn = createCairnClient({ baseUrl: server.url, apiKey: "ck_test" });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const failing = workflowRef<{ reason?: string }, never>("failing");

/** Expects `promise` to reject with an error of `type` and runs `check` on it. */
async function rejectsWith<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E, check: (error: E) => void = () => {}): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    check(error);
    return true;
  });
}

async function waitForStatus(client: CairnClient, runId: string, status: RunInfo["status"], timeoutMs = 10_000): Promise<RunInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await client.getRun(runId);
    if (run.status === status) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} is ${run.status}, not ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A fetch that records requests and lets a test fail chosen calls. */
function scriptedFetch(
  script: (call: { procedure: string; attempt: number; forward: () => Promise<Response> }) => Promise<Response | undefined> | Response | undefined,
) {
  const calls: { procedure: string; apiKey: string | null }[] = [];
  const fetchImpl: typeof fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const procedure = url.slice(url.lastIndexOf("/") + 1);
    calls.push({ procedure, apiKey: new Headers(init?.headers).get("x-api-key") });
    const attempt = calls.filter((c) => c.procedure === procedure).length;
    const forward = () => fetch(input, init);
    return (await script({ procedure, attempt, forward })) ?? forward();
  };
  return { fetch: fetchImpl, calls, count: (procedure: string) => calls.filter((c) => c.procedure === procedure).length };
}

const unavailable = () =>
  new Response(JSON.stringify({ code: "unavailable", message: "upstream connect error" }), {
    status: 503,
    headers: { "content-type": "application/json" },
  });

async function runsWithInput(value: string): Promise<RunInfo[]> {
  const found: RunInfo[] = [];
  for await (const run of cairn.listRuns({ workflow: echo, pageSize: 1000 })) {
    if ((run.input as { value?: unknown }).value === value) found.push(run);
  }
  return found;
}

describe("runs and results", () => {
  test("createRun with a typed workflow, then waitForResult resolves its output", async () => {
    const run = await cairn.createRun(echo, { value: { greeting: "hi" } }, { eagerStart: true, metadata: { from: "sdk" } });
    assert.equal(run.workflowName, "echo");
    assert.equal(run.run.status, "running");
    assert.equal(run.deduplicated, false);
    assert.deepEqual(run.run.metadata, { from: "sdk" });
    assert.ok(run.run.createdAt instanceof Date);
    const output = await run.waitForResult({ timeoutMs: 10_000 });
    assert.deepEqual(output, { echoed: { greeting: "hi" } });

    const info = await cairn.getRun(run.runId);
    assert.equal(info.status, "completed");
    assert.deepEqual(info.input, { value: { greeting: "hi" } });
    assert.deepEqual(info.output, { echoed: { greeting: "hi" } });
    assert.ok(info.completedAt instanceof Date);
    assert.equal(info.activationCount, 1);
  });

  test("by name, queued: the scheduler runs it and client.waitForResult polls to the end", async () => {
    const run = await cairn.createRun("echo", { value: [1, "two"] });
    assert.equal(run.run.status, "queued");
    assert.deepEqual(await cairn.waitForResult(run.runId, { pollIntervalMs: 20 }), { echoed: [1, "two"] });
  });

  test("a failing run throws RunFailedError carrying the run's failure", async () => {
    const run = await cairn.createRun(failing, { reason: "disk full" }, { eagerStart: true });
    await rejectsWith(run.waitForResult({ timeoutMs: 10_000 }), RunFailedError, (error) => {
      assert.ok(error instanceof CairnError);
      assert.equal(error.runId, run.runId);
      assert.equal(error.failure.name, "ExplosionError");
      assert.equal(error.failure.message, "disk full");
      assert.match(error.message, /run .* failed: ExplosionError: disk full/);
      assert.equal(error.code, Code.Aborted);
    });
  });

  test("a run that does not end in time throws WaitTimeoutError and goes on", async () => {
    const run = await cairn.createRun(waiter, { type: "sdk.never", key: "k-timeout" }, { eagerStart: true });
    const started = Date.now();
    await rejectsWith(run.waitForResult({ timeoutMs: 300, pollIntervalMs: 50 }), WaitTimeoutError, (error) => {
      assert.equal(error.code, Code.DeadlineExceeded);
      assert.equal(error.timeoutMs, 300);
      assert.match(error.lastStatus, /running|waiting/);
    });
    assert.ok(Date.now() - started < 2000);
    assert.notEqual((await run.get()).status, "cancelled");
    await run.cancel("test cleanup");
  });

  test("waitForResult stops when its signal aborts", async () => {
    const run = await cairn.createRun(waiter, { type: "sdk.never", key: "k-abort" });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await rejectsWith(cairn.waitForResult(run.runId, { signal: controller.signal }), CairnError, (error) => assert.equal(error.code, Code.Canceled));
    await cairn.cancelRun(run.runId);
  });
});

describe("events and cancellation", () => {
  test("sendEvent wakes the waiting run, which completes with the payload", async () => {
    const run = await cairn.createRun(waiter, { type: "sdk.approved", key: "order-7" }, { eagerStart: true });
    const waiting = await waitForStatus(cairn, run.runId, "waiting");
    assert.deepEqual(waiting.waitingOn && { ...waiting.waitingOn }, { kind: "event", name: "approval", eventType: "sdk.approved", correlationId: "order-7", description: "event sdk.approved (correlation order-7)" });
    const sent = await cairn.sendEvent({ eventType: "sdk.approved", correlationId: "order-7", payload: { by: "ana" }, idempotencyKey: "evt-1" });
    assert.deepEqual(sent.matchedRunIds, [run.runId]);
    assert.equal(sent.deduplicated, false);
    assert.ok(sent.eventId);
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { payload: { by: "ana" } });
    const again = await cairn.sendEvent({ eventType: "sdk.approved", correlationId: "order-7", payload: { by: "ana" }, idempotencyKey: "evt-1" });
    assert.equal(again.deduplicated, true);
    assert.equal(again.eventId, sent.eventId);
  });

  test("cancelRun cancels a waiting run; waitForResult throws RunCancelledError with the reason", async () => {
    const run = await cairn.createRun(waiter, { type: "sdk.never", key: "k-cancel" }, { eagerStart: true });
    await waitForStatus(cairn, run.runId, "waiting");
    const cancelled = await cairn.cancelRun(run.runId, "customer changed their mind");
    assert.equal(cancelled.status, "cancelled");
    await rejectsWith(run.waitForResult(), RunCancelledError, (error) => {
      assert.equal(error.code, Code.Canceled);
      assert.match(error.failure?.message ?? "", /customer changed their mind/);
    });
    // Cancelling again is idempotent (a retry after a lost reply must not fail)...
    assert.equal((await cairn.cancelRun(run.runId)).status, "cancelled");
    // ...but a run that completed cannot be cancelled.
    const done = await cairn.createRun(waiter, { type: "sdk.done", key: "k-done", timeout: "10ms" }, { eagerStart: true });
    await done.waitForResult({ timeoutMs: 10_000 });
    await rejectsWith(cairn.cancelRun(done.runId), CairnError, (error) => {
      assert.equal(error.code, Code.FailedPrecondition);
      assert.equal(error.codeName, "failed_precondition");
    });
  });
});

describe("listing", () => {
  test("listRuns iterates across pages without gaps or repeats", async () => {
    const created = new Set<string>();
    for (let i = 0; i < 7; i++) created.add((await cairn.createRun(echo, { value: `page-${i}` })).runId);
    for (const id of created) await cairn.waitForResult(id, { timeoutMs: 10_000, pollIntervalMs: 20 });

    const counted = scriptedFetch(() => undefined);
    const client = createCairnClient({ baseUrl: server.url, fetch: counted.fetch });
    const seen: string[] = [];
    for await (const run of client.listRuns({ workflow: "echo", statuses: ["completed"], pageSize: 2 })) {
      assert.equal(run.workflowName, "echo");
      assert.equal(run.status, "completed");
      seen.push(run.runId);
    }
    assert.equal(new Set(seen).size, seen.length, "no run twice");
    for (const id of created) assert.ok(seen.includes(id), `run ${id} listed`);
    assert.equal(counted.count("ListRuns"), Math.ceil(seen.length / 2));

    // Breaking out early fetches no further page.
    const early = scriptedFetch(() => undefined);
    const partial = createCairnClient({ baseUrl: server.url, fetch: early.fetch });
    for await (const _ of partial.listRuns({ workflow: echo, pageSize: 2 })) break;
    assert.equal(early.count("ListRuns"), 1);

    const page = await cairn.listRunsPage({ workflow: echo, pageSize: 3 });
    assert.equal(page.runs.length, 3);
    assert.ok(page.nextPageToken);
    const none = await cairn.listRunsPage({ workflow: "echo", createdBefore: new Date(1000) });
    assert.deepEqual(none, { runs: [] });
  });

  test("listWorkflows names the loaded workflows", async () => {
    const workflows = await cairn.listWorkflows();
    const order = workflows.find((w) => w.name === "order_fulfillment");
    assert.equal(order?.hasInputSchema, true);
    assert.equal(order?.inputSchemaVendor, "zod");
    assert.equal(order?.inputJsonSchema?.type, "object");
    assert.ok(workflows.some((w) => w.name === "echo" && !w.hasInputSchema));
  });
});

describe("errors", () => {
  test("RPC errors are CairnErrors carrying the Connect code and the server's message", async () => {
    await rejectsWith(cairn.getRun("00000000-0000-4000-8000-000000000000"), CairnError, (error) => {
      assert.equal(error.code, Code.NotFound);
      assert.equal(error.codeName, "not_found");
      assert.equal(error.rawMessage, 'run "00000000-0000-4000-8000-000000000000" not found');
      assert.equal(error.message, '[not_found] run "00000000-0000-4000-8000-000000000000" not found');
    });
    await rejectsWith(cairn.createRun("nightly_reprot"), CairnError, (error) => assert.equal(error.code, Code.NotFound));
    await rejectsWith(cairn.createRun("order_fulfillment", { orderId: "" }), CairnError, (error) => {
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /input\.orderId/);
    });
    await rejectsWith(cairn.createRun("echo", { value: 10n } as never), CairnError, (error) => {
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /input is not JSON-serializable/);
    });
  });

  test("the raw Connect clients share the transport and throw ConnectError", async () => {
    const { workflows } = await cairn.raw.workflows.listWorkflows({});
    assert.ok(workflows.length > 0);
    await assert.rejects(cairn.raw.workflows.getRun({ runId: "nope" }), (error: unknown) => error instanceof ConnectError && error.code === Code.InvalidArgument);
  });
});

describe("retries", () => {
  const fast = { initialDelayMs: 1, maxDelayMs: 5 };

  test("a CreateRun without idempotency key is never repeated, even when its answer is lost", async () => {
    const script = scriptedFetch(async ({ procedure, forward }) => {
      if (procedure !== "CreateRun") return undefined;
      const response = await forward(); // the server creates the run ...
      await response.body?.cancel();
      return unavailable(); // ... but the client never hears of it
    });
    const client = createCairnClient({ baseUrl: server.url, fetch: script.fetch, retry: fast });
    await rejectsWith(client.createRun(echo, { value: "lost-no-key" }), CairnError, (error) => assert.equal(error.code, Code.Unavailable));
    assert.equal(script.count("CreateRun"), 1);
    assert.equal((await runsWithInput("lost-no-key")).length, 1, "exactly the one run the lost call created");
  });

  test("a CreateRun with an idempotency key is retried and creates the run once", async () => {
    const script = scriptedFetch(async ({ procedure, attempt, forward }) => {
      if (procedure !== "CreateRun" || attempt > 2) return undefined;
      const response = await forward();
      await response.body?.cancel();
      return unavailable();
    });
    const client = createCairnClient({ baseUrl: server.url, fetch: script.fetch, retry: fast });
    const run = await client.createRun(echo, { value: "lost-with-key" }, { idempotencyKey: "sdk-retry-1" });
    assert.equal(script.count("CreateRun"), 3);
    assert.equal(run.deduplicated, true, "the third attempt found the run the first one created");
    const runs = await runsWithInput("lost-with-key");
    assert.deepEqual(runs.map((r) => r.runId), [run.runId]);
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "lost-with-key" });
  });

  test("GetRun is retried on network failures and UNAVAILABLE, a bounded number of times", async () => {
    const run = await cairn.createRun(echo, { value: "retry-get" });
    const flaky = scriptedFetch(({ procedure, attempt }) => {
      if (procedure !== "GetRun") return undefined;
      if (attempt === 1) throw new TypeError("fetch failed");
      if (attempt === 2) return unavailable();
      return undefined;
    });
    const client = createCairnClient({ baseUrl: server.url, fetch: flaky.fetch, retry: fast });
    assert.equal((await client.getRun(run.runId)).runId, run.runId);
    assert.equal(flaky.count("GetRun"), 3);

    const down = scriptedFetch(({ procedure }) => (procedure === "GetRun" ? unavailable() : undefined));
    const bounded = createCairnClient({ baseUrl: server.url, fetch: down.fetch, retry: fast });
    await rejectsWith(bounded.getRun(run.runId), CairnError, (error) => assert.equal(error.code, Code.Unavailable));
    assert.equal(down.count("GetRun"), 4, "4 attempts by default");

    const off = scriptedFetch(({ procedure }) => (procedure === "GetRun" ? unavailable() : undefined));
    await rejectsWith(createCairnClient({ baseUrl: server.url, fetch: off.fetch, retry: false }).getRun(run.runId), CairnError);
    assert.equal(off.count("GetRun"), 1);
  });

  test("errors that are not transient are not retried", async () => {
    const script = scriptedFetch(() => undefined);
    const client = createCairnClient({ baseUrl: server.url, fetch: script.fetch, retry: fast });
    await rejectsWith(client.getRun("00000000-0000-4000-8000-000000000000"), CairnError);
    assert.equal(script.count("GetRun"), 1);
  });
});

describe("transports and the API key", () => {
  test("the API key goes out as X-Api-Key on every call", async () => {
    const script = scriptedFetch(() => undefined);
    const client = createCairnClient({ baseUrl: server.url, apiKey: "ck_live_123", fetch: script.fetch });
    const run = await client.createRun(echo, { value: "keyed" });
    await client.waitForResult(run, { pollIntervalMs: 20 });
    assert.ok(script.calls.length >= 2);
    for (const call of script.calls) assert.equal(call.apiKey, "ck_live_123", call.procedure);
  });

  test("gRPC-Web (connect-web over fetch) runs a workflow end to end", async () => {
    const client = createCairnClient({ baseUrl: server.url, protocol: "grpc-web", apiKey: "ck_test" });
    const run = await client.createRun(echo, { value: "grpc-web" }, { eagerStart: true });
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "grpc-web" });
    await rejectsWith(client.getRun("00000000-0000-4000-8000-000000000000"), CairnError, (error) => assert.equal(error.code, Code.NotFound));
  });

  test("gRPC needs a supplied transport; with one, the API key is still added", async () => {
    assert.throws(() => createCairnClient({ baseUrl: server.url, protocol: "grpc" }), /protocol "grpc" needs a `transport`/);
    const seen: (string | null)[] = [];
    const record: Interceptor = (next) => (request) => {
      seen.push(request.header.get("x-api-key"));
      return next(request);
    };
    const transport = createGrpcTransport({ baseUrl: server.url, interceptors: [record] });
    const client = createCairnClient({ protocol: "grpc", transport, apiKey: "ck_grpc" });
    const run = await client.createRun(echo, { value: "grpc" }, { eagerStart: true });
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "grpc" });
    assert.ok(seen.length >= 2);
    assert.ok(seen.every((key) => key === "ck_grpc"));
  });
});
