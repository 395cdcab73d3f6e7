// The seed's REST routes and CORS, end to end on real PostgreSQL: servers in this process, plain
// fetch over real sockets, exact response shapes, errors as HTTP statuses with Connect's error JSON.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, test } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CairnServer } from "../../server/app.js";
import { ConfigError, loadConfig } from "../../server/config.js";
import { withCors } from "../../server/http/cors.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { createTestDatabase } from "../support/postgres.js";
import { startTestServer, type WorkflowClient } from "../support/in-process-server.js";

let server: CairnServer; // CORS off (CAIRN_CORS_ORIGINS unset)
let client: WorkflowClient;
let corsServer: CairnServer; // CORS on for two origins
let dropDatabase: () => Promise<void>;

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const apiKey = "ck_test_0123456789";
const order = { orderId: "o-42", items: [{ sku: "tea", quantity: 2 }], amountCents: 900 };
const appOrigin = "https://app.example.com";

beforeAll(async () => {
  const database = await createTestDatabase("rest");
  dropDatabase = database.drop;
  const env = {
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: ["workflows", "test/fixtures/service-workflows"].join(":"),
    CAIRN_MAX_INPUT_BYTES: "2048",
  };
  ({ server, client } = await startTestServer(env));
  ({ server: corsServer } = await startTestServer({ ...env, CAIRN_CORS_ORIGINS: `${appOrigin}, http://localhost:5173` }));
});

afterAll(async () => {
  await corsServer?.close();
  await server?.close();
  await dropDatabase?.();
});

interface RestRun {
  run_id: string;
  workflow_name: string;
  status: string;
  input: unknown;
  output?: unknown;
  error?: { name: string; message: string };
  created_at: string;
  updated_at: string;
  completed_at?: string;
  [field: string]: unknown;
}

async function postRun(body: string, headers: Record<string, string> = {}, base = server.url): Promise<Response> {
  return fetch(`${base}/workflows/runs`, {
    method: "POST",
    headers: { "X-Api-Key": apiKey, "content-type": "application/json", ...headers },
    body,
  });
}

async function getRun(id: string, base = server.url): Promise<Response> {
  return fetch(`${base}/workflows/runs/${id}`, { headers: { "X-Api-Key": apiKey } });
}

async function json<T>(response: Response): Promise<T> {
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  return (await response.json()) as T;
}

async function expectError(response: Response, status: number, code: string, message: RegExp): Promise<string> {
  const body = await json<{ code: string; message: string }>(response);
  assert.equal(response.status, status, JSON.stringify(body));
  assert.deepEqual(Object.keys(body).sort(), ["code", "message"]);
  assert.equal(body.code, code);
  assert.match(body.message, message);
  return body.message;
}

