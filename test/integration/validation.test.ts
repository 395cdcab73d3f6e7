// Request validation (buf.validate rules checked by protovalidate), protocol-level client errors, size limits,
// page-size caps and call deadlines, end to end on PostgreSQL with a server in this process.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, test } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate as packageValidateFile } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { file_buf_validate_validate as vendoredValidateFile, ViolationsSchema } from "../../sdk/gen/buf/validate/validate_pb.js";
import { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { RunStatus, type WaitKind } from "../../sdk/gen/cairn/v1/types_pb.js";
import { CreateRunRequestSchema, GetRunRequestSchema } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { ConfigError, loadConfig } from "../../server/config.js";
import { NonJsonValueError } from "../../server/core/errors.js";
import { storedJson, toFailureInfo } from "../../server/core/json.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";

let server: CairnServer;
let client: WorkflowClient;
let agents: Client<typeof AgentService>;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

const limits = {
  CAIRN_MAX_INPUT_BYTES: "4096",
  CAIRN_MAX_STEP_RESULT_BYTES: "2048",
  CAIRN_MAX_AGENT_RESULT_BYTES: "8192",
  // Far above the request cap the input limit alone used to imply (2 × 4096 + 64 KiB).
  CAIRN_MAX_EVENT_BYTES: "300000",
  CAIRN_MAX_LIST_RUNS_PAGE_SIZE: "3",
  CAIRN_MAX_HISTORY_PAGE_SIZE: "2",
};

beforeAll(async () => {
  const database = await createTestDatabase("validation");
  databaseUrl = database.url;
  dropDatabase = database.drop;
  ({ server, client } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: ["test/fixtures/service-workflows", "test/fixtures/limit-workflows"].join(":"),
    ...limits,
  }));
  agents = createClient(AgentService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

async function rejects(call: Promise<unknown>, code: Code, message: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code], error.message);
    assert.match(error.rawMessage, message);
    caught = error;
    return true;
  });
  return caught as ConnectError;
}

const uuid = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

