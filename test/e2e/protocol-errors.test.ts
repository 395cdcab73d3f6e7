// Client mistakes only raw HTTP can make (malformed and compressed bodies, JSON that protobuf cannot carry,
// deadlines in headers), against a server in this process on PostgreSQL, on every protocol. What the services
// validate is in test/rpc/validation.test.ts.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, test } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { CreateRunRequestSchema, GetRunRequestSchema } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import { NonJsonValueError } from "../../server/core/errors.js";
import { storedJson, toFailureInfo } from "../../server/core/json.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { testLimits } from "../support/limits.js";
import { envelope } from "../support/raw-http.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { startTestServer, type WorkflowClient } from "../support/in-process-server.js";

let server: CairnServer;
let client: WorkflowClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

const limits = testLimits;

beforeAll(async () => {
  const database = await createTestDatabase("validation");
  databaseUrl = database.url;
  dropDatabase = database.drop;
  ({ server, client } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: ["test/fixtures/service-workflows", "test/fixtures/limit-workflows"].join(":"),
    ...limits,
  }));
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const uuid = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

/** One gRPC call over h2c, returning the status and message from the trailers (or trailers-only headers). */
function grpcCall(path: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(server.url);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    let result: { status: number; message: string } | undefined;
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) result = { status: Number(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", () => undefined);
    stream.on("error", reject);
    stream.on("end", () => {
      session.close();
      if (result) resolve(result);
      else reject(new Error("no grpc-status"));
    });
    stream.end(Buffer.from(body));
  });
}