/** Polls GET /workflows/runs/{id} until the run has ended. */
async function restWaitForEnd(id: string, timeoutMs = 10_000): Promise<RestRun> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { run } = await json<{ run: RestRun }>(await getRun(id));
    if (["RUN_STATUS_COMPLETED", "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED"].includes(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id} did not end (status ${run.status})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the seed's curl commands", () => {
  test("POST /workflows/runs with workflow_name, input and eager_start creates and starts a run", async () => {
    // curl -X POST localhost:8080/workflows/runs -H 'X-Api-Key: ...' -H 'content-type: application/json' \
    //   -d '{"workflow_name":"order_fulfillment","input":{...},"eager_start":true}'
    const response = await postRun(`{"workflow_name":"order_fulfillment","input":${JSON.stringify(order)},"eager_start":true}`);
    assert.equal(response.status, 200);
    const body = await json<{ run: RestRun }>(response);
    assert.deepEqual(Object.keys(body), ["run"], "deduplicated is left out when false");
    const { run } = body;
    assert.match(run.run_id, uuid);
    assert.equal(run.workflow_name, "order_fulfillment");
    assert.equal(run.status, "RUN_STATUS_RUNNING");
    assert.deepEqual(run.input, order);
    assert.equal(run.namespace, "default");
    assert.match(run.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.ok(!("output" in run) && !("error" in run) && !("completed_at" in run));
    // proto field names, never the camelCase spelling
    for (const key of Object.keys(run)) assert.doesNotMatch(key, /[A-Z]/, `field ${key} is snake_case`);
  });

  test("GET /workflows/runs/{id} shows the run, and its output once it completed", async () => {
    const created = await json<{ run: RestRun }>(
      await postRun(`{"workflow_name":"order_fulfillment","input":${JSON.stringify(order)},"eager_start":true}`),
    );
    // curl localhost:8080/workflows/runs/<id> -H 'X-Api-Key: ...'
    const response = await getRun(created.run.run_id);
    assert.equal(response.status, 200);
    const body = await json<{ run: RestRun }>(response);
    assert.deepEqual(Object.keys(body), ["run"]);
    assert.equal(body.run.run_id, created.run.run_id);

    const run = await restWaitForEnd(created.run.run_id);
    assert.equal(run.status, "RUN_STATUS_COMPLETED");
    assert.deepEqual((run.output as { shipment: unknown }).shipment, { trackingNumber: "TRK-O-42", carrier: "parcel" });
    assert.equal((run.output as { status: string }).status, "fulfilled");
    assert.ok(run.completed_at && run.started_at);
    assert.equal(run.activation_count, 1);

    // The same run over Connect.
    const viaConnect = await client.getRun({ runId: run.run_id });
    assert.equal(viaConnect.run?.completedAt?.seconds, BigInt(Math.floor(Date.parse(run.completed_at ?? "") / 1000)));
  });

  test("without eager_start the run is queued and the scheduler runs it", async () => {
    const { run } = await json<{ run: RestRun }>(await postRun(`{"workflow_name":"echo","input":{"value":[1,"two"]}}`));
    assert.equal(run.status, "RUN_STATUS_QUEUED");
    const finished = await restWaitForEnd(run.run_id);
    assert.deepEqual(finished.output, { echoed: [1, "two"] });
  });

  test("camelCase spellings, idempotency_key and metadata are accepted; a retry is deduplicated", async () => {
    const body = JSON.stringify({ workflowName: "echo", input: { value: "idem" }, idempotencyKey: "rest-key-1", metadata: { source: "rest" } });
    const first = await json<{ run: RestRun; deduplicated?: boolean }>(await postRun(body));
    assert.equal(first.deduplicated, undefined);
    assert.deepEqual(first.run.metadata, { source: "rest" });
    assert.equal(first.run.idempotency_key, "rest-key-1");
    const second = await json<{ run: RestRun; deduplicated?: boolean }>(
      await postRun(JSON.stringify({ workflow_name: "echo", input: { value: "idem" }, idempotency_key: "rest-key-1" })),
    );
    assert.equal(second.deduplicated, true);
    assert.equal(second.run.run_id, first.run.run_id);
  });

  test("no input means {} and, in open mode, no X-Api-Key is needed", async () => {
    const response = await fetch(`${server.url}/workflows/runs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"workflow_name":"echo"}`,
    });
    const { run } = await json<{ run: RestRun }>(response);
    assert.equal(response.status, 200);
    assert.deepEqual(run.input, {});
  });
});

