// The SDK's Node HTTP/2 transport (sdk/node-transport.ts: `createHttp2Transport`, or
// `createCairnClient({ http2: true })`) against real Cairn servers on real PostgreSQL: runs end to
// end, WatchRun, errors with their codes, messages, details and metadata (the same as
// connect-node's transport gives), deadlines, cancellation, a server restarted under the client,
// TLS, a peer's stream limit, and idle connections that neither linger nor hold the process.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, test } from "vitest";
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CairnError, type CairnClient, createCairnClient, RunFailedError, WaitTimeoutError } from "../../sdk/index.js";
import { createHttp2Transport } from "../../sdk/node-transport.js";
import { ViolationsSchema } from "../../sdk/gen/buf/validate/validate_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import { echo } from "../fixtures/service-workflows/echo.js";
import { createTestDatabase, freePort, type TestDatabase } from "../support/postgres.js";
import { startTestServer } from "../support/in-process-server.js";
import { repoRoot, startServerProcess } from "../support/server-process.js";

const workflowDirs = ["test/fixtures/service-workflows", "test/fixtures/wait-workflows"].join(":");
let database: TestDatabase;
/** Open mode: no keys. */
let server: CairnServer;
/** Keys required, 0.5 requests/s per key with a burst of 3. */
let keyed: CairnServer;
let cairn: CairnClient;

beforeAll(async () => {
  database = await createTestDatabase("sdk_http2");
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: workflowDirs }));
  ({ server: keyed } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: workflowDirs,
    CAIRN_AUTH: "keys",
    CAIRN_RATE_LIMIT_RPS: "0.5",
    CAIRN_RATE_LIMIT_BURST: "3",
  }));
  cairn = createCairnClient({ baseUrl: server.url, http2: true });
});

afterAll(async () => {
  await server?.close();
  await keyed?.close();
  await database?.drop();
});

async function newKey(): Promise<string> {
  const generated = generateApiKey();
  await insertApiKey(server.database.db, { id: generated.id, namespace: "default", role: "admin", secretHash: generated.secretHash, name: "http2 test" });
  return generated.key;
}

