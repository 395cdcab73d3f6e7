// TLS on the one port (CAIRN_TLS_CERT / CAIRN_TLS_KEY) with a self-signed certificate made by
// openssl for this test: gRPC (grpc-js, HTTP/2 by ALPN), Connect over HTTP/2 and HTTP/1.1,
// gRPC-Web, the REST routes, the SDK with its `ca` option and the CLI with --ca, all with API keys.
// Clients that do not trust the certificate, and plaintext clients, are refused.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { CairnError, createCairnClient } from "../../sdk/index.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../sdk/gen/grpc/health/v1/health_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { loadConfig } from "../../server/config.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { startTestServer } from "../support/in-process-server.js";
import { repoRoot } from "../support/server-process.js";

const folder = mkdtempSync(join(tmpdir(), "cairn-tls-"));
const certFile = join(folder, "cert.pem");
const keyFile = join(folder, "key.pem");
let ca: string;
let database: TestDatabase;
let server: CairnServer;
let apiKey: string;

beforeAll(async () => {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  ca = readFileSync(certFile, "utf8");
  database = await createTestDatabase("tls");
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    CAIRN_AUTH: "keys",
    WORKFLOW_DIRS: "test/fixtures/auth-workflows",
    CAIRN_TLS_CERT: certFile,
    CAIRN_TLS_KEY: keyFile,
  }));
  const generated = generateApiKey();
  await insertApiKey(server.database.db, { id: generated.id, namespace: "default", role: "admin", secretHash: generated.secretHash, name: "tls" });
  apiKey = generated.key;
});

afterAll(async () => {
  await server?.close();
  await database?.drop();
  rmSync(folder, { recursive: true, force: true });
});

const withKey: Interceptor[] = [
  (next) => (request) => {
    request.header.set("x-api-key", apiKey);
    return next(request);
  },
];

test("the server says https and serves gRPC over TLS (grpc-js, ALPN h2) with the key in metadata", async () => {
  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const definition = protoLoader.loadSync("cairn/v1/workflow.proto", { includeDirs: [join(repoRoot, "proto")], keepCase: true, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition).cairn as grpc.GrpcObject;
  const WorkflowClient = (pkg.v1 as grpc.GrpcObject).WorkflowService as grpc.ServiceClientConstructor;
  const method = (WorkflowClient.service as unknown as Record<string, grpc.MethodDefinition<object, object>>).ListWorkflows;
  assert.ok(method);
  const client = new WorkflowClient(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(ca)));
  const call = (metadata: grpc.Metadata) =>
    new Promise<{ workflows: { name: string }[] }>((resolve, reject) =>
      client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, {}, metadata, { deadline: Date.now() + 10_000 }, (error, value) =>
        error ? reject(error) : resolve(value as { workflows: { name: string }[] }),
      ),
    );
  try {
    const metadata = new grpc.Metadata();
    metadata.set("x-api-key", apiKey);
    const { workflows } = await call(metadata);
    assert.ok(workflows.some((w) => w.name === "quick"));
    await assert.rejects(call(new grpc.Metadata()), (error: grpc.ServiceError) => error.code === grpc.status.UNAUTHENTICATED);
  } finally {
    client.close();
  }
});

test("Connect over HTTP/2 and HTTP/1.1, gRPC-Web and health share the TLS port", async () => {
  for (const httpVersion of ["2", "1.1"] as const) {
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion, nodeOptions: { ca }, interceptors: withKey });
    const workflows = createClient(WorkflowService, transport);
    const { run } = await workflows.createRun({ workflowName: "quick", input: valueFromJson({ n: 7 }), eagerStart: true });
    assert.ok(run, httpVersion);
    const health = createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion, nodeOptions: { ca } }));
    assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
  }
  const grpcWeb = createClient(WorkflowService, createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1", nodeOptions: { ca }, interceptors: withKey }));
  const { runs } = await grpcWeb.listRuns({ workflowName: "quick" });
  assert.ok(runs.length >= 2);
});