describe("errors are the service's, as HTTP statuses with Connect's error JSON", () => {
  test("unknown workflow: 404 not_found listing the known names", async () => {
    await expectError(
      await postRun(`{"workflow_name":"nightly_reprot","input":{}}`),
      404,
      "not_found",
      /unknown workflow "nightly_reprot"; known workflows: .*order_fulfillment .*WORKFLOW_DIRS=/,
    );
  });

  test("the message is exactly the one a Connect client gets", async () => {
    const bad = { orderId: "", items: [{ sku: "x", quantity: -1 }] };
    const restMessage = await expectError(
      await postRun(JSON.stringify({ workflow_name: "order_fulfillment", input: bad })),
      400,
      "invalid_argument",
      /input\.orderId: .*; input\.items\[0\]\.quantity: .*; input\.amountCents: /,
    );
    await assert.rejects(client.createRun({ workflowName: "order_fulfillment", input: valueFromJson(bad) }), (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.InvalidArgument);
      assert.equal(error.rawMessage, restMessage);
      return true;
    });
  });

  test("missing workflow_name, non-object input, oversized input: 400 invalid_argument", async () => {
    await expectError(await postRun(`{"input":{}}`), 400, "invalid_argument", /workflow_name: value is required \[required\]/);
    await expectError(await postRun(`{"workflow_name":"echo","input":[1,2]}`), 400, "invalid_argument", /input must be a JSON object, got an array/);
    await expectError(
      await postRun(JSON.stringify({ workflow_name: "echo", input: { value: "x".repeat(5000) } })),
      400,
      "invalid_argument",
      /over the limit of 2048 bytes \(CAIRN_MAX_INPUT_BYTES\)/,
    );
  });

  test("an idempotency key reused for another input: 409 already_exists", async () => {
    await postRun(JSON.stringify({ workflow_name: "echo", input: { value: 1 }, idempotency_key: "rest-conflict" }));
    await expectError(
      await postRun(JSON.stringify({ workflow_name: "echo", input: { value: 2 }, idempotency_key: "rest-conflict" })),
      409,
      "already_exists",
      /rest-conflict.*already used by run/,
    );
  });

  test("malformed JSON: 400 with a clear message, and the server keeps serving", async () => {
    await expectError(await postRun(`{"workflow_name": "echo", "input": {`), 400, "invalid_argument", /request body is not valid JSON/);
    await expectError(await postRun(`[1, 2]`), 400, "invalid_argument", /request body must be a JSON object/);
    await expectError(await postRun(``), 400, "invalid_argument", /request body is empty/);
    await expectError(await postRun(`{"workflow_name":"echo","eager_start":"yes"}`), 400, "invalid_argument", /invalid request body: cannot decode field cairn\.v1\.CreateRunRequest\.eager_start from JSON: expected boolean/);
    await expectError(await postRun(`{"workflow":"echo"}`), 400, "invalid_argument", /invalid request body: .*"workflow" is unknown/);
    await expectError(
      await postRun(`{"workflow_name":"echo"}`, { "content-type": "text/plain" }),
      415,
      "invalid_argument",
      /content-type "text\/plain" is not supported/,
    );
    // Bytes without a content type (what a cross-site page can send without a preflight) are not read as JSON.
    const untyped = await fetch(`${server.url}/workflows/runs`, { method: "POST", headers: { "X-Api-Key": apiKey }, body: new TextEncoder().encode(`{"workflow_name":"echo"}`) });
    await expectError(untyped, 415, "invalid_argument", /a request body needs content-type: application\/json/);
    const response = await postRun(`{"workflow_name":"echo"}`);
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });

  test("a body over the Connect handler's readMaxBytes: 413 resource_exhausted naming the limit", async () => {
    // The cap covers the largest payload limit: here CAIRN_MAX_AGENT_RESULT_BYTES (1 MiB), not the 2 KiB input limit.
    const limit = 2 * 1024 * 1024 + 64 * 1024;
    await expectError(
      await postRun(JSON.stringify({ workflow_name: "echo", input: { value: "x".repeat(limit) } })),
      413,
      "resource_exhausted",
      new RegExp(`larger than the limit of ${limit} bytes \\(CAIRN_MAX_REQUEST_BYTES\\)`),
    );
  });

  test("unknown run id: 404; malformed run id: 400", async () => {
    await expectError(await getRun("00000000-0000-4000-8000-000000000000"), 404, "not_found", /run "00000000-0000-4000-8000-000000000000" not found/);
    await expectError(await getRun("not-a-uuid"), 400, "invalid_argument", /run_id: must be a valid UUID, got "not-a-uuid"/);
  });

  test("other methods and paths under /workflows/runs", async () => {
    const list = await fetch(`${server.url}/workflows/runs`);
    assert.equal(list.headers.get("allow"), "POST");
    await expectError(list, 405, "unimplemented", /GET \/workflows\/runs is not supported; use POST/);
    const del = await fetch(`${server.url}/workflows/runs/00000000-0000-4000-8000-000000000000`, { method: "DELETE" });
    assert.equal(del.headers.get("allow"), "GET, HEAD");
    await expectError(del, 405, "unimplemented", /use GET/);
    await expectError(await fetch(`${server.url}/workflows/runs/a/b`), 404, "not_found", /no route for GET \/workflows\/runs\/a\/b/);
  });

  test("everything else still reaches the Connect handler", async () => {
    const { workflows } = await client.listWorkflows({});
    assert.ok(workflows.some((w) => w.name === "order_fulfillment"));
    const response = await fetch(`${server.url}/workflows`, { method: "POST" });
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });
});