function envelope(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

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

describe("proto rules (protovalidate)", () => {
  test("the vendored validate.proto is the version @bufbuild/protovalidate embeds", () => {
    assert.deepEqual(vendoredValidateFile.proto, packageValidateFile.proto);
    assert.match(readFileSync("proto/buf/validate/validate.proto", "utf8"), /^\/\/ Copyright \d{4}-\d{4} Buf Technologies, Inc\.\n\/\/\n\/\/ Licensed under the Apache License/);
  });

  test("every violation is listed with its field path and rule, and attached as buf.validate.Violations", async () => {
    const error = await rejects(
      client.createRun({ workflowName: "", idempotencyKey: "k".repeat(300), metadata: { "": "v" } }),
      Code.InvalidArgument,
      /^invalid cairn\.v1\.CreateRunRequest: workflow_name: value is required \[required\]; idempotency_key: must be at most 256 characters \[string\.max_len\]; metadata\[""\]: must be at least 1 characters \[string\.min_len\]$/,
    );
    const [violations] = error.findDetails(ViolationsSchema);
    assert.deepEqual(
      violations?.violations.map((v) => v.ruleId),
      ["required", "string.max_len", "string.min_len"],
    );
    assert.deepEqual(
      violations?.violations.map((v) => v.field?.elements.map((e) => e.fieldName).join(".")),
      ["workflow_name", "idempotency_key", "metadata"],
    );
  });

  test("ids, event keys, enums, ranges and timestamps", async () => {
    await rejects(client.getRun({ runId: "42" }), Code.InvalidArgument, /run_id: must be a valid UUID, got "42" \[string\.uuid\]/);
    await rejects(client.sendEvent({ eventType: "  " }), Code.InvalidArgument, /event_type: must contain a non-whitespace character .*\[event_type\.not_blank\]/);
    await rejects(client.sendEvent({ eventType: "e", correlationId: "c".repeat(513) }), Code.InvalidArgument, /correlation_id: must be at most 512 characters/);
    await rejects(client.sendEvent({ eventType: "e", runId: "nope" }), Code.InvalidArgument, /run_id: must be a valid UUID, got "nope"/);
    await rejects(
      client.listRuns({ statuses: [RunStatus.UNSPECIFIED, 42 as RunStatus], pageSize: -1, waitingFor: 9 as WaitKind }),
      Code.InvalidArgument,
      /statuses\[0\]: must be a run status such as RUN_STATUS_WAITING, not RUN_STATUS_UNSPECIFIED \[statuses\.specified\]; statuses\[1\]: value must be one of the defined enum values \[enum\.defined_only\]; page_size: must be greater than or equal to 0, got -1 \[int32\.gte\]; waiting_for: .*got 9 \[enum\.defined_only\]/,
    );
    await rejects(
      client.listRuns({ createdAfter: { seconds: 999_999_999_999n, nanos: 0 } }),
      Code.InvalidArgument,
      /created_after: must be greater than or equal to 0001-01-01T00:00:00Z and less than or equal to 9999-12-31T23:59:59Z/,
    );
    await rejects(client.getRunHistory({ runId: uuid, afterSequence: -1n }), Code.InvalidArgument, /after_sequence: must be greater than or equal to 0, got -1/);
    await rejects(agents.pollTurns({ agents: [] }), Code.InvalidArgument, /agents: must contain at least 1 item\(s\) \[repeated\.min_items\]/);
    await rejects(agents.pollTurns({ agents: [""] }), Code.InvalidArgument, /agents\[0\]: must be at least 1 characters/);
  });

  test("a lease token that is not a UUID is INVALID_ARGUMENT (it used to reach PostgreSQL and be INTERNAL)", async () => {
    await rejects(agents.heartbeatTurn({ turnId: uuid, leaseToken: "stale" }), Code.InvalidArgument, /lease_token: must be a valid UUID, got "stale"/);
    await rejects(agents.completeTurn({ turnId: uuid, leaseToken: "" }), Code.InvalidArgument, /lease_token: value is empty/);
    await rejects(agents.failTurn({ turnId: uuid, leaseToken: "x" }), Code.InvalidArgument, /lease_token/);
  });

  test("a CompleteTurn result that carries no JSON is INVALID_ARGUMENT (it used to be INTERNAL)", async () => {
    await rejects(agents.completeTurn({ turnId: uuid, leaseToken: uuid, result: create(ValueSchema, {}) }), Code.InvalidArgument, /result is not a JSON value/);
  });

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

  test("an after_sequence beyond any sequence is an empty page, not a database error (fuzz finding: INTERNAL)", async () => {
    const { run } = await client.createRun({ workflowName: "echo", input: valueFromJson({ value: 1 }), eagerStart: true });
    await waitForEnd(client, run?.runId ?? "");
    const history = await client.getRunHistory({ runId: run?.runId ?? "", afterSequence: 2n ** 53n });
    assert.deepEqual(history.entries, []);
    assert.equal(history.hasMore, false);
    const updates = [];
    for await (const update of client.watchRun({ runId: run?.runId ?? "", afterSequence: 2n ** 62n })) updates.push(update.update.case);
    assert.deepEqual(updates, ["run"]);
  });

  test("a forged page token with a date out of range is INVALID_ARGUMENT (fuzz finding: INTERNAL)", async () => {
    for (const c of ["0000-01-01T00:00:00Z", "-271821-04-20T00:00:00.000Z", "+275760-09-13T00:00:00.000Z"]) {
      const pageToken = Buffer.from(JSON.stringify({ c, i: uuid })).toString("base64url");
      await rejects(client.listRuns({ pageToken }), Code.InvalidArgument, /page_token is not one this server issued/);
    }
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

  test("streams are validated too", async () => {
    const watch = client.watchRun({ runId: "x" });
    await rejects((async () => { for await (const _ of watch) break; })(), Code.InvalidArgument, /run_id: must be a valid UUID/);
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

describe("size limits", () => {
  test("a step result over CAIRN_MAX_STEP_RESULT_BYTES fails the step at once, and the handler can catch it", async () => {
    const { run } = await client.createRun({ workflowName: "big_step", input: valueFromJson({ size: 3000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.equal(done.status, RunStatus.COMPLETED);
    assert.deepEqual(valueToJson(done.output ?? create(ValueSchema)), {
      caught: "PayloadTooLargeError",
      message: 'step "produce" result is 3023 bytes, over the limit of 2048 bytes (CAIRN_MAX_STEP_RESULT_BYTES)',
      attempts: 1,
    });
    const small = await client.createRun({ workflowName: "big_step", input: valueFromJson({ size: 100 }), eagerStart: true });
    assert.deepEqual(valueToJson((await waitForEnd(client, small.run?.runId ?? "")).output ?? create(ValueSchema)), { ok: true });
  });

  test("a run output over CAIRN_MAX_STEP_RESULT_BYTES fails the run, naming the limit", async () => {
    const { run } = await client.createRun({ workflowName: "big_output", input: valueFromJson({ size: 3000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.equal(done.status, RunStatus.FAILED);
    assert.equal(done.error?.name, "PayloadTooLargeError");
    assert.match(done.error?.message ?? "", /^the workflow's return value is \d+ bytes, over the limit of 2048 bytes \(CAIRN_MAX_STEP_RESULT_BYTES\)$/);
  });

  test("a child input over CAIRN_MAX_INPUT_BYTES makes startWorkflow reject like CreateRun would", async () => {
    const { run } = await client.createRun({ workflowName: "big_child", input: valueFromJson({ size: 5000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.deepEqual(valueToJson(done.output ?? create(ValueSchema)), {
      caught: "PayloadTooLargeError",
      message: "the child's input is 5011 bytes, over the limit of 4096 bytes (CAIRN_MAX_INPUT_BYTES)",
    });
    const fits = await client.createRun({ workflowName: "big_child", input: valueFromJson({ size: 100 }), eagerStart: true });
    assert.deepEqual(valueToJson((await waitForEnd(client, fits.run?.runId ?? "")).output ?? create(ValueSchema)), { length: 100 });
  });

  test("an agent request over CAIRN_MAX_INPUT_BYTES fails the run, naming the limit", async () => {
    const { run } = await client.createRun({ workflowName: "sized_agent", input: valueFromJson({ size: 5000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.equal(done.status, RunStatus.FAILED);
    assert.match(done.error?.message ?? "", /the agent request is \d+ bytes, over the limit of 4096 bytes \(CAIRN_MAX_INPUT_BYTES\)/);
  });

  test("agent results have their own limit, CAIRN_MAX_AGENT_RESULT_BYTES", async () => {
    const { run } = await client.createRun({ workflowName: "sized_agent", input: valueFromJson({ size: 0 }), eagerStart: true });
    const { turns } = await agents.pollTurns({ agents: ["limits"], waitSeconds: 10 });
    const turn = turns[0];
    assert.ok(turn);
    await rejects(
      agents.completeTurn({ turnId: turn.turnId, leaseToken: turn.leaseToken, result: valueFromJson({ text: "y".repeat(9000) }) }),
      Code.InvalidArgument,
      /^result is 9011 bytes, over the limit of 8192 bytes \(CAIRN_MAX_AGENT_RESULT_BYTES\)$/,
    );
    // Larger than the input limit (4096) but within its own: accepted.
    await agents.completeTurn({ turnId: turn.turnId, leaseToken: turn.leaseToken, result: valueFromJson({ text: "y".repeat(6000) }) });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.deepEqual(valueToJson(done.output ?? create(ValueSchema)), { answerLength: 6011 });
  });

  test("CAIRN_MAX_EVENT_BYTES above the input limit takes effect: the request cap follows the largest limit", async () => {
    const sent = await client.sendEvent({ eventType: "big", correlationId: "k", payload: valueFromJson({ data: "z".repeat(250_000) }) });
    assert.ok(sent.eventId);
    await rejects(
      client.sendEvent({ eventType: "big", payload: valueFromJson({ data: "z".repeat(300_000) }) }),
      Code.InvalidArgument,
      /payload is \d+ bytes, over the limit of 300000 bytes \(CAIRN_MAX_EVENT_BYTES\)/,
    );
  });

  test("CAIRN_MAX_REQUEST_BYTES: derived from the largest payload limit; an explicit value must leave room for it", () => {
    assert.equal(loadConfig({}).maxRequestBytes, 2 * 1024 * 1024 + 64 * 1024);
    assert.equal(loadConfig({ CAIRN_MAX_EVENT_BYTES: String(4 * 1024 * 1024) }).maxRequestBytes, 8 * 1024 * 1024 + 64 * 1024);
    assert.equal(loadConfig({ CAIRN_MAX_REQUEST_BYTES: "5000000" }).maxRequestBytes, 5_000_000);
    assert.throws(
      () => loadConfig({ CAIRN_MAX_EVENT_BYTES: "2000000", CAIRN_MAX_REQUEST_BYTES: "1000000" }),
      (error: unknown) => error instanceof ConfigError && /CAIRN_MAX_REQUEST_BYTES=1000000 is below CAIRN_MAX_EVENT_BYTES=2000000/.test(error.message),
    );
  });
});

describe("page-size caps", () => {
  test("ListRuns and GetRunHistory cap page_size at their settings and page on", async () => {
    for (let i = 0; i < 4; i++) await client.createRun({ workflowName: "echo", input: valueFromJson({ value: i }) });
    const first = await client.listRuns({ workflowName: "echo", pageSize: 100 });
    assert.equal(first.runs.length, 3);
    assert.ok(first.nextPageToken);
    // child_started, child_completed, run_completed: three entries.
    const { run } = await client.createRun({ workflowName: "big_child", input: valueFromJson({ size: 10 }), eagerStart: true });
    await waitForEnd(client, run?.runId ?? "");
    const history = await client.getRunHistory({ runId: run?.runId ?? "", pageSize: 100 });
    assert.equal(history.entries.length, 2);
    assert.equal(history.hasMore, true);
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
