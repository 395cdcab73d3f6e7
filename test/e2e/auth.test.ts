// API keys, roles and tenant isolation on one in-process server in CAIRN_AUTH=keys mode, on real
// PostgreSQL: every protocol (Connect, gRPC-Web, gRPC with grpc-js metadata, REST), every role,
// and every path by which one namespace could reach another's runs, events, turns, children and
// watch streams. Further servers on the same database cover the key cache (TTL fallback, listener
// reconnect) and the per-key rate limit. Keys are made with the store functions `cairn keys`
// uses (test/e2e/auth-cli.test.ts drives the CLI itself and two server processes).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, test } from "vitest";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createCairnClient } from "../../sdk/index.js";
import { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { EntryKind, type Run, RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../sdk/gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../../sdk/gen/grpc/reflection/v1/reflection_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { RateLimiter } from "../../server/auth/rate-limit.js";
import { ConfigError, isLoopback, loadConfig } from "../../server/config.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { insertApiKey, revokeApiKey } from "../../server/store/api-keys.js";
import type { ApiKeyRole } from "../../server/store/schema.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { startTestServer } from "../support/in-process-server.js";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const workflowDirs = "test/fixtures/auth-workflows";

let database: TestDatabase;
let server: CairnServer;
const extraServers: CairnServer[] = [];

beforeAll(async () => {
  database = await createTestDatabase("auth");
  ({ server } = await startTestServer({ DATABASE_URL: database.url, CAIRN_AUTH: "keys", WORKFLOW_DIRS: workflowDirs }));
});

afterAll(async () => {
  for (const extra of extraServers) await extra.close();
  await server?.close();
  await database?.drop();
});

async function startExtraServer(env: Record<string, string>): Promise<CairnServer> {
  const started = await startTestServer({ DATABASE_URL: database.url, CAIRN_AUTH: "keys", WORKFLOW_DIRS: workflowDirs, ...env });
  extraServers.push(started.server);
  return started.server;
}

/** A new key, stored exactly as `cairn keys create` stores it. */
async function newKey(namespace: string, role: ApiKeyRole): Promise<{ id: string; key: string }> {
  const generated = generateApiKey();
  await insertApiKey(server.database.db, { id: generated.id, namespace, role, secretHash: generated.secretHash, name: `test ${role}` });
  return { id: generated.id, key: generated.key };
}

type Credential = { key: string; as?: "x-api-key" | "bearer" } | undefined;

function withCredential(credential: Credential): Interceptor[] {
  if (!credential) return [];
  return [
    (next) => (request) => {
      if (credential.as === "bearer") request.header.set("authorization", `Bearer ${credential.key}`);
      else request.header.set("x-api-key", credential.key);
      return next(request);
    },
  ];
}

interface Clients {
  workflows: Client<typeof WorkflowService>;
  agents: Client<typeof AgentService>;
}

function connectClients(credential: Credential, url = server.url): Clients {
  const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: withCredential(credential) });
  return { workflows: createClient(WorkflowService, transport), agents: createClient(AgentService, transport) };
}

async function rejects(call: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await assert.rejects(call, (error: unknown) => {
    caught = ConnectError.from(error);
    assert.equal(Code[caught.code], Code[code], caught.message);
    if (message) assert.match(caught.rawMessage, message);
    return true;
  });
  return caught as ConnectError;
}

/** The first message of a server stream (errors of the call surface here). */
async function first<T>(stream: AsyncIterable<T>): Promise<T> {
  for await (const message of stream) return message;
  throw new Error("the stream ended without a message");
}

async function waitForStatus(clients: Clients, runId: string, statuses: readonly RunStatus[], timeoutMs = 10_000): Promise<Run> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { run } = await clients.workflows.getRun({ runId });
    if (run && statuses.includes(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} did not reach ${statuses.map((s) => RunStatus[s]).join("|")} (status ${run ? RunStatus[run.status] : "?"})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const json = (value: unknown) => valueFromJson(value as never);

function rest(path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}, url = server.url): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: init.method ?? "GET",
    headers: { ...(init.body !== undefined ? { "content-type": "application/json" } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
}

// grpc-js, with the key in gRPC metadata.
let grpcMethods: Record<string, grpc.MethodDefinition<object, object>>;
let GrpcWorkflowClient: grpc.ServiceClientConstructor;
function grpcCall(method: string, request: object, metadata: Record<string, string>): Promise<object> {
  const definition = grpcMethods[method];
  assert.ok(definition, `no method ${method}`);
  const client = new GrpcWorkflowClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [name, value] of Object.entries(metadata)) md.set(name, value);
  return new Promise<object>((resolve, reject) => {
    client.makeUnaryRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, request, md, { deadline: Date.now() + 10_000 }, (error, value) => {
      client.close();
      if (error) reject(error);
      else resolve(value as object);
    });
  });
}