describe("CORS", () => {
  const preflight = (base: string, path: string, origin: string, method = "POST") =>
    fetch(`${base}${path}`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": method, "access-control-request-headers": "content-type,x-api-key,connect-protocol-version" },
    });

  test("CAIRN_CORS_ORIGINS set: preflights for Connect and REST routes are answered with 204", async () => {
    for (const path of ["/cairn.v1.WorkflowService/CreateRun", "/workflows/runs", "/workflows/runs/00000000-0000-4000-8000-000000000000"]) {
      const response = await preflight(corsServer.url, path, appOrigin);
      assert.equal(response.status, 204, path);
      assert.equal(response.headers.get("access-control-allow-origin"), appOrigin);
      const methods = (response.headers.get("access-control-allow-methods") ?? "").split(/,\s*/);
      assert.ok(methods.includes("POST") && methods.includes("GET"), methods.join());
      const allowed = (response.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/,\s*/);
      for (const header of ["content-type", "connect-protocol-version", "connect-timeout-ms", "x-grpc-web", "x-user-agent", "x-api-key", "authorization"]) {
        assert.ok(allowed.includes(header), `${header} in ${allowed.join()}`);
      }
      assert.ok(Number(response.headers.get("access-control-max-age")) > 0);
      assert.match(response.headers.get("vary") ?? "", /\bOrigin\b/);
    }
  });

  test("CAIRN_CORS_ORIGINS set: responses to an allowed origin carry the CORS headers, Connect and REST alike", async () => {
    const rest = await postRun(`{"workflow_name":"echo","input":{}}`, { origin: "http://localhost:5173" }, corsServer.url);
    assert.equal(rest.status, 200);
    assert.equal(rest.headers.get("access-control-allow-origin"), "http://localhost:5173");
    assert.match(rest.headers.get("access-control-expose-headers") ?? "", /Grpc-Status/i);
    assert.match(rest.headers.get("vary") ?? "", /\bOrigin\b/);
    const { run } = await json<{ run: RestRun }>(rest);

    const connect = await fetch(`${corsServer.url}/cairn.v1.WorkflowService/GetRun`, {
      method: "POST",
      headers: { origin: appOrigin, "content-type": "application/json", "x-api-key": apiKey },
      body: JSON.stringify({ run_id: run.run_id }),
    });
    assert.equal(connect.status, 200);
    assert.equal(connect.headers.get("access-control-allow-origin"), appOrigin);
    assert.equal(((await connect.json()) as { run: { runId: string } }).run.runId, run.run_id);

    // Errors too, or a browser could not read them.
    const missing = await fetch(`${corsServer.url}/workflows/runs/00000000-0000-4000-8000-000000000000`, { headers: { origin: appOrigin } });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("access-control-allow-origin"), appOrigin);
    await missing.body?.cancel();
  });

  test("an origin that is not listed gets no CORS headers (its preflight is refused)", async () => {
    const response = await preflight(corsServer.url, "/workflows/runs", "https://evil.example");
    assert.equal(response.status, 403);
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    await response.body?.cancel();
    // In open mode (these servers) the call itself is refused too: a page must not act as admin through
    // a "simple" cross-site request that needs no preflight. Nothing is started.
    const before = await client.listRuns({ pageSize: 1000 });
    const actual = await postRun(`{"workflow_name":"echo"}`, { origin: "https://evil.example" }, corsServer.url);
    assert.equal(actual.status, 403);
    assert.equal(actual.headers.get("access-control-allow-origin"), null);
    assert.match(((await actual.json()) as { message: string }).message, /Origin "https:\/\/evil\.example" may not call this server/);
    assert.equal((await client.listRuns({ pageSize: 1000 })).runs.length, before.runs.length);
  });

  test("CAIRN_CORS_ORIGINS unset: no CORS headers at all, and OPTIONS is not answered as a preflight", async () => {
    const response = await preflight(server.url, "/cairn.v1.WorkflowService/CreateRun", appOrigin);
    assert.notEqual(response.status, 204);
    await response.body?.cancel();
    // A loopback origin (the console, a dev server) may call an open-mode server; see open-mode-guard.ts.
    const rest = await postRun(`{"workflow_name":"echo"}`, { origin: "http://localhost:5173" });
    assert.equal(rest.status, 200);
    await rest.body?.cancel();
    for (const r of [response, rest]) {
      const cors = [...r.headers.keys()].filter((name) => name.startsWith("access-control-"));
      assert.deepEqual(cors, []);
    }
  });

  test("* allows any origin", async () => {
    const inner = http.createServer(withCors((_req, res) => res.end("ok"), { origins: ["*"] }));
    await new Promise<void>((resolve) => inner.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${(inner.address() as AddressInfo).port}`;
      const pre = await preflight(base, "/anything", "https://whoever.example", "GET");
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get("access-control-allow-origin"), "*");
      const get = await fetch(base, { headers: { origin: "https://whoever.example" } });
      assert.equal(get.headers.get("access-control-allow-origin"), "*");
      assert.equal(await get.text(), "ok");
    } finally {
      await new Promise((resolve) => inner.close(resolve));
    }
  });

  test("CAIRN_CORS_ORIGINS is parsed and checked at start-up", () => {
    assert.deepEqual(loadConfig({}).corsOrigins, []);
    assert.deepEqual(loadConfig({ CAIRN_CORS_ORIGINS: " https://App.Example.com/ ,http://localhost:5173,*" }).corsOrigins, [
      "https://app.example.com",
      "http://localhost:5173",
      "*",
    ]);
    assert.throws(() => loadConfig({ CAIRN_CORS_ORIGINS: "https://app.example.com/path" }), ConfigError);
    assert.throws(() => loadConfig({ CAIRN_CORS_ORIGINS: "localhost:5173" }), /CAIRN_CORS_ORIGINS: "localhost:5173" is not an origin/);
  });
});