/** The error `promise` rejects with, checked to be a ConnectError (CairnError from the SDK's helpers) with `code`. */
async function failure(promise: Promise<unknown>, code: Code): Promise<ConnectError | CairnError> {
  let caught: ConnectError | CairnError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError || error instanceof CairnError, `expected a ConnectError or CairnError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code], error.message);
    caught = error;
    return true;
  });
  return caught as ConnectError | CairnError;
}

/** A run parked on an event nobody sends: AwaitRun on it waits for its whole timeout. */
async function parkedRun(client: CairnClient): Promise<string> {
  const run = await client.createRun("waiter", { type: "never", key: `k-${Math.random()}` }, { eagerStart: true });
  const deadline = Date.now() + 10_000;
  while ((await client.getRun(run.runId)).status !== "waiting") {
    assert.ok(Date.now() < deadline, "the run did not park");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return run.runId;
}

const awaitFor = (seconds: number) => ({ seconds: BigInt(seconds), nanos: 0 });

describe("calls", () => {
  test("createRun, getRun, waitForResult and listRuns through `http2: true`", async () => {
    const run = await cairn.createRun(echo, { value: "over h2" }, { eagerStart: true, metadata: { via: "http2" } });
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "over h2" });
    const info = await cairn.getRun(run.runId);
    assert.equal(info.status, "completed");
    assert.deepEqual(info.metadata, { via: "http2" });
    const queued = await cairn.createRun("echo", { value: "queued" });
    assert.equal(queued.run.status, "queued");
    assert.deepEqual(await cairn.waitForResult(queued, { timeoutMs: 10_000 }), { echoed: "queued" });
    const listed: string[] = [];
    for await (const r of cairn.listRuns({ workflow: echo, pageSize: 1 })) listed.push(r.runId);
    assert.ok(listed.includes(run.runId) && listed.includes(queued.runId), "listRuns pages through both runs");
    await assert.rejects(cairn.createRun("failing", { reason: "as planned" }, { eagerStart: true }).then((r) => r.waitForResult({ timeoutMs: 10_000 })), RunFailedError);
  });

  test("JSON bodies with useBinaryFormat: false, and a transport passed as `transport`", async () => {
    const seen: string[] = [];
    const record: Interceptor = (next) => async (request) => {
      seen.push(request.header.get("content-type") ?? "");
      return next(request);
    };
    const client = createCairnClient({ transport: createHttp2Transport({ baseUrl: server.url, useBinaryFormat: false, interceptors: [record] }) });
    const run = await client.createRun(echo, { value: "json" }, { eagerStart: true });
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "json" });
    await failure(client.getRun("00000000-0000-4000-8000-000000000000"), Code.NotFound);
    assert.ok(seen.length >= 3);
    assert.ok(seen.every((type) => type === "application/json"), seen.join());
  });

  test("WatchRun streams the run to its end, on the connection the unary calls use", async () => {
    const proxy = await startProxy(server.url); // counts connections
    try {
      const client = createCairnClient({ baseUrl: proxy.url, http2: true });
      const runId = await parkedRun(client);
      const updates: string[] = [];
      const watching = (async () => {
        for await (const update of client.watchRun(runId)) updates.push(update.type === "run" ? `run:${update.run.status}` : `entry:${update.entry.kind}`);
      })();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const input = (await client.getRun(runId)).input as { type: string; key: string };
      await client.sendEvent({ eventType: input.type, correlationId: input.key, payload: { ok: true } });
      await watching;
      assert.equal(updates[0], "run:waiting");
      assert.ok(updates.includes("entry:event_received"), updates.join());
      assert.equal(updates.at(-1), "run:completed");
      assert.equal(proxy.stats.sessions, 1, "one HTTP/2 connection for unary calls and the stream");
    } finally {
      await proxy.close();
    }
  });
});

describe("errors", () => {
  test("NOT_FOUND and INVALID_ARGUMENT keep their code, message and details", async () => {
    const missingRun = await failure(cairn.getRun("00000000-0000-4000-8000-000000000000"), Code.NotFound);
    assert.equal(missingRun.rawMessage, 'run "00000000-0000-4000-8000-000000000000" not found');
    assert.equal(missingRun.metadata.get("content-type"), "application/json");
    const missingWorkflow = await failure(cairn.createRun("nightly_reprot"), Code.NotFound);
    assert.match(missingWorkflow.rawMessage, /nightly_reprot/);

    const invalid = await failure(cairn.raw.workflows.createRun({ workflowName: "", idempotencyKey: "k".repeat(300) }), Code.InvalidArgument);
    assert.ok(invalid instanceof ConnectError);
    assert.match(invalid.rawMessage, /^invalid cairn\.v1\.CreateRunRequest: workflow_name: value is required \[required\]; idempotency_key: must be at most 256 characters/);
    const [violations] = invalid.findDetails(ViolationsSchema);
    assert.deepEqual(violations?.violations.map((v) => v.ruleId), ["required", "string.max_len"]);
  });

  test("UNAUTHENTICATED without a key; the apiKey interceptor's X-Api-Key is accepted", async () => {
    const anonymous = createCairnClient({ baseUrl: keyed.url, http2: true, retry: false });
    const refused = await failure(anonymous.listWorkflows(), Code.Unauthenticated);
    assert.match(refused.rawMessage, /API key/i);
    const withKey = createCairnClient({ baseUrl: keyed.url, http2: true, apiKey: await newKey() });
    assert.ok((await withKey.listWorkflows()).some((w) => w.name === "echo"));
  });

  test("RESOURCE_EXHAUSTED from the rate limiter carries retry-after-ms, and the SDK waits for it", async () => {
    const key = await newKey();
    const once = createCairnClient({ baseUrl: keyed.url, http2: true, apiKey: key, retry: false });
    for (let i = 0; i < 3; i++) await once.listWorkflows();
    const limited = await failure(once.listWorkflows(), Code.ResourceExhausted);
    assert.match(limited.rawMessage, /over its rate limit of 0\.5 requests\/s \(burst 3/);
    const retryAfterMs = Number(limited.metadata.get("retry-after-ms"));
    assert.ok(retryAfterMs > 0 && retryAfterMs <= 2000, `retry-after-ms ${limited.metadata.get("retry-after-ms")}`);
    assert.equal(limited.metadata.get("retry-after"), String(Math.ceil(retryAfterMs / 1000)));

    const patient = createCairnClient({ baseUrl: keyed.url, http2: true, apiKey: key });
    const started = Date.now();
    assert.ok((await patient.listWorkflows()).length > 0);
    assert.ok(Date.now() - started >= 500, "the SDK waited for the hinted time before retrying");
  });

  test("the same calls give the same answers and errors as connect-node's HTTP/2 transport", async () => {
    const finished = await cairn.createRun(echo, { value: "compare" }, { eagerStart: true });
    await finished.waitForResult({ timeoutMs: 10_000 });
    const clients = (baseUrl: string, interceptors: Interceptor[] = []) => ({
      ours: createClient(WorkflowService, createHttp2Transport({ baseUrl, interceptors })),
      connect: createClient(WorkflowService, createConnectTransport({ baseUrl, httpVersion: "2", interceptors })),
    });
    const open = clients(server.url);
    const anonymous = clients(keyed.url);
    type Call = [string, (client: Client<typeof WorkflowService>) => Promise<unknown>, DescMessage?];
    const calls: Call[] = [
      ["GetRun", (c) => c.getRun({ runId: finished.runId }), WorkflowService.method.getRun.output],
      ["ListWorkflows", (c) => c.listWorkflows({}), WorkflowService.method.listWorkflows.output],
      ["ListRuns", (c) => c.listRuns({ workflowName: "echo", pageSize: 2 }), WorkflowService.method.listRuns.output],
      ["GetRun unknown", (c) => c.getRun({ runId: "00000000-0000-4000-8000-000000000000" })],
      ["GetRun invalid id", (c) => c.getRun({ runId: "42" })],
      ["CreateRun invalid", (c) => c.createRun({ workflowName: "", idempotencyKey: "k".repeat(300) })],
      ["CreateRun unknown workflow", (c) => c.createRun({ workflowName: "nope" })],
      ["CancelRun finished", (c) => c.cancelRun({ runId: finished.runId })],
    ];
    const settle = (promise: Promise<unknown>) => promise.then((value) => ({ value }), (error: unknown) => ({ error: ConnectError.from(error) }));
    const describeError = (error: ConnectError) => ({
      code: Code[error.code],
      rawMessage: error.rawMessage,
      details: error.details.map((d) => ("desc" in d ? d.desc.typeName : `${d.type}:${Buffer.from(d.value).toString("base64")}`)),
      // The date differs between two answers. connect-node accepts gzip (ours asks for no compression), so
      // error bodies over 1 KiB reach it compressed: content-encoding and content-length differ too.
      metadata: [...error.metadata].filter(([name]) => !["date", "content-encoding", "content-length"].includes(name)),
    });
    const check = async (label: string, pair: ReturnType<typeof clients>, call: Call[1], schema?: DescMessage) => {
      const [ours, theirs] = [await settle(call(pair.ours)), await settle(call(pair.connect))];
      if ("error" in theirs) {
        assert.ok("error" in ours, `${label}: connect-node failed (${theirs.error.message}) but ours did not`);
        assert.deepEqual(describeError(ours.error), describeError(theirs.error), label);
      } else {
        assert.ok("value" in ours, `${label}: ours failed: ${"error" in ours ? ours.error.message : ""}`);
        assert.ok(schema, label);
        assert.deepEqual(toJson(schema, ours.value as MessageShape<DescMessage>), toJson(schema, theirs.value as MessageShape<DescMessage>), label);
      }
    };
    for (const [label, call, schema] of calls) await check(label, open, call, schema);
    await check("ListWorkflows without a key", anonymous, (c) => c.listWorkflows({}));
  });

  test("a response over readMaxBytes is RESOURCE_EXHAUSTED", async () => {
    const small = createClient(WorkflowService, createHttp2Transport({ baseUrl: server.url, readMaxBytes: 64 }));
    const error = await failure(small.listWorkflows({}), Code.ResourceExhausted);
    assert.match(error.rawMessage, /larger than configured readMaxBytes 64/);
    assert.ok((await createClient(WorkflowService, createHttp2Transport({ baseUrl: server.url, readMaxBytes: 64 * 1024 })).listWorkflows({})).workflows.length > 0);
  });
});

describe("deadlines and cancellation", () => {
  test("a call past its timeout is DEADLINE_EXCEEDED, from the client's own timer too", async () => {
    const runId = await parkedRun(cairn);
    // Without connect-timeout-ms the server waits the full 10 s: only the client's timer can end the call.
    const hideDeadline: Interceptor = (next) => (request) => {
      request.header.delete("connect-timeout-ms");
      return next(request);
    };
    const blind = createClient(WorkflowService, createHttp2Transport({ baseUrl: server.url, interceptors: [hideDeadline] }));
    let started = Date.now();
    const timedOut = await failure(blind.awaitRun({ runId, timeout: awaitFor(10) }, { timeoutMs: 300 }), Code.DeadlineExceeded);
    assert.equal(timedOut.rawMessage, "the operation timed out");
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);

    // With the header, whichever side notices first: the code is the same. A default timeout applies too.
    const withDefault = createClient(WorkflowService, createHttp2Transport({ baseUrl: server.url, defaultTimeoutMs: 300 }));
    started = Date.now();
    await failure(withDefault.awaitRun({ runId, timeout: awaitFor(10) }), Code.DeadlineExceeded);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);

    await assert.rejects(cairn.waitForResult(runId, { timeoutMs: 300 }), WaitTimeoutError);
    assert.equal((await blind.getRun({ runId })).run?.runId, runId, "the connection still serves");
  });

  test("an aborted call is CANCELED at once, its signal aborts for interceptors, and the connection goes on", async () => {
    const runId = await parkedRun(cairn);
    const signals: AbortSignal[] = [];
    const watchSignal: Interceptor = (next) => (request) => {
      signals.push(request.signal);
      return next(request);
    };
    const workflows = createClient(WorkflowService, createHttp2Transport({ baseUrl: server.url, interceptors: [watchSignal] }));
    const controller = new AbortController();
    const started = Date.now();
    const call = workflows.awaitRun({ runId, timeout: awaitFor(10) }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await failure(call, Code.Canceled);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    assert.equal(signals[0]?.aborted, true, "the request's signal aborted with the call");

    await failure(workflows.getRun({ runId }, { signal: AbortSignal.abort() }), Code.Canceled);
    assert.equal((await workflows.getRun({ runId })).run?.runId, runId, "the connection still serves");

    const sdk = createCairnClient({ baseUrl: server.url, http2: true });
    const aborted = new AbortController();
    setTimeout(() => aborted.abort(), 100);
    await failure(sdk.waitForResult(runId, { signal: aborted.signal }), Code.Canceled);
  });
});

describe("connections", () => {
  test("a server stopped and restarted on the same port: UNAVAILABLE in between, then the same client reconnects", async () => {
    const port = await freePort();
    const env = { DATABASE_URL: database.url, WORKFLOW_DIRS: workflowDirs, PORT: String(port) };
    let restartable = (await startTestServer(env)).server;
    try {
      const noRetries = createCairnClient({ baseUrl: restartable.url, http2: true, retry: false });
      const run = await noRetries.createRun(echo, { value: "before" }, { eagerStart: true });
      assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "before" });

      await restartable.close(); // GOAWAY to the open connection, then the port closes
      const down = await failure(noRetries.getRun(run.runId), Code.Unavailable);
      assert.match(down.message, /ECONNREFUSED|connect/i);

      // A retrying client's call spans the restart.
      const retrying = createCairnClient({ baseUrl: restartable.url, http2: true, retry: { maxAttempts: 40, initialDelayMs: 20, maxDelayMs: 100 } });
      const spanning = retrying.getRun(run.runId);
      await new Promise((resolve) => setTimeout(resolve, 300));
      restartable = (await startTestServer(env)).server;
      assert.equal((await spanning).runId, run.runId);
      assert.equal((await noRetries.getRun(run.runId)).status, "completed", "the client that saw UNAVAILABLE reconnects");
      const after = await noRetries.createRun(echo, { value: "after" }, { eagerStart: true });
      assert.deepEqual(await after.waitForResult({ timeoutMs: 10_000 }), { echoed: "after" });
    } finally {
      await restartable.close();
    }
  });

  test("a server process killed under a call in flight: UNAVAILABLE, not CANCELED", async () => {
    const victim = await startServerProcess({ databaseUrl: database.url, workflowDirs: ["test/fixtures/wait-workflows"] });
    try {
      const client = createCairnClient({ baseUrl: victim.url, http2: true, retry: false });
      const runId = await parkedRun(client);
      const started = Date.now();
      const inFlight = client.raw.workflows.awaitRun({ runId, timeout: awaitFor(10) });
      setTimeout(() => victim.kill("SIGKILL"), 200);
      // Node closes the streams of a connection that dies with CANCEL, as if the client had cancelled them.
      const lost = await failure(inFlight, Code.Unavailable);
      assert.match(lost.rawMessage, /connection closed/);
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    } finally {
      victim.kill("SIGKILL");
      await victim.exited;
    }
  });

  test("a connection dropped before or halfway through a response: UNAVAILABLE, never a truncated message", async () => {
    for (const [how, afterBytes] of [["close", 20], ["reset", 20], ["drop", 0]] as const) {
      const proxy = await startProxy(server.url, { cut: { afterBytes, how } });
      try {
        const workflows = createClient(WorkflowService, createHttp2Transport({ baseUrl: proxy.url }));
        const lost = await failure(workflows.listWorkflows({}), Code.Unavailable);
        assert.match(lost.rawMessage, /connection closed|ECONNRESET/, how);
      } finally {
        await proxy.close();
      }
    }
  });

  test("TLS: https with the server's certificate as `ca`; without it the call fails", async () => {
    const folder = mkdtempSync(join(tmpdir(), "cairn-h2-tls-"));
    const certFile = join(folder, "cert.pem");
    const keyFile = join(folder, "key.pem");
    // prettier-ignore
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    const { server: secure } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: workflowDirs, CAIRN_TLS_CERT: certFile, CAIRN_TLS_KEY: keyFile });
    try {
      assert.match(secure.url, /^https:/);
      const trusting = createCairnClient({ baseUrl: secure.url, http2: true, ca: readFileSync(certFile, "utf8") });
      const run = await trusting.createRun(echo, { value: "tls" }, { eagerStart: true });
      assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { echoed: "tls" });
      const kinds: string[] = [];
      for await (const update of trusting.watchRun(run.runId)) kinds.push(update.type);
      assert.deepEqual(kinds.slice(0, 2), ["run", "entry"], "WatchRun over TLS: the snapshot, then the history");

      const untrusting = createCairnClient({ baseUrl: secure.url, http2: true, retry: false });
      const refused = await failure(untrusting.listWorkflows(), Code.Unavailable);
      assert.match(refused.message, /certificate/i);
    } finally {
      await secure.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("a peer allowing 2 streams per connection gets more connections, not more streams; idle ones close", async () => {
    const proxy = await startProxy(server.url, { maxStreams: 2 });
    try {
      const transport = createHttp2Transport({ baseUrl: proxy.url, idleConnectionTimeoutMs: 300 });
      const workflows = createClient(WorkflowService, transport);
      await workflows.listWorkflows({}); // the peer's SETTINGS arrive with the first answer
      const runId = await parkedRun(cairn);
      const answers = await Promise.all(Array.from({ length: 8 }, () => workflows.awaitRun({ runId, timeout: { seconds: 0n, nanos: 400_000_000 } })));
      assert.ok(answers.every((a) => a.run?.runId === runId));
      assert.ok(proxy.stats.maxStreamsPerSession <= 2, `at most 2 streams per connection, saw ${proxy.stats.maxStreamsPerSession}`);
      assert.ok(proxy.stats.sessions >= 4, `8 calls at once need 4 connections, saw ${proxy.stats.sessions}`);

      const deadline = Date.now() + 5000;
      while (proxy.stats.openSessions > 0) {
        assert.ok(Date.now() < deadline, `${proxy.stats.openSessions} connections still open after the idle timeout`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok((await workflows.listWorkflows({})).workflows.length > 0, "a call after the idle close opens a new connection");
      transport.close();
    } finally {
      await proxy.close();
    }
  });

  test("an idle connection does not keep the process alive", async () => {
    const child = spawn(process.execPath, ["--conditions=@cairnjs/source", "--import", "tsx", "test/fixtures/http2-client-exit.ts", server.url], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
    clearTimeout(timer);
    assert.equal(signal, null, `the client process had to be killed: it did not exit after its call\n${output}`);
    assert.equal(code, 0, output);
    assert.match(output, /listed \d+ workflows/);
  });
});

/**
 * A plain HTTP/2 reverse proxy in front of the real server that allows `maxStreams` concurrent
 * streams per connection (as Envoy or nginx can be configured to), counting what it sees. With
 * `cut`, it drops the client's connection once that much of a response body went out (0: as soon
 * as a request arrives): closed (HTTP/2 session, or socket), or reset (TCP RST, as a crashed host
 * or a middlebox would).
 */
async function startProxy(target: string, options: { maxStreams?: number; cut?: { afterBytes: number; how: "close" | "reset" | "drop" } } = {}) {
  const upstream = http2.connect(target);
  upstream.on("error", () => {});
  const stats = { sessions: 0, openSessions: 0, maxStreamsPerSession: 0 };
  const sessions = new Set<http2.ServerHttp2Session>();
  const proxy = http2.createServer(options.maxStreams === undefined ? {} : { settings: { maxConcurrentStreams: options.maxStreams } });
  proxy.on("session", (session) => {
    stats.sessions++;
    stats.openSessions++;
    sessions.add(session);
    let open = 0;
    session.on("stream", (stream) => {
      stats.maxStreamsPerSession = Math.max(stats.maxStreamsPerSession, ++open);
      stream.once("close", () => open--);
    });
    session.once("close", () => {
      stats.openSessions--;
      sessions.delete(session);
    });
  });
  proxy.on("stream", (stream, headers) => {
    if (options.cut?.afterBytes === 0) {
      for (const socket of sockets) socket.destroy();
      return;
    }
    const forwarded: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) if (name !== ":authority" && name !== ":scheme" && value !== undefined) forwarded[name] = value;
    const request = upstream.request(forwarded);
    stream.on("error", () => request.close(http2.constants.NGHTTP2_CANCEL));
    request.on("error", () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    request.on("response", (responseHeaders) => {
      if (stream.destroyed) return;
      const { ":status": status, ...rest } = responseHeaders;
      stream.respond({ ":status": status, ...Object.fromEntries(Object.entries(rest).filter(([name]) => !name.startsWith(":"))) });
      const { cut } = options;
      if (cut === undefined) {
        request.pipe(stream);
        return;
      }
      request.once("data", (chunk: Buffer) => {
        stream.write(chunk.subarray(0, cut.afterBytes), () => {
          if (cut.how === "close") stream.session?.destroy();
          else if (cut.how === "reset") for (const socket of sockets) socket.resetAndDestroy();
          else for (const socket of sockets) socket.destroy();
        });
      });
    });
    stream.pipe(request);
  });
  const sockets = new Set<Socket>();
  proxy.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  const address = proxy.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    stats,
    async close() {
      for (const session of sessions) session.destroy();
      upstream.close();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}