beforeAll(() => {
  const definition = protoLoader.loadSync("cairn/v1/workflow.proto", { includeDirs: [`${repoRoot}proto`], keepCase: true, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition).cairn as grpc.GrpcObject;
  GrpcWorkflowClient = (pkg.v1 as grpc.GrpcObject).WorkflowService as grpc.ServiceClientConstructor;
  grpcMethods = GrpcWorkflowClient.service as unknown as Record<string, grpc.MethodDefinition<object, object>>;
});

describe("authentication", () => {
  test("a request without a key is UNAUTHENTICATED on Connect, gRPC-Web, gRPC and the REST routes", async () => {
    const missing = /^missing API key: send it in the X-Api-Key header/;
    await rejects(connectClients(undefined).workflows.listWorkflows({}), Code.Unauthenticated, missing);
    const grpcWeb = createClient(WorkflowService, createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    await rejects(grpcWeb.listRuns({}), Code.Unauthenticated, missing);
    const grpcH2 = createClient(AgentService, createGrpcTransport({ baseUrl: server.url }));
    await rejects(grpcH2.pollTurns({ agents: ["a"], waitSeconds: 1 }), Code.Unauthenticated, missing);
    await assert.rejects(grpcCall("ListWorkflows", {}, {}), (error: grpc.ServiceError) => error.code === grpc.status.UNAUTHENTICATED);

    const post = await rest("/workflows/runs", { method: "POST", body: { workflow_name: "quick" } });
    assert.equal(post.status, 401);
    assert.equal(((await post.json()) as { code: string }).code, "unauthenticated");
    const get = await rest(`/workflows/runs/${randomUUID()}`);
    assert.equal(get.status, 401);
  });

  test("malformed, unknown and wrong-secret keys are UNAUTHENTICATED; messages name the key id, never the secret", async () => {
    await rejects(connectClients({ key: "hunter2" }).workflows.listWorkflows({}), Code.Unauthenticated, /^malformed API key/);
    const unknown = generateApiKey();
    await rejects(connectClients({ key: unknown.key }).workflows.listWorkflows({}), Code.Unauthenticated, new RegExp(`^API key ${unknown.id} is not valid`));
    const { id, key } = await newKey("alpha", "client");
    const secret = key.slice(`cairn_${id}_`.length);
    const wrongSecret = `cairn_${id}_${secret.slice(0, -1)}${secret.endsWith("A") ? "B" : "A"}`;
    const error = await rejects(connectClients({ key: wrongSecret }).workflows.listWorkflows({}), Code.Unauthenticated, new RegExp(`^API key ${id} is not valid`));
    assert.ok(!error.rawMessage.includes(secret.slice(0, 10)), "the secret is not echoed");
    // The right secret works.
    const { workflows } = await connectClients({ key }).workflows.listWorkflows({});
    assert.ok(workflows.some((w) => w.name === "await_event"));
  });

  test("X-Api-Key and Authorization: Bearer both authenticate, on Connect, gRPC metadata and REST", async () => {
    const { key } = await newKey("alpha", "client");
    const viaBearer = connectClients({ key, as: "bearer" });
    const { run } = await viaBearer.workflows.createRun({ workflowName: "quick", input: json({ n: 1 }) });
    assert.equal(run?.namespace, "alpha");

    const listed = (await grpcCall("ListWorkflows", {}, { "x-api-key": key })) as { workflows: unknown[] };
    assert.ok(listed.workflows.length > 0);
    await grpcCall("ListWorkflows", {}, { authorization: `Bearer ${key}` });

    const post = await rest("/workflows/runs", { method: "POST", headers: { "X-Api-Key": key }, body: { workflow_name: "quick", input: { n: 2 } } });
    assert.equal(post.status, 200);
    const created = (await post.json()) as { run: { run_id: string; namespace: string } };
    assert.equal(created.run.namespace, "alpha");
    const get = await rest(`/workflows/runs/${created.run.run_id}`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(get.status, 200);
    // Another Authorization scheme is not a Cairn credential: the key is missing.
    const basic = await rest(`/workflows/runs/${created.run.run_id}`, { headers: { Authorization: "Basic dXNlcjpwYXNz" } });
    assert.equal(basic.status, 401);
    assert.match(((await basic.json()) as { message: string }).message, /^missing API key/);
  });

  test("health and reflection answer without a key by default", async () => {
    const health = createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    assert.deepEqual(await listServices(server.url, undefined), [
      "cairn.v1.AgentService",
      "cairn.v1.KeyService",
      "cairn.v1.ScheduleService",
      "cairn.v1.WorkflowService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  test("with CAIRN_OPEN_HEALTH=false and CAIRN_OPEN_REFLECTION=false, both need a key of any role", async () => {
    const closed = await startExtraServer({ CAIRN_OPEN_HEALTH: "false", CAIRN_OPEN_REFLECTION: "false" });
    const { key: workerKey } = await newKey("alpha", "worker");
    const anonymous = createClient(Health, createConnectTransport({ baseUrl: closed.url, httpVersion: "1.1" }));
    await rejects(anonymous.check({ service: "" }), Code.Unauthenticated);
    const asWorker = createClient(Health, createConnectTransport({ baseUrl: closed.url, httpVersion: "1.1", interceptors: withCredential({ key: workerKey }) }));
    assert.equal((await asWorker.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    await rejects(listServices(closed.url, undefined), Code.Unauthenticated);
    assert.ok((await listServices(closed.url, workerKey)).includes("cairn.v1.WorkflowService"));
  });
});

async function listServices(url: string, key: string | undefined): Promise<string[]> {
  const transport = createGrpcTransport({ baseUrl: url, interceptors: withCredential(key ? { key } : undefined) });
  const reflection = createClient(reflectionV1.ServerReflection, transport);
  async function* requests() {
    yield create(reflectionV1.ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
  }
  for await (const response of reflection.serverReflectionInfo(requests())) {
    if (response.messageResponse.case === "listServicesResponse") return response.messageResponse.value.service.map((s) => s.name).sort();
  }
  throw new Error("no listServices answer");
}

describe("roles", () => {
  test("a worker key calls AgentService only: every WorkflowService procedure and REST route is PERMISSION_DENIED", async () => {
    const { id, key } = await newKey("alpha", "worker");
    const worker = connectClients({ key });
    const denied = new RegExp(`^API key ${id} has role worker, which cannot call cairn\\.v1\\.WorkflowService/\\w+; worker keys may call cairn\\.v1\\.AgentService only`);
    const runId = randomUUID();
    await Promise.all([
      rejects(worker.workflows.listWorkflows({}), Code.PermissionDenied, denied),
      rejects(worker.workflows.createRun({ workflowName: "quick" }), Code.PermissionDenied, denied),
      rejects(worker.workflows.getRun({ runId }), Code.PermissionDenied, denied),
      rejects(worker.workflows.listRuns({}), Code.PermissionDenied, denied),
      rejects(worker.workflows.getRunHistory({ runId }), Code.PermissionDenied, denied),
      rejects(worker.workflows.cancelRun({ runId }), Code.PermissionDenied, denied),
      rejects(worker.workflows.sendEvent({ eventType: "t", correlationId: "c" }), Code.PermissionDenied, denied),
      rejects(first(worker.workflows.watchRun({ runId })), Code.PermissionDenied, denied),
      rejects(first(worker.workflows.watchRuns({})), Code.PermissionDenied, denied),
    ]);
    const post = await rest("/workflows/runs", { method: "POST", headers: { "X-Api-Key": key }, body: { workflow_name: "quick" } });
    assert.equal(post.status, 403);
    const { turns } = await worker.agents.pollTurns({ agents: ["nobody-serves-this"], waitSeconds: 1 });
    assert.deepEqual(turns, []);
  });

  test("a client key calls WorkflowService but cannot receive, heartbeat, complete or fail agent turns", async () => {
    const { key } = await newKey("alpha", "client");
    const client = connectClients({ key });
    const denied = /has role client, which cannot call cairn\.v1\.AgentService\/\w+; client keys may call cairn\.v1\.WorkflowService, cairn\.v1\.ScheduleService only/;
    const turnId = randomUUID();
    const leaseToken = randomUUID();
    await Promise.all([
      rejects(client.agents.pollTurns({ agents: ["x"], waitSeconds: 1 }), Code.PermissionDenied, denied),
      rejects(first(client.agents.receiveTurns({ agents: ["x"] })), Code.PermissionDenied, denied),
      rejects(client.agents.heartbeatTurn({ turnId, leaseToken }), Code.PermissionDenied, denied),
      rejects(client.agents.completeTurn({ turnId, leaseToken, result: json("forged") }), Code.PermissionDenied, denied),
      rejects(client.agents.failTurn({ turnId, leaseToken }), Code.PermissionDenied, denied),
    ]);
    const { run } = await client.workflows.createRun({ workflowName: "quick", input: json({ n: 3 }), eagerStart: true });
    assert.equal((await waitForStatus(client, run?.runId ?? "", [RunStatus.COMPLETED])).namespace, "alpha");
  });

  test("an admin key calls both services: it starts an agent run and completes the turn itself", async () => {
    const { key } = await newKey("admins", "admin");
    const admin = connectClients({ key });
    const { run } = await admin.workflows.createRun({ workflowName: "ask_agent", input: json({ agent: "admin-agent", text: "hi" }), eagerStart: true });
    const { turns } = await admin.agents.pollTurns({ agents: ["admin-agent"], waitSeconds: 10 });
    const turn = turns[0];
    assert.ok(turn);
    await admin.agents.completeTurn({ turnId: turn.turnId, leaseToken: turn.leaseToken, result: json("hello") });
    const done = await waitForStatus(admin, run?.runId ?? "", [RunStatus.COMPLETED]);
    assert.deepEqual(valueToJson(done.output ?? json(null)), { answer: "hello" });
  });
});

describe("tenant isolation", () => {
  let a: Clients;
  let b: Clients;
  let workerA: Clients;
  let workerB: Clients;

  beforeAll(async () => {
    a = connectClients({ key: (await newKey("tenant-a", "client")).key });
    b = connectClients({ key: (await newKey("tenant-b", "client")).key });
    workerA = connectClients({ key: (await newKey("tenant-a", "worker")).key });
    workerB = connectClients({ key: (await newKey("tenant-b", "worker")).key });
  });

  test("another namespace's run is NOT_FOUND (GetRun, GetRunHistory, CancelRun, WatchRun, SendEvent to it, REST), exactly like a missing one", async () => {
    const { run } = await a.workflows.createRun({ workflowName: "await_event", input: json({ type: "iso.read", key: "r-1" }), eagerStart: true });
    const runId = run?.runId ?? "";
    await waitForStatus(a, runId, [RunStatus.WAITING]);
    const notFound = `run "${runId}" not found`;
    const missing = randomUUID();
    const [getOther, getMissing] = await Promise.all([rejects(b.workflows.getRun({ runId }), Code.NotFound), rejects(b.workflows.getRun({ runId: missing }), Code.NotFound)]);
    assert.equal(getOther.rawMessage, notFound);
    assert.equal(getMissing.rawMessage, `run "${missing}" not found`, "the same answer as for a run that does not exist");
    await rejects(b.workflows.getRunHistory({ runId }), Code.NotFound, new RegExp(notFound));
    await rejects(b.workflows.cancelRun({ runId, reason: "not yours" }), Code.NotFound, new RegExp(notFound));
    await rejects(first(b.workflows.watchRun({ runId })), Code.NotFound, new RegExp(notFound));
    await rejects(b.workflows.sendEvent({ eventType: "iso.read", correlationId: "r-1", runId, payload: json("forged") }), Code.NotFound, /names no run/);
    const viaRest = await rest(`/workflows/runs/${runId}`, { headers: { "X-Api-Key": (await newKey("tenant-b", "client")).key } });
    assert.equal(viaRest.status, 404);

    const listedByB = await b.workflows.listRuns({ workflowName: "await_event", pageSize: 1000 });
    assert.ok(!listedByB.runs.some((r) => r.runId === runId), "B's ListRuns does not show A's run");
    const waitingByB = await b.workflows.listRuns({ waitingEventType: "iso.read", pageSize: 1000 });
    assert.deepEqual(waitingByB.runs, []);
    const listedByA = await a.workflows.listRuns({ workflowName: "await_event", pageSize: 1000 });
    assert.ok(listedByA.runs.some((r) => r.runId === runId), "A's ListRuns shows it");

    // Nothing B did reached the run: still waiting, not cancelled, nothing consumed.
    const still = await waitForStatus(a, runId, [RunStatus.WAITING]);
    assert.equal(still.status, RunStatus.WAITING);
    const { entries } = await a.workflows.getRunHistory({ runId });
    assert.ok(!entries.some((e) => e.kind === EntryKind.EVENT_RECEIVED || e.kind === EntryKind.RUN_CANCELLED));
    await a.workflows.cancelRun({ runId, reason: "cleanup" });
  });

  test("an event sent in namespace B neither wakes nor is consumed by A's run waiting on the same type and correlation id", async () => {
    const type = "order.approved";
    const key = `o-${randomUUID()}`;
    const { run: runA } = await a.workflows.createRun({ workflowName: "await_event", input: json({ type, key }), eagerStart: true });
    const { run: runB } = await b.workflows.createRun({ workflowName: "await_event", input: json({ type, key }), eagerStart: true });
    const idA = runA?.runId ?? "";
    const idB = runB?.runId ?? "";
    await waitForStatus(a, idA, [RunStatus.WAITING]);
    await waitForStatus(b, idB, [RunStatus.WAITING]);

    const sentInB = await b.workflows.sendEvent({ eventType: type, correlationId: key, payload: json("for B"), idempotencyKey: `evt-${key}` });
    assert.deepEqual(sentInB.matchedRunIds, [idB], "B's event wakes B's run only");
    const doneB = await waitForStatus(b, idB, [RunStatus.COMPLETED]);
    assert.deepEqual(valueToJson(doneB.output ?? json(null)), { payload: "for B" });

    // A's run stays parked: B's event did not wake it, and its next look (polls, other wake-ups) does not match B's event.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const parked = await waitForStatus(a, idA, [RunStatus.WAITING]);
    assert.equal(parked.waitingOn?.target.case, "event");
    const history = await a.workflows.getRunHistory({ runId: idA });
    assert.ok(!history.entries.some((e) => e.kind === EntryKind.EVENT_RECEIVED));

    // The same idempotency key in A is a different event, not a duplicate of B's.
    const sentInA = await a.workflows.sendEvent({ eventType: type, correlationId: key, payload: json("for A"), idempotencyKey: `evt-${key}` });
    assert.equal(sentInA.deduplicated, false);
    assert.notEqual(sentInA.eventId, sentInB.eventId);
    assert.deepEqual(sentInA.matchedRunIds, [idA]);
    const doneA = await waitForStatus(a, idA, [RunStatus.COMPLETED]);
    assert.deepEqual(valueToJson(doneA.output ?? json(null)), { payload: "for A" });
  });

  test("an event stored in B before A's run waits is not delivered to A's run either", async () => {
    const type = "early.bird";
    const key = `e-${randomUUID()}`;
    // Queued (not eager): B's event is stored while A's run is queued or just parking.
    const { run } = await a.workflows.createRun({ workflowName: "await_event", input: json({ type, key }) });
    const runId = run?.runId ?? "";
    const sent = await b.workflows.sendEvent({ eventType: type, correlationId: key, payload: json("wrong tenant") });
    assert.ok(!sent.matchedRunIds.includes(runId));
    await waitForStatus(a, runId, [RunStatus.WAITING]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await waitForStatus(a, runId, [RunStatus.WAITING])).status, RunStatus.WAITING);
    await a.workflows.sendEvent({ eventType: type, correlationId: key, payload: json("right tenant") });
    const done = await waitForStatus(a, runId, [RunStatus.COMPLETED]);
    assert.deepEqual(valueToJson(done.output ?? json(null)), { payload: "right tenant" });
  });

  test("idempotency keys are per namespace", async () => {
    const idempotencyKey = `same-${randomUUID()}`;
    const first = await a.workflows.createRun({ workflowName: "quick", input: json({ n: 1 }), idempotencyKey });
    const other = await b.workflows.createRun({ workflowName: "quick", input: json({ n: 2 }), idempotencyKey });
    assert.equal(other.deduplicated, false, "B's key does not collide with A's (a different input would be ALREADY_EXISTS within one namespace)");
    assert.notEqual(other.run?.runId, first.run?.runId);
    const again = await b.workflows.createRun({ workflowName: "quick", input: json({ n: 2 }), idempotencyKey });
    assert.equal(again.deduplicated, true);
    assert.equal(again.run?.runId, other.run?.runId);
    await rejects(a.workflows.createRun({ workflowName: "quick", input: json({ n: 2 }), idempotencyKey }), Code.AlreadyExists);
  });

  test("a worker of namespace B neither receives nor completes A's agent turn, even with its lease token", async () => {
    const agent = `shared-agent-${randomUUID().slice(0, 8)}`;
    const { run } = await a.workflows.createRun({ workflowName: "ask_agent", input: json({ agent, text: "for A" }), eagerStart: true });
    const runId = run?.runId ?? "";
    const waiting = await waitForStatus(a, runId, [RunStatus.WAITING]);
    assert.equal(waiting.waitingOn?.target.case, "agent");
    const turnId = waiting.waitingOn?.target.case === "agent" ? waiting.waitingOn.target.value.turnId : "";

    const polled = await workerB.agents.pollTurns({ agents: [agent], waitSeconds: 1 });
    assert.deepEqual(polled.turns, [], "B's long poll gets nothing");
    const streamed: unknown[] = [];
    const stop = AbortSignal.timeout(1000);
    await assert.rejects(
      (async () => {
        for await (const message of workerB.agents.receiveTurns({ agents: [agent] }, { signal: stop })) streamed.push(message);
      })(),
      (error: unknown) => ConnectError.from(error).code === Code.Canceled,
    );
    assert.deepEqual(streamed, [], "B's stream gets nothing");
    const notFound = new RegExp(`turn "${turnId}" not found`);
    await rejects(workerB.agents.completeTurn({ turnId, leaseToken: randomUUID(), result: json("forged") }), Code.NotFound, notFound);

    const { turns } = await workerA.agents.pollTurns({ agents: [agent], waitSeconds: 10 });
    const turn = turns[0];
    assert.equal(turn?.turnId, turnId);
    assert.ok(turn);
    // Even with the current lease token, B cannot touch the turn.
    await rejects(workerB.agents.completeTurn({ turnId, leaseToken: turn.leaseToken, result: json("forged") }), Code.NotFound, notFound);
    await rejects(workerB.agents.failTurn({ turnId, leaseToken: turn.leaseToken }), Code.NotFound, notFound);
    await rejects(workerB.agents.heartbeatTurn({ turnId, leaseToken: turn.leaseToken }), Code.NotFound, notFound);

    await workerA.agents.completeTurn({ turnId, leaseToken: turn.leaseToken, result: json("from A's worker") });
    const done = await waitForStatus(a, runId, [RunStatus.COMPLETED]);
    assert.deepEqual(valueToJson(done.output ?? json(null)), { answer: "from A's worker" });
  });

  test("a child run inherits its parent's namespace and is invisible to other namespaces", async () => {
    const key = `k-${randomUUID()}`;
    const { run } = await a.workflows.createRun({ workflowName: "parent", input: json({ type: "kid.go", key }), eagerStart: true });
    const parentId = run?.runId ?? "";
    let child: Run | undefined;
    const deadline = Date.now() + 10_000;
    while (!child || child.status !== RunStatus.WAITING) {
      [child] = (await a.workflows.listRuns({ parentRunId: parentId })).runs;
      if (Date.now() > deadline) throw new Error("the child never waited");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(child.namespace, "tenant-a");
    assert.deepEqual((await b.workflows.listRuns({ parentRunId: parentId })).runs, []);
    await rejects(b.workflows.getRun({ runId: child.runId }), Code.NotFound);
    const fromB = await b.workflows.sendEvent({ eventType: "kid.go", correlationId: key, payload: json("B") });
    assert.deepEqual(fromB.matchedRunIds, []);
    const fromA = await a.workflows.sendEvent({ eventType: "kid.go", correlationId: key, payload: json("A") });
    assert.deepEqual(fromA.matchedRunIds, [child.runId]);
    const done = await waitForStatus(a, parentId, [RunStatus.COMPLETED]);
    assert.deepEqual(valueToJson(done.output ?? json(null)), { child: { payload: "A" } });
  });

  test("WatchRuns of namespace B never carries A's runs; WatchRun works within a namespace", async () => {
    const abort = new AbortController();
    const seenByB: Run[] = [];
    let sawOwn: (() => void) | undefined;
    const ownSeen = new Promise<void>((resolve) => (sawOwn = resolve));
    let ownId = "";
    const reading = (async () => {
      for await (const message of b.workflows.watchRuns({ workflowName: "quick" }, { signal: abort.signal })) {
        if (message.run) seenByB.push(message.run);
        if (message.run?.runId === ownId && message.run.status === RunStatus.COMPLETED) sawOwn?.();
      }
    })().catch(() => undefined);
    // Let the stream register before anything happens.
    await new Promise((resolve) => setTimeout(resolve, 300));

    // A's run changes first (created, running, completed); B's afterwards. A leak would arrive before B's.
    const { run: runA } = await a.workflows.createRun({ workflowName: "quick", input: json({ n: 10 }), eagerStart: true });
    const idA = runA?.runId ?? "";
    const watchedByA: string[] = [];
    for await (const message of a.workflows.watchRun({ runId: idA })) {
      if (message.update.case === "run") watchedByA.push(RunStatus[message.update.value.status]);
    }
    assert.equal(watchedByA.at(-1), "COMPLETED", "A watches its own run to the end");
    const { run: runB } = await b.workflows.createRun({ workflowName: "quick", input: json({ n: 20 }), eagerStart: true });
    ownId = runB?.runId ?? "";
    await Promise.race([ownSeen, new Promise((_, reject) => setTimeout(() => reject(new Error("B never saw its own run complete")), 10_000))]);
    abort.abort();
    await reading;
    assert.ok(seenByB.length > 0);
    assert.ok(!seenByB.some((r) => r.runId === idA), "B's WatchRuns never sent A's run");
    assert.ok(seenByB.every((r) => r.namespace === "tenant-b"));
  });
});

/**
 * Creating a key notifies every server too. A load that overlaps a notice is not cached (it might be
 * stale), so let the creation notice arrive before relying on the cache.
 */
async function settleCreationNotice(client: Clients): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 300));
  await client.workflows.listWorkflows({});
}

describe("key cache and revocation", () => {
  test("open streams end with UNAUTHENTICATED when their key is revoked (WatchRuns of a client, ReceiveTurns of a worker)", { timeout: 15_000 }, async () => {
    const client = await newKey("alpha", "client");
    const worker = await newKey("alpha", "worker");
    let since = Number.POSITIVE_INFINITY;
    const ended: number[] = [];
    const endedAt = () => ended.push(Date.now() - since);
    const watching = rejects(
      first(connectClients({ key: client.key }).workflows.watchRuns({ workflowName: "no-such-workflow" })).finally(endedAt),
      Code.Unauthenticated,
      new RegExp(`^API key ${client.id} has been revoked$`),
    );
    const receiving = rejects(
      first(connectClients({ key: worker.key }).agents.receiveTurns({ agents: ["no-such-agent"] })).finally(endedAt),
      Code.Unauthenticated,
      new RegExp(`^API key ${worker.id} has been revoked$`),
    );
    // Both streams are open and idle; a revocation is the only thing that can end them.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(ended, [], "the streams are still open");
    since = Date.now();
    await revokeApiKey(server.database.db, client.id);
    await revokeApiKey(server.database.db, worker.id);
    await Promise.all([watching, receiving]);
    assert.ok(Date.now() - since < 2000, `the streams ended ${Date.now() - since} ms after the revocation`);
  });

  test("verification is cached: a revocation written without a notice is honoured after CAIRN_KEY_CACHE_TTL, not per request", async () => {
    const cached = await startExtraServer({ CAIRN_KEY_CACHE_TTL: "3s" });
    const { id, key } = await newKey("alpha", "client");
    const client = connectClients({ key }, cached.url);
    await settleCreationNotice(client);
    // A manual UPDATE sends no cairn_keys notice: only the TTL can expire the cached row.
    await withClient(database.url, (c) => c.query("update api_keys set revoked_at = now() where id = $1", [id]));
    const revokedAt = Date.now();
    await client.workflows.listWorkflows({});
    let refusedAfter: number | undefined;
    while (refusedAfter === undefined) {
      try {
        await client.workflows.listWorkflows({});
      } catch (error) {
        assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
        assert.match(ConnectError.from(error).rawMessage, new RegExp(`^API key ${id} has been revoked$`));
        refusedAfter = Date.now() - revokedAt;
      }
      assert.ok(Date.now() - revokedAt < 8000, "the cached row expired within the TTL");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(refusedAfter <= 3000 + 1000, `refused ${refusedAfter} ms after the silent revocation (TTL 3 s)`);
  });

  test("a dropped listener connection empties the cache: notices sent meanwhile may have been lost", async () => {
    const longTtl = await startExtraServer({ CAIRN_KEY_CACHE_TTL: "10m" });
    const { id, key } = await newKey("alpha", "client");
    const client = connectClients({ key }, longTtl.url);
    await settleCreationNotice(client);
    await withClient(database.url, (c) => c.query("update api_keys set revoked_at = now() where id = $1", [id]));
    await client.workflows.listWorkflows({}); // cached for ten minutes
    const cut = await withClient(database.url, async (c) => {
      const result = await c.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen %'");
      return result.rowCount ?? 0;
    });
    assert.ok(cut >= 1);
    const deadline = Date.now() + 6000;
    for (;;) {
      try {
        await client.workflows.listWorkflows({});
      } catch (error) {
        assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
        break;
      }
      assert.ok(Date.now() < deadline, "the reconnected listener dropped the cached key");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
});

describe("rate limit", () => {
  test("over CAIRN_RATE_LIMIT_RPS a key gets RESOURCE_EXHAUSTED with retry-after; other keys are unaffected; the SDK waits and retries", async () => {
    const limited = await startExtraServer({ CAIRN_RATE_LIMIT_RPS: "0.5", CAIRN_RATE_LIMIT_BURST: "3" });
    const { id, key } = await newKey("alpha", "client");
    const client = connectClients({ key }, limited.url);
    for (let i = 0; i < 3; i++) await client.workflows.listWorkflows({});
    const error = await rejects(client.workflows.listWorkflows({}), Code.ResourceExhausted, new RegExp(`^API key ${id} is over its rate limit of 0\\.5 requests/s \\(burst 3`));
    const retryAfterMs = Number(error.metadata.get("retry-after-ms"));
    assert.ok(retryAfterMs > 0 && retryAfterMs <= 2000, `retry-after-ms ${retryAfterMs}`);
    assert.equal(error.metadata.get("retry-after"), String(Math.ceil(retryAfterMs / 1000)));

    // A change notice for the key (its own creation notice arrives like this) must not hand it a fresh burst.
    await withClient(database.url, (c) => c.query("select pg_notify('cairn_keys', $1)", [id]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await rejects(client.workflows.listWorkflows({}), Code.ResourceExhausted);

    const viaRest = await rest(`/workflows/runs/${randomUUID()}`, { headers: { "X-Api-Key": key } }, limited.url);
    assert.equal(viaRest.status, 429);
    assert.ok(Number(viaRest.headers.get("retry-after")) >= 1);
    assert.ok(Number(viaRest.headers.get("retry-after-ms")) > 0);

    const other = connectClients({ key: (await newKey("alpha", "client")).key }, limited.url);
    await other.workflows.listWorkflows({});

    const sdk = createCairnClient({ baseUrl: limited.url, apiKey: key });
    const started = Date.now();
    const workflows = await sdk.listWorkflows();
    assert.ok(workflows.length > 0);
    assert.ok(Date.now() - started >= 500, "the SDK waited for the hinted time before retrying");
  });
});

describe("rate limiter buckets", () => {
  test("a bucket is kept while it refills and swept once full, so idle keys cost no memory", () => {
    let now = 0;
    const limiter = new RateLimiter(1, 2, () => now);
    assert.equal(limiter.take("a"), 0);
    assert.equal(limiter.take("a"), 0);
    assert.equal(limiter.take("a"), 1000);
    now = 1500; // a refills 1.5 tokens; the sweep (every 2 s, the refill time) has not run yet
    assert.equal(limiter.take("b"), 0);
    assert.equal(limiter.take("a"), 0);
    assert.equal(limiter.size, 2);
    now = 3400; // a was last seen at 1.5 s, b too: neither is full yet, so both stay
    assert.equal(limiter.take("c"), 0);
    assert.equal(limiter.size, 3);
    now = 6000; // everyone has refilled: the sweep leaves only the key asking now
    assert.equal(limiter.take("a"), 0);
    assert.equal(limiter.size, 1);
  });
});

describe("configuration", () => {
  test("CAIRN_AUTH defaults to open only for the embedded store on a loopback host; open elsewhere needs CAIRN_ALLOW_OPEN", () => {
    assert.equal(loadConfig({}).auth.mode, "open");
    assert.equal(loadConfig({ HOST: "::1" }).auth.mode, "open");
    assert.equal(loadConfig({ DATABASE_URL: "postgres://db/cairn" }).auth.mode, "keys");
    assert.equal(loadConfig({ HOST: "0.0.0.0" }).auth.mode, "keys");
    assert.equal(loadConfig({ DATABASE_URL: "postgres://db/cairn", CAIRN_AUTH: "open" }).auth.mode, "open");
    assert.throws(() => loadConfig({ HOST: "0.0.0.0", CAIRN_AUTH: "open" }), (error: unknown) => error instanceof ConfigError && /CAIRN_ALLOW_OPEN=true/.test(error.message));
    assert.equal(loadConfig({ HOST: "0.0.0.0", CAIRN_AUTH: "open", CAIRN_ALLOW_OPEN: "true" }).auth.mode, "open");
    assert.throws(() => loadConfig({ CAIRN_AUTH: "sometimes" }), /CAIRN_AUTH="sometimes" must be one of keys, open/);
    assert.throws(() => loadConfig({ CAIRN_OPEN_HEALTH: "maybe" }), /CAIRN_OPEN_HEALTH="maybe" must be true or false/);
    assert.throws(() => loadConfig({ CAIRN_RATE_LIMIT_BURST: "5" }), /CAIRN_RATE_LIMIT_RPS is not/);
    assert.deepEqual(loadConfig({ CAIRN_RATE_LIMIT_RPS: "20" }).rateLimit, { rps: 20, burst: 20 });
    assert.equal(loadConfig({}).rateLimit, undefined);
    assert.equal(loadConfig({ CAIRN_KEY_CACHE_TTL: "1m" }).auth.keyCacheTtlMs, 60_000);
    assert.throws(() => loadConfig({ CAIRN_TLS_CERT: "/tmp/cert.pem" }), /CAIRN_TLS_KEY is missing/);
    assert.throws(() => loadConfig({ CAIRN_TLS_CERT: "/nonexistent/c.pem", CAIRN_TLS_KEY: "/nonexistent/k.pem" }), /CAIRN_TLS_CERT="\/nonexistent\/c\.pem": cannot read/);
    for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"]) assert.ok(isLoopback(host), host);
    for (const host of ["0.0.0.0", "::", "10.0.0.5", "example.com", "::ffff:10.0.0.1"]) assert.ok(!isLoopback(host), host);
  });
});