test("the REST routes answer over TLS", async () => {
  const body = JSON.stringify({ workflow_name: "quick", input: { n: 9 }, eager_start: true });
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = https.request(
      `${server.url}/workflows/runs`,
      { method: "POST", ca, headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` } },
      (response) => {
        let text = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }));
      },
    );
    request.on("error", reject);
    request.end(body);
  });
  assert.equal(answer.status, 200, answer.body);
  assert.equal((JSON.parse(answer.body) as { run: { workflow_name: string } }).run.workflow_name, "quick");
});

test("the SDK trusts the server's certificate through its `ca` option (connect and grpc-web)", async () => {
  for (const protocol of ["connect", "grpc-web"] as const) {
    const cairn = createCairnClient({ baseUrl: server.url, apiKey, ca, protocol });
    const run = await cairn.createRun("quick", { n: 11 }, { eagerStart: true });
    assert.deepEqual(await run.waitForResult({ timeoutMs: 10_000 }), { n: 11 });
    const info = await cairn.getRun(run.runId);
    assert.equal(info.status, "completed");
  }
});

test("clients that do not trust the certificate, and plaintext clients, are refused", async () => {
  const untrusting = createCairnClient({ baseUrl: server.url, apiKey, retry: false });
  await assert.rejects(untrusting.listWorkflows(), (error: unknown) => {
    assert.ok(error instanceof CairnError);
    const causes: string[] = [];
    for (let cause: unknown = error; cause instanceof Error && causes.length < 10; cause = cause.cause) causes.push(cause.message);
    assert.match(causes.join(" | "), /self[- ]signed certificate/i);
    return true;
  });
  await assert.rejects(fetch(`${server.url.replace("https:", "http:")}/grpc.health.v1.Health/Check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }));
  // The server is unharmed.
  const cairn = createCairnClient({ baseUrl: server.url, apiKey, ca });
  assert.ok((await cairn.listRunsPage({ statuses: ["completed"] })).runs.every((r) => r.status === "completed"));
});

test("the CLI reaches the TLS server with --ca (or CAIRN_CA_FILE) and CAIRN_API_KEY", async () => {
  const run = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const childEnv: Record<string, string | undefined> = { ...process.env, CAIRN_API_KEY: apiKey, ...env };
      delete childEnv.NODE_TEST_CONTEXT;
      const child = spawn(process.execPath, ["cli/cairn.mjs", ...args], { cwd: repoRoot, env: childEnv });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      child.once("close", (code) => resolve({ code, stdout, stderr }));
    });
  const [withFlag, withVariable, without, notPem] = await Promise.all([
    run(["workflows", "list", "--url", server.url, "--ca", certFile], {}),
    run(["runs", "list", "--json", "--url", server.url], { CAIRN_CA_FILE: certFile }),
    run(["workflows", "list", "--url", server.url], {}),
    run(["workflows", "list", "--url", server.url, "--ca", writeNotPem()], {}),
  ]);
  assert.equal(withFlag.code, 0, withFlag.stderr);
  assert.match(withFlag.stdout, /quick/);
  assert.equal(withVariable.code, 0, withVariable.stderr);
  assert.ok((JSON.parse(withVariable.stdout) as unknown[]).length > 0);
  assert.equal(without.code, 3, "an untrusted certificate: the server cannot be reached");
  assert.match(without.stderr, /cannot reach Cairn at https:.*certificate/i);
  assert.equal(notPem.code, 3);
  assert.match(notPem.stderr, /holds no PEM certificate/);
});

function writeNotPem(): string {
  const file = join(folder, "not.pem");
  writeFileSync(file, "hello");
  return file;
}

test("a certificate and a key that do not belong together stop the configuration", () => {
  const otherKey = join(folder, "other-key.pem");
  execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", otherKey], { stdio: "ignore" });
  assert.throws(() => loadConfig({ CAIRN_TLS_CERT: certFile, CAIRN_TLS_KEY: otherKey }), /CAIRN_TLS_CERT \/ CAIRN_TLS_KEY: not a usable PEM certificate and matching private key/);
  assert.equal(loadConfig({ CAIRN_TLS_CERT: certFile, CAIRN_TLS_KEY: keyFile }).tls?.certFile, certFile);
});