describe("JSON that only a raw request can carry", () => {
  test("JSON values with an unpaired UTF-16 surrogate are INVALID_ARGUMENT (fuzz finding: they reached PostgreSQL as INTERNAL)", async () => {
    // Only JSON can carry them (protobuf binary strings are UTF-8): Connect JSON, as a fuzzer sent it.
    const post = async (method: string, body: string) => {
      const response = await fetch(`${server.url}/cairn.v1.${method}`, { method: "POST", headers: { "content-type": "application/json" }, body });
      return (await response.json()) as { code: string; message: string };
    };
    assert.deepEqual(await post("WorkflowService/CreateRun", '{"workflow_name":"echo","input":{"value":"\\ud800"}}'), {
      code: "invalid_argument",
      message: "input.value contains an unpaired UTF-16 surrogate, which is not Unicode",
    });
    assert.match((await post("WorkflowService/SendEvent", '{"event_type":"e","payload":{"\\udc00":1}}')).message, /^payload has a key with an unpaired UTF-16 surrogate/);
    const result = await post("AgentService/CompleteTurn", `{"turn_id":"${uuid}","lease_token":"${uuid}","result":["ok","x\\ud83d"]}`);
    assert.match(result.message, /^result\[1\] contains an unpaired/);
    // Paired surrogates are ordinary characters.
    assert.ok((await client.sendEvent({ eventType: "e", payload: valueFromJson({ emoji: "😀" }) })).eventId);
    // Workflow code gets the same rule: such a step result fails the step (NonJsonValueError, not retried).
    assert.throws(() => storedJson({ text: "\udfff" }, 'step "s" result'), (error: unknown) => error instanceof NonJsonValueError && /\$\.text contains an unpaired/.test(error.message));
    // And an error message with one is recorded with U+FFFD, so its journal write cannot fail on every replay.
    assert.equal(toFailureInfo(new Error("bad \ud800 byte")).message, "bad \ufffd byte");
  });

  test("JSON nested deeper than 48 levels is refused: protobuf decoders could not read it back", async () => {
    const nested = (levels: number): unknown => (levels === 0 ? 1 : [nested(levels - 1)]);
    // The input object is the first level.
    const at = (levels: number) =>
      fetch(`${server.url}/cairn.v1.WorkflowService/CreateRun`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ workflow_name: "echo", input: { value: nested(levels - 1) } }),
      }).then(async (response) => ({ status: response.status, body: (await response.json()) as { code?: string; message?: string } }));
    assert.equal((await at(48)).status, 200);
    const refused = await at(49);
    assert.equal(refused.body.code, "invalid_argument");
    assert.match(refused.body.message ?? "", /^input\.value(\[0\])+ nests arrays and objects deeper than 48 levels$/);
    // The REST route too (fuzz finding: its in-memory call re-encoded the request as protobuf binary, whose decoder
    // stops at 100 messages where JSON's does not, and answered INTERNAL).
    const rest = await fetch(`${server.url}/workflows/runs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ workflow_name: "echo", input: { value: nested(59) } }),
    });
    assert.equal(rest.status, 400);
    assert.match(((await rest.json()) as { message: string }).message, /nests arrays and objects deeper than 48 levels$/);
    // The same rule for values a workflow journals.
    assert.throws(() => storedJson(nested(49), "the workflow's return value"), /nests arrays and objects deeper than 48 levels/);
    assert.doesNotThrow(() => storedJson(nested(47), "the workflow's return value"));
  });

  test("malformed JSON over plain HTTP gets invalid_argument, and the server keeps serving", async () => {
    const response = await fetch(`${server.url}/cairn.v1.WorkflowService/CreateRun`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"workflow_name": "echo", "input": {',
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.match(body.message, /cannot decode message cairn\.v1\.CreateRunRequest from JSON/);
    const listed = await client.listWorkflows({});
    assert.ok(listed.workflows.length > 0);
  });
});

describe("client mistakes in the protocol are INVALID_ARGUMENT, never INTERNAL", () => {
  const truncated = new Uint8Array([0x0a, 0x05, 0x61]); // field 1, length 5, one byte of it

  test("a malformed protobuf body: Connect unary, Connect stream, gRPC-Web, gRPC", async () => {
    const unary = await fetch(`${server.url}/cairn.v1.WorkflowService/CreateRun`, { method: "POST", headers: { "content-type": "application/proto" }, body: truncated });
    assert.equal(unary.status, 400);
    const body = (await unary.json()) as { code: string; message: string };
    assert.equal(body.code, "invalid_argument");
    assert.match(body.message, /^cannot decode message cairn\.v1\.CreateRunRequest from protobuf binary: premature EOF/);

    const stream = await fetch(`${server.url}/cairn.v1.WorkflowService/WatchRun`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body: envelope(truncated),
    });
    const bytes = new Uint8Array(await stream.arrayBuffer());
    assert.equal(bytes[0], 0b10);
    assert.match(new TextDecoder().decode(bytes.subarray(5)), /"code":"invalid_argument".*cairn\.v1\.WatchRunRequest from protobuf binary/);

    const web = await fetch(`${server.url}/cairn.v1.WorkflowService/GetRun`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: envelope(truncated),
    });
    const trailer = new TextDecoder().decode(new Uint8Array(await web.arrayBuffer()).subarray(5));
    assert.match(trailer, /grpc-status: 3\r\n/);
    assert.match(decodeURIComponent(trailer), /cairn\.v1\.GetRunRequest from protobuf binary/);

    const grpc = await grpcCall("/cairn.v1.AgentService/CompleteTurn", envelope(truncated));
    assert.equal(grpc.status, Code.InvalidArgument);
    assert.match(grpc.message, /cannot decode message cairn\.v1\.CompleteTurnRequest from protobuf binary/);
  });

  test("an envelope flagged as compressed without a declared encoding", async () => {
    const message = toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: uuid }));
    const grpc = await grpcCall("/cairn.v1.WorkflowService/GetRun", envelope(message, 1));
    assert.equal(grpc.status, Code.InvalidArgument);
    assert.match(grpc.message, /compressed/);
  });

  test("a compressed body that does not decompress (fuzz finding: brotli and truncated gzip were INTERNAL)", async () => {
    const body = new TextEncoder().encode(JSON.stringify({ run_id: uuid }));
    for (const [encoding, bytes] of [
      ["br", new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])],
      ["gzip", gzipSync(body).subarray(0, 12)],
    ] as const) {
      const response = await fetch(`${server.url}/cairn.v1.WorkflowService/GetRun`, {
        method: "POST",
        headers: { "content-type": "application/json", "content-encoding": encoding },
        body: bytes,
      });
      assert.equal(response.status, 400, encoding);
      assert.equal(((await response.json()) as { code: string }).code, "invalid_argument");
    }
    const grpc = await grpcCall("/cairn.v1.WorkflowService/GetRun", envelope(new Uint8Array([9, 9, 9]), 1), { "grpc-encoding": "br" });
    assert.equal(grpc.status, Code.InvalidArgument);
  });

  test("a body over CAIRN_MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED and names the setting", async () => {
    const cap = loadConfig(limits).maxRequestBytes;
    assert.equal(cap, 2 * 300_000 + 64 * 1024);
    const big = toBinary(CreateRunRequestSchema, create(CreateRunRequestSchema, { workflowName: "echo", idempotencyKey: "x".repeat(cap) }));
    const response = await fetch(`${server.url}/cairn.v1.WorkflowService/CreateRun`, { method: "POST", headers: { "content-type": "application/proto" }, body: big });
    const body = (await response.json()) as { code: string; message: string };
    assert.equal(body.code, "resource_exhausted");
    assert.match(body.message, /larger than configured readMaxBytes \d+ \(CAIRN_MAX_REQUEST_BYTES\)/);
    assert.equal((await client.listWorkflows({})).workflows.length > 0, true);
  });
});

describe("deadlines end the call with DEADLINE_EXCEEDED and write nothing after them", () => {
  test("a PollTurns long poll with a shorter deadline: Connect and gRPC", async () => {
    const started = Date.now();
    const response = await fetch(`${server.url}/cairn.v1.AgentService/PollTurns`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "300" },
      body: JSON.stringify({ agents: ["nobody"], wait_seconds: 10 }),
    });
    const body = (await response.json()) as { code: string };
    assert.equal(body.code, "deadline_exceeded");
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 280 && elapsed < 3000, `answered after ${elapsed} ms`);

    const grpc = await grpcCall(
      "/cairn.v1.AgentService/PollTurns",
      envelope(new Uint8Array([0x0a, 0x06, ...new TextEncoder().encode("nobody"), 0x20, 0x0a])),
      { "grpc-timeout": "300m" },
    );
    assert.equal(grpc.status, Code.DeadlineExceeded);
  });

  test("WatchRun of a run that does not end in time", async () => {
    const { run } = await client.createRun({ workflowName: "sized_agent", input: valueFromJson({ size: 0 }), eagerStart: true });
    const response = await fetch(`${server.url}/cairn.v1.WorkflowService/WatchRun`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", "connect-timeout-ms": "400" },
      body: envelope(new TextEncoder().encode(JSON.stringify({ run_id: run?.runId }))),
    });
    const text = new TextDecoder().decode(new Uint8Array(await response.arrayBuffer()));
    assert.match(text, /"runId"/);
    assert.match(text, /"code":"deadline_exceeded"/);
    await client.cancelRun({ runId: run?.runId ?? "" });
  });

  test("a call that arrives with its deadline already passed does nothing", async () => {
    const response = await fetch(`${server.url}/cairn.v1.WorkflowService/CreateRun`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "0" },
      body: JSON.stringify({ workflow_name: "echo", input: { value: "late" } }),
    });
    assert.equal(response.status, 504);
    assert.equal(((await response.json()) as { code: string }).code, "deadline_exceeded");
    const rows = await withClient(databaseUrl, (pg) => pg.query(`select count(*)::int as n from runs where input->>'value' = 'late'`));
    assert.equal(rows.rows[0].n, 0);
  });

  test("a CreateRun whose deadline passes before the write stores no run", async () => {
    const response = await fetch(`${server.url}/cairn.v1.WorkflowService/CreateRun`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "100" },
      body: JSON.stringify({ workflow_name: "slow_schema", input: { delayMs: 400 } }),
    });
    assert.equal(((await response.json()) as { code: string }).code, "deadline_exceeded");
    const rows = await withClient(databaseUrl, (pg) => pg.query("select count(*)::int as n from runs where workflow_name = 'slow_schema'"));
    assert.equal(rows.rows[0].n, 0);
    // Without a deadline the same request stores its run.
    const created = await client.createRun({ workflowName: "slow_schema", input: valueFromJson({ delayMs: 10 }) });
    assert.ok(created.run?.runId);
  });
});
