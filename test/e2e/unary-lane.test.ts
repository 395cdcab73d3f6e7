// The unary fast lane (server/http/unary-lane.ts) against the Connect adapter it stands in front of.
// Each test sends the same bytes to a server with the lane on and to one with it off
// (CAIRN_UNARY_LANE=off), over raw HTTP/1.1 and HTTP/2, and compares what comes back: status,
// headers (all but Date) and body, byte for byte where the answer does not depend on the server
// (errors, ListWorkflows), after replacing run ids and times where it does. Every comparison also
// checks who answered: the lane server's counter must move for requests the lane takes and stay
// put for those it leaves to the adapter, so a lane that silently fell back would fail here.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import net from "node:net";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, test } from "vitest";
import { create, type DescMessage, fromBinary, fromJson, type JsonValue, toBinary, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, createContextKey, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  AwaitRunRequestSchema,
  AwaitRunResponseSchema,
  CancelRunRequestSchema,
  CancelRunResponseSchema,
  CreateRunRequestSchema,
  CreateRunResponseSchema,
  GetRunRequestSchema,
  GetRunResponseSchema,
  ListWorkflowsRequestSchema,
  ListWorkflowsResponseSchema,
  SendEventRequestSchema,
  SendEventResponseSchema,
  WorkflowSchema,
  WorkflowService,
} from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { listen, type Listening } from "../../server/http/listen.js";
import { withUnaryLane } from "../../server/http/unary-lane.js";
import { deadlinePassed } from "../../server/rpc/deadline.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import type { ApiKeyRole } from "../../server/store/schema.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { envelope, type HttpVersion, rawExchange, type RawOutcome, type RawRequest, type RawResponse } from "../support/raw-http.js";

const origin = "https://app.example.com";
// Small payload limits make the request cap (2 × 1024 + 64 KiB) cheap to exceed.
const limits = { CAIRN_MAX_INPUT_BYTES: "2048", CAIRN_MAX_EVENT_BYTES: "1024", CAIRN_MAX_AGENT_RESULT_BYTES: "1024" };
const readMaxBytes = 2 * 2048 + 64 * 1024;
const versions: HttpVersion[] = ["1.1", "2"];
const formats = ["proto", "json"] as const;
type Format = (typeof formats)[number];

let database: TestDatabase;
/** One server with the lane, one without, on the same database. */
interface Pair {
  lane: CairnServer;
  generic: CairnServer;
}
let open: Pair;
let keyed: Pair;
const servers: CairnServer[] = [];

async function startPair(env: Record<string, string>): Promise<Pair> {
  const base = { DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_CORS_ORIGINS: origin, ...limits, ...env };
  const lane = (await startTestServer({ ...base, CAIRN_UNARY_LANE: "on" })).server;
  const generic = (await startTestServer({ ...base, CAIRN_UNARY_LANE: "off" })).server;
  servers.push(lane, generic);
  return { lane, generic };
}

beforeAll(async () => {
  database = await createTestDatabase("unary_lane");
  open = await startPair({});
  // Rate limit: one call per key, then ~100 s to wait.
  keyed = await startPair({ CAIRN_AUTH: "keys", CAIRN_RATE_LIMIT_RPS: "0.01", CAIRN_RATE_LIMIT_BURST: "1" });
});

afterAll(async () => {
  for (const server of servers) await server.close();
  await database?.drop();
});

// ---------------------------------------------------------------------------------------------
// Sending and comparing

const schemas: Record<string, [DescMessage, DescMessage]> = {
  ListWorkflows: [ListWorkflowsRequestSchema, ListWorkflowsResponseSchema],
  CreateRun: [CreateRunRequestSchema, CreateRunResponseSchema],
  GetRun: [GetRunRequestSchema, GetRunResponseSchema],
  AwaitRun: [AwaitRunRequestSchema, AwaitRunResponseSchema],
  SendEvent: [SendEventRequestSchema, SendEventResponseSchema],
  CancelRun: [CancelRunRequestSchema, CancelRunResponseSchema],
};

function schemasOf(method: string): [DescMessage, DescMessage] {
  const found = schemas[method];
  assert.ok(found, `no schemas for ${method}`);
  return found;
}

/** A Connect unary request for `method` of WorkflowService, its message given as proto3 JSON. */
function rpc(method: string, message: JsonValue, format: Format, extra: Partial<RawRequest> = {}): RawRequest {
  const [input] = schemasOf(method);
  const body = format === "json" ? JSON.stringify(message) : toBinary(input, fromJson(input, message));
  return {
    path: `/cairn.v1.WorkflowService/${method}`,
    ...extra,
    headers: { "content-type": `application/${format}`, ...extra.headers },
    body: extra.body ?? body,
  };
}

function response(outcome: RawOutcome): RawResponse {
  assert.ok(!("broken" in outcome), `the exchange broke off: ${"broken" in outcome ? outcome.broken : ""}`);
  return outcome;
}

/** Sends `request(server)` to the lane server and to the generic one; the lane must have taken it, or not. */
async function exchangeBoth(pair: Pair, http: HttpVersion, request: (server: CairnServer) => RawRequest, taken = true): Promise<[RawOutcome, RawOutcome]> {
  const before = pair.lane.unaryLaneCalls();
  const viaLane = await rawExchange(pair.lane.url, http, request(pair.lane));
  assert.equal(pair.lane.unaryLaneCalls() - before, taken ? 1 : 0, taken ? "the lane should have answered" : "the lane should have left this to the adapter");
  const viaAdapter = await rawExchange(pair.generic.url, http, request(pair.generic));
  assert.equal(pair.generic.unaryLaneCalls(), 0, "the lane is off on the generic server");
  return [viaLane, viaAdapter];
}

function withoutDate(headers: Record<string, string>): Record<string, string> {
  const { date: _, ...rest } = headers;
  return rest;
}

/** Byte for byte: status, headers but Date, body. */
async function assertSame(pair: Pair, http: HttpVersion, request: (server: CairnServer) => RawRequest, taken = true): Promise<RawResponse> {
  const [viaLane, viaAdapter] = await exchangeBoth(pair, http, request, taken);
  if ("broken" in viaLane || "broken" in viaAdapter) {
    assert.deepEqual(viaLane, viaAdapter);
    return viaLane as RawResponse;
  }
  assert.equal(viaLane.status, viaAdapter.status, `status; lane body: ${viaLane.body.toString()}`);
  assert.deepEqual(withoutDate(viaLane.headers), withoutDate(viaAdapter.headers));
  assert.equal(viaLane.body.toString("latin1"), viaAdapter.body.toString("latin1"));
  return viaLane;
}

/** Run ids, times and the sleeper's wake-up instant differ between two servers: the rest must not. */
function normalized(value: unknown): unknown {
  if (typeof value === "string") {
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) return "<uuid>";
    if (/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(value)) return "<time>";
    return value;
  }
  if (Array.isArray(value)) return value.map(normalized);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, key === "wokeAt" ? "<ms>" : normalized(item)]));
  }
  return value;
}

function decoded(method: string, format: Format, result: RawResponse): unknown {
  const [, output] = schemasOf(method);
  const body = result.headers["content-encoding"] === "gzip" ? gunzipSync(result.body) : result.body;
  return format === "json" ? JSON.parse(body.toString("utf8")) : toJson(output, fromBinary(output, body));
}

/** Same status, headers (but Date and Content-Length) and message, up to ids and times. */
async function assertEquivalent(pair: Pair, http: HttpVersion, method: string, format: Format, request: (server: CairnServer) => RawRequest): Promise<[unknown, unknown]> {
  const [viaLane, viaAdapter] = (await exchangeBoth(pair, http, request)).map(response) as [RawResponse, RawResponse];
  assert.equal(viaLane.status, 200, viaLane.body.toString());
  assert.equal(viaAdapter.status, 200, viaAdapter.body.toString());
  const { "content-length": laneLength, ...laneHeaders } = withoutDate(viaLane.headers);
  const { "content-length": adapterLength, ...adapterHeaders } = withoutDate(viaAdapter.headers);
  assert.deepEqual(laneHeaders, adapterHeaders);
  assert.equal(Number(laneLength), viaLane.body.byteLength);
  assert.equal(Number(adapterLength), viaAdapter.body.byteLength);
  const messages: [unknown, unknown] = [decoded(method, format, viaLane), decoded(method, format, viaAdapter)];
  assert.deepEqual(normalized(messages[0]), normalized(messages[1]));
  return messages;
}

function runIdOf(message: unknown): string {
  const runId = (message as { run?: { runId?: string } }).run?.runId;
  assert.ok(runId, `no run in ${JSON.stringify(message)}`);
  return runId;
}

/** A run of `workflow` on each server of the pair, by id. */
async function runOnEach(pair: Pair, workflow: string, input: JsonValue, eagerStart = false): Promise<Map<CairnServer, string>> {
  const ids = new Map<CairnServer, string>();
  for (const server of [pair.lane, pair.generic]) {
    const result = response(await rawExchange(server.url, "1.1", rpc("CreateRun", { workflowName: workflow, input, eagerStart }, "json")));
    assert.equal(result.status, 200, result.body.toString());
    ids.set(server, runIdOf(JSON.parse(result.body.toString())));
  }
  return ids;
}

function idOn(ids: Map<CairnServer, string>, server: CairnServer): string {
  const id = ids.get(server);
  assert.ok(id);
  return id;
}

// ---------------------------------------------------------------------------------------------

for (const http of versions) {
  for (const format of formats) {
    describe(`HTTP/${http}, application/${format}`, () => {
      test("ListWorkflows answers the same bytes", async () => {
        const answer = await assertSame(open, http, () => rpc("ListWorkflows", {}, format));
        assert.equal(answer.status, 200);
      });

      test("CreateRun (eager_start), AwaitRun, GetRun: the same run", async () => {
        const [viaLane, viaAdapter] = await assertEquivalent(open, http, "CreateRun", format, () =>
          rpc("CreateRun", { workflowName: "sleeper", input: { ms: 1 }, eagerStart: true }, format),
        );
        const created = new Map([
          [open.lane, runIdOf(viaLane)],
          [open.generic, runIdOf(viaAdapter)],
        ]);
        const [awaited] = await assertEquivalent(open, http, "AwaitRun", format, (server) => rpc("AwaitRun", { runId: idOn(created, server), timeout: "10s" }, format));
        assert.equal((awaited as { run: { status: unknown } }).run.status, "RUN_STATUS_COMPLETED");
        await assertEquivalent(open, http, "GetRun", format, (server) => rpc("GetRun", { runId: idOn(created, server) }, format));
      });

      test("SendEvent and CancelRun", async () => {
        const key = randomUUID();
        await assertEquivalent(open, http, "SendEvent", format, () => rpc("SendEvent", { eventType: "nobody-waits", correlationId: key, payload: { n: 1 } }, format));
        const runs = await runOnEach(open, "waiter", { type: "never", key });
        // Let each run park on its wait (AwaitRun answers at its timeout), so that both cancels find it waiting.
        await assertEquivalent(open, http, "AwaitRun", format, (server) => rpc("AwaitRun", { runId: idOn(runs, server), timeout: "0.3s" }, format));
        const [cancelled] = await assertEquivalent(open, http, "CancelRun", format, (server) => rpc("CancelRun", { runId: idOn(runs, server), reason: "test" }, format));
        assert.equal((cancelled as { run: { status: string } }).run.status, "RUN_STATUS_CANCELLED");
      });

      test("unknown workflow: NOT_FOUND", async () => {
        const answer = await assertSame(open, http, () => rpc("CreateRun", { workflowName: "no_such_workflow", input: {} }, format));
        assert.equal(answer.status, 404);
      });

      test("proto rules and service checks: INVALID_ARGUMENT", async () => {
        assert.equal((await assertSame(open, http, () => rpc("GetRun", { runId: "42" }, format))).status, 400);
        assert.equal((await assertSame(open, http, () => rpc("CreateRun", {}, format))).status, 400);
        assert.equal((await assertSame(open, http, () => rpc("CreateRun", { workflowName: "sleeper", input: [1, 2] }, format))).status, 400);
        const missing = randomUUID();
        assert.equal((await assertSame(open, http, () => rpc("GetRun", { runId: missing }, format))).status, 404);
      });

      test("oversized bodies: RESOURCE_EXHAUSTED naming CAIRN_MAX_REQUEST_BYTES", async () => {
        const big = format === "json" ? `{"workflowName": "${"x".repeat(readMaxBytes)}"}` : toBinary(CreateRunRequestSchema, create(CreateRunRequestSchema, { workflowName: "x".repeat(readMaxBytes) }));
        const declared = await assertSame(open, http, () => rpc("CreateRun", {}, format, { body: big, headers: { "content-length": String(big.length) } }));
        assert.equal(declared.status, 429);
        assert.match(declared.body.toString(), /message size \d+ is larger than configured readMaxBytes \d+ \(CAIRN_MAX_REQUEST_BYTES\)/);
        // No content-length: HTTP/1.1 chunked, HTTP/2 as connect-node sends it; refused once the body outgrows the cap.
        const streamed = await assertSame(open, http, () => rpc("CreateRun", {}, format, { body: big, chunked: true }));
        assert.equal(streamed.status, 429);
        assert.match(streamed.body.toString(), /message size is larger than configured readMaxBytes \d+ \(CAIRN_MAX_REQUEST_BYTES\)/);
        // A body exactly at the cap is read and decoded (then refused by the proto rules).
        const atCap = format === "json" ? `{"workflowName":"${"y".repeat(readMaxBytes - 19)}"}` : undefined;
        if (atCap) {
          assert.equal(atCap.length, readMaxBytes);
          assert.equal((await assertSame(open, http, () => rpc("CreateRun", {}, format, { body: atCap, chunked: true }))).status, 400);
        }
      });

      test("connect-timeout-ms: 0, bad values, a deadline that passes during a long poll", async () => {
        const passed = await assertSame(open, http, () => rpc("ListWorkflows", {}, format, { headers: { "connect-timeout-ms": "0" } }));
        assert.equal(passed.status, 504);
        for (const bad of ["abc", "-5", "12345678901", "1.5", ""]) {
          const answer = await assertSame(open, http, () => rpc("ListWorkflows", {}, format, { headers: { "connect-timeout-ms": bad } }));
          assert.equal(answer.status, 400, `connect-timeout-ms: ${JSON.stringify(bad)}`);
        }
        assert.equal((await assertSame(open, http, () => rpc("ListWorkflows", {}, format, { headers: { "connect-timeout-ms": "60000" } }))).status, 200);
        // Past setTimeout's ceiling a deadline would fire at once: refused, naming the ceiling, rather than DEADLINE_EXCEEDED.
        const tooLong = await assertSame(open, http, () => rpc("ListWorkflows", {}, format, { headers: { "connect-timeout-ms": "2147483648" } }));
        assert.equal(tooLong.status, 400);
        assert.match(tooLong.body.toString(), /timeout 2147483648ms must be <= 2147483647/);
        // AwaitRun stops waiting when the call's deadline passes, and answers the run as it is.
        const runs = await runOnEach(open, "waiter", { type: "never", key: randomUUID() });
        const began = Date.now();
        const [waiting] = await assertEquivalent(open, http, "AwaitRun", format, (server) =>
          rpc("AwaitRun", { runId: idOn(runs, server), timeout: "60s" }, format, { headers: { "connect-timeout-ms": "400" } }),
        );
        assert.ok(Date.now() - began < 10_000, "both long polls ended at their deadline");
        assert.notEqual((waiting as { run: { status: string } }).run.status, "RUN_STATUS_COMPLETED");
      });
    });
  }

  describe(`HTTP/${http}: decoding errors, fallbacks, CORS, keys`, () => {
    test("malformed protobuf and JSON: INVALID_ARGUMENT with reclassifyProtocolErrors' messages", async () => {
      for (const [contentType, body] of [
        ["application/proto", Buffer.from([0x0a, 0xff])],
        ["application/proto", Buffer.from([0xff, 0xff, 0xff])],
        ["application/json", "{bad"],
        ["application/json", '{"runId": 5}'],
        ["application/json", "[]"],
        ["application/json", ""],
      ] as const) {
        const answer = await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/GetRun", headers: { "content-type": contentType }, body }));
        assert.equal(answer.status, 400, `${contentType} ${String(body)}`);
      }
      const binary = await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/GetRun", headers: { "content-type": "application/proto" }, body: Buffer.from([0x0a, 0xff]) }));
      assert.match(binary.body.toString(), /cannot decode message cairn\.v1\.GetRunRequest from protobuf binary/);
    });

    test("content-type spellings the Connect protocol accepts are taken; unknown JSON fields are refused by name", async () => {
      for (const contentType of ["application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=UTF-8", "Application/Proto"]) {
        const body = contentType.toLowerCase().includes("json") ? "{}" : "";
        assert.equal((await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": contentType }, body }))).status, 200);
      }
      // A misspelt field is not silently dropped (a ListRuns filter would widen to every run): the lane and the
      // adapter both answer invalid_argument naming it.
      const refused = await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/json" }, body: '{"extra": 1}' }));
      assert.equal(refused.status, 400);
      assert.deepEqual(JSON.parse(refused.body.toString()), { code: "invalid_argument", message: 'cannot decode message cairn.v1.ListWorkflowsRequest from JSON: key "extra" is unknown' });
    });

    test("what the lane leaves to the adapter: compressed bodies, GET, streams' content types, query strings, unknown paths", async () => {
      const gzipped = gzipSync(Buffer.from("{}"));
      assert.equal((await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gzipped }), false)).status, 200);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/json", "content-encoding": "zstd" }, body: "{}" }), false);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/json", "connect-content-encoding": "gzip" }, body: "{}" }), false);
      await assertSame(open, http, () => ({ method: "GET", path: "/cairn.v1.WorkflowService/ListWorkflows?connect=v1&encoding=json&message=%7B%7D" }), false);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows?x=1", headers: { "content-type": "application/json" }, body: "{}" }), false);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/connect+json" }, body: "{}" }), false);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "text/plain" }, body: "{}" }), false);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/grpc-web+proto" }, body: "" }), false);
      await assertSame(open, http, () => ({ path: "/cairn.v1.WorkflowService/NoSuchMethod", headers: { "content-type": "application/json" }, body: "{}" }), false);
      await assertSame(open, http, () => ({ method: "PUT", path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/json" }, body: "{}" }), false);
      // The REST routes stay in front of both.
      const missing = randomUUID();
      await assertSame(open, http, () => ({ method: "GET", path: `/workflows/runs/${missing}` }), false);
    });

    test("responses over 1 KiB are compressed as accept-encoding asks", async () => {
      const input = { ms: 1, padding: "p".repeat(1500) };
      const runs = await runOnEach(open, "sleeper", input, true);
      for (const server of [open.lane, open.generic]) {
        const done = response(await rawExchange(server.url, http, rpc("AwaitRun", { runId: idOn(runs, server), timeout: "10s" }, "json")));
        assert.match(done.body.toString(), /RUN_STATUS_COMPLETED/);
      }
      for (const format of formats) {
        await assertEquivalent(open, http, "GetRun", format, (server) => rpc("GetRun", { runId: idOn(runs, server) }, format, { headers: { "accept-encoding": "gzip" } }));
        const viaLane = response(await rawExchange(open.lane.url, http, rpc("GetRun", { runId: idOn(runs, open.lane) }, format, { headers: { "accept-encoding": "br, gzip" } })));
        assert.equal(viaLane.headers["content-encoding"], "br");
      }
    });

    test("CORS: preflights are answered by withCors; the actual request is the lane's, with the CORS headers", async () => {
      const preflight = await assertSame(
        open,
        http,
        () => ({
          method: "OPTIONS",
          path: "/cairn.v1.WorkflowService/ListWorkflows",
          headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,x-api-key" },
        }),
        false,
      );
      assert.equal(preflight.status, 204);
      const actual = await assertSame(open, http, () => rpc("ListWorkflows", {}, "json", { headers: { origin } }));
      assert.equal(actual.headers["access-control-allow-origin"], origin);
      assert.match(actual.headers["access-control-expose-headers"] ?? "", /Retry-After-Ms/);
      const refused = await assertSame(open, http, () => rpc("CreateRun", { workflowName: "nope" }, "json", { headers: { origin } }));
      assert.equal(refused.status, 404);
      assert.equal(refused.headers["access-control-allow-origin"], origin);
    });

    test("API keys: missing, malformed, unknown, wrong role, valid", async () => {
      const admin = await newKey("default", "admin");
      const worker = await newKey("default", "worker");
      const client = await newKey("default", "client");
      const unknown = generateApiKey().key;
      const withKey = (key: string | undefined, name = "x-api-key") => rpc("ListWorkflows", {}, "proto", key ? { headers: { [name]: key } } : {});
      // Refused from the headers by the key gate, in front of both the lane and the adapter (server/http/key-gate.ts).
      assert.equal((await assertSame(keyed, http, () => withKey(undefined), false)).status, 401);
      assert.equal((await assertSame(keyed, http, () => withKey("not-a-key"), false)).status, 401);
      assert.equal((await assertSame(keyed, http, () => withKey(unknown), false)).status, 401);
      assert.equal((await assertSame(keyed, http, () => withKey(`Bearer ${unknown}`, "authorization"), false)).status, 401);
      assert.equal((await assertSame(keyed, http, () => withKey(worker))).status, 403);
      assert.equal(
        (await assertSame(keyed, http, () => ({ path: "/cairn.v1.AgentService/PollTurns", headers: { "content-type": "application/json", "x-api-key": client }, body: '{"agents": ["a"], "workerId": "w"}' }))).status,
        403,
      );
      assert.equal((await assertSame(keyed, http, () => withKey(admin, "x-api-key"))).status, 200);
      // Health needs no key (CAIRN_OPEN_HEALTH).
      assert.equal((await assertSame(keyed, http, () => ({ path: "/grpc.health.v1.Health/Check", headers: { "content-type": "application/json" }, body: "{}" }))).status, 200);
    });

    test("a rate-limited key: RESOURCE_EXHAUSTED with retry-after and retry-after-ms", async () => {
      const key = await newKey("default", "admin");
      const request = () => rpc("ListWorkflows", {}, "json", { headers: { "x-api-key": key } });
      const [first, firstGeneric] = (await exchangeBoth(keyed, http, request)).map(response) as [RawResponse, RawResponse];
      assert.equal(first.status, 200);
      assert.equal(firstGeneric.status, 200);
      const [viaLane, viaAdapter] = (await exchangeBoth(keyed, http, request)).map(response) as [RawResponse, RawResponse];
      const digitsOut = (text: string) => text.replace(/\d+ ms/g, "N ms");
      for (const answer of [viaLane, viaAdapter]) {
        assert.equal(answer.status, 429);
        assert.match(answer.headers["retry-after"] ?? "", /^\d+$/);
        assert.match(answer.headers["retry-after-ms"] ?? "", /^\d+$/);
      }
      assert.deepEqual(Object.keys(withoutDate(viaLane.headers)).sort(), Object.keys(withoutDate(viaAdapter.headers)).sort());
      assert.equal(viaLane.headers["retry-after"], viaAdapter.headers["retry-after"]);
      assert.equal(digitsOut(viaLane.body.toString()), digitsOut(viaAdapter.body.toString()));
    });

    test("a client that goes away during AwaitRun releases the call", async () => {
      const runs = await runOnEach(open, "waiter", { type: "never", key: randomUUID() });
      // Answering nobody is routine, not a fault to log.
      const logged: unknown[] = [];
      const consoleError = console.error;
      console.error = (...args: unknown[]) => logged.push(args);
      try {
        for (const server of [open.lane, open.generic]) {
          const runId = idOn(runs, server);
          const gone = new AbortController();
          const polling = rawExchange(server.url, http, rpc("AwaitRun", { runId, timeout: "60s" }, "json", { signal: gone.signal }));
          // The long poll listens on the server's run feed while it waits.
          await until(async () => server.feed.waiters(runId) > 0, `${server === open.lane ? "lane" : "generic"}: AwaitRun never started waiting`);
          gone.abort();
          assert.ok("broken" in (await polling));
          await until(async () => server.feed.waiters(runId) === 0, `${server === open.lane ? "lane" : "generic"}: AwaitRun kept waiting after its client left`);
        }
        // The handler's answer to the departed client is written (and dropped) after the watch is released.
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        console.error = consoleError;
      }
      assert.deepEqual(logged, []);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// gRPC (HTTP/2, application/grpc): the lane takes unary calls as grpc-js and other gRPC clients send them.

/** A gRPC unary request for `method` of WorkflowService: the message binary, in one envelope. */
function grpcRpc(method: string, message: JsonValue, extra: Partial<RawRequest> = {}): RawRequest {
  const [input] = schemasOf(method);
  return {
    path: `/cairn.v1.WorkflowService/${method}`,
    ...extra,
    headers: { "content-type": "application/grpc", te: "trailers", ...extra.headers },
    body: extra.body ?? envelope(toBinary(input, fromJson(input, message))),
  };
}

/** Status, headers but Date, body and trailers, byte for byte (or the same broken exchange). */
function assertSameGrpcAnswer(viaLane: RawOutcome, viaAdapter: RawOutcome): RawResponse {
  const lane = response(viaLane);
  const adapter = response(viaAdapter);
  assert.equal(lane.status, adapter.status);
  assert.deepEqual(withoutDate(lane.headers), withoutDate(adapter.headers));
  assert.equal(lane.body.toString("latin1"), adapter.body.toString("latin1"));
  assert.deepEqual(lane.trailers, adapter.trailers, `trailers; adapter: ${JSON.stringify(adapter.trailers)}`);
  return lane;
}

async function assertSameGrpc(pair: Pair, request: (server: CairnServer) => RawRequest, taken = true): Promise<RawResponse> {
  const [viaLane, viaAdapter] = await exchangeBoth(pair, "2", request, taken);
  return assertSameGrpcAnswer(viaLane, viaAdapter);
}

/** The one message of a successful gRPC answer, decoded (gunzipped when its envelope is flagged compressed). */
function grpcMessage(method: string, answer: RawResponse): unknown {
  const [, output] = schemasOf(method);
  assert.equal(answer.trailers?.["grpc-status"], "0", `grpc-status; message: ${answer.trailers?.["grpc-message"]}`);
  const length = answer.body.readUInt32BE(1);
  assert.equal(answer.body.byteLength, 5 + length, "one envelope");
  const payload = answer.body.subarray(5);
  return toJson(output, fromBinary(output, answer.body[0] === 1 ? gunzipSync(payload) : payload));
}

describe("gRPC over HTTP/2", () => {
  test("ListWorkflows answers the same bytes and trailers", async () => {
    const answer = await assertSameGrpc(open, () => grpcRpc("ListWorkflows", {}));
    assert.equal(answer.status, 200);
    assert.ok((grpcMessage("ListWorkflows", answer) as { workflows: unknown[] }).workflows.length > 0);
  });

  test("CreateRun (eager_start), AwaitRun, GetRun: the same run", async () => {
    const [lane, adapter] = (await exchangeBoth(open, "2", () => grpcRpc("CreateRun", { workflowName: "sleeper", input: { ms: 1 }, eagerStart: true }))).map(response) as [RawResponse, RawResponse];
    assert.deepEqual(withoutDate(lane.headers), withoutDate(adapter.headers));
    assert.deepEqual(lane.trailers, adapter.trailers);
    const created = new Map([
      [open.lane, runIdOf(grpcMessage("CreateRun", lane))],
      [open.generic, runIdOf(grpcMessage("CreateRun", adapter))],
    ]);
    for (const method of ["AwaitRun", "GetRun"]) {
      const answers = (await exchangeBoth(open, "2", (server) => grpcRpc(method, { runId: idOn(created, server), ...(method === "AwaitRun" ? { timeout: "10s" } : {}) }))).map(response);
      const [viaLane, viaAdapter] = answers.map((answer) => normalized(grpcMessage(method, answer)));
      assert.deepEqual(viaLane, viaAdapter);
      assert.equal((viaLane as { run: { status: string } }).run.status, "RUN_STATUS_COMPLETED");
    }
  });

  test("errors: NOT_FOUND, proto rules with their details, an unknown workflow", async () => {
    const runId = randomUUID();
    const missing = await assertSameGrpc(open, () => grpcRpc("GetRun", { runId }));
    assert.equal(missing.trailers?.["grpc-status"], String(Code.NotFound));
    const invalid = await assertSameGrpc(open, () => grpcRpc("GetRun", { runId: "42" }));
    assert.equal(invalid.trailers?.["grpc-status"], String(Code.InvalidArgument));
    assert.ok(invalid.trailers?.["grpc-status-details-bin"], "violations travel as details");
    const unknown = await assertSameGrpc(open, () => grpcRpc("CreateRun", { workflowName: "no_such_workflow", input: {} }));
    assert.equal(unknown.trailers?.["grpc-status"], String(Code.NotFound));
  });

  test("envelope rules: missing, extra, incomplete, compressed without an encoding, not protobuf, oversized", async () => {
    const message = toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: randomUUID() }));
    const status = async (body: Uint8Array, headers: Record<string, string> = {}) =>
      (await assertSameGrpc(open, () => grpcRpc("GetRun", {}, { body, headers }))).trailers?.["grpc-status"];
    assert.equal(await status(new Uint8Array()), String(Code.Unimplemented));
    assert.equal(await status(Buffer.concat([envelope(message), envelope(message)])), String(Code.Unimplemented));
    assert.equal(await status(envelope(message).subarray(0, 8)), String(Code.InvalidArgument));
    assert.equal(await status(envelope(message, 1)), String(Code.InvalidArgument));
    assert.equal(await status(envelope(Buffer.from([0xff, 0xff, 0xff]))), String(Code.InvalidArgument));
    const oversized = await assertSameGrpc(open, () => grpcRpc("CreateRun", {}, { body: envelope(new Uint8Array(readMaxBytes + 1)) }));
    assert.equal(oversized.trailers?.["grpc-status"], String(Code.ResourceExhausted));
    assert.match(decodeURIComponent(oversized.trailers?.["grpc-message"] ?? ""), /message size \d+ is larger than configured readMaxBytes \d+ \(CAIRN_MAX_REQUEST_BYTES\)/);
  });

  test("compression: a gzip request, a gzip answer when accepted, an unknown encoding refused", async () => {
    const body = envelope(gzipSync(toBinary(ListWorkflowsRequestSchema, create(ListWorkflowsRequestSchema, {}))), 1);
    const answer = await assertSameGrpc(open, () => grpcRpc("ListWorkflows", {}, { body, headers: { "grpc-encoding": "gzip", "grpc-accept-encoding": "gzip" } }));
    assert.equal(answer.headers["grpc-encoding"], "gzip");
    assert.ok((grpcMessage("ListWorkflows", answer) as { workflows: unknown[] }).workflows.length > 0);
    const unknown = await assertSameGrpc(open, () => grpcRpc("ListWorkflows", {}, { headers: { "grpc-encoding": "snappy" } }));
    assert.equal(unknown.trailers?.["grpc-status"], String(Code.Unimplemented));
  });

  test("grpc-timeout: a malformed one is refused, a valid one is honoured", async () => {
    const bad = await assertSameGrpc(open, () => grpcRpc("ListWorkflows", {}, { headers: { "grpc-timeout": "soon" } }));
    assert.notEqual(bad.trailers?.["grpc-status"], "0");
    const ok = await assertSameGrpc(open, () => grpcRpc("ListWorkflows", {}, { headers: { "grpc-timeout": "5S" } }));
    assert.equal(ok.trailers?.["grpc-status"], "0");
  });

  test("keys mode: no key is UNAUTHENTICATED (from the key gate, in front of both), a good key is served", async () => {
    const refused = await assertSameGrpc(keyed, () => grpcRpc("ListWorkflows", {}), false);
    // Trailers-only: the gate answers before the body is read, with the status in the headers.
    assert.equal(refused.headers["grpc-status"], String(Code.Unauthenticated));
    const key = await newKey("grpc-lane", "admin");
    const served = await assertSameGrpc(keyed, () => grpcRpc("ListWorkflows", {}, { headers: { authorization: `Bearer ${key}` } }));
    assert.equal(served.trailers?.["grpc-status"], "0");
  });

  test("left to the adapter: gRPC JSON, a server stream, and gRPC over HTTP/1.1", async () => {
    await assertSameGrpc(open, () => ({ ...grpcRpc("ListWorkflows", {}), headers: { "content-type": "application/grpc+json", te: "trailers" }, body: envelope(Buffer.from("{}")) }), false);
    // A server stream (refused at once: the run id is not a UUID).
    const watch = toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId: "42" }));
    const stream = await assertSameGrpc(open, () => ({ ...grpcRpc("ListWorkflows", {}), path: "/cairn.v1.WorkflowService/WatchRun", body: envelope(watch) }), false);
    assert.equal(stream.trailers?.["grpc-status"], String(Code.InvalidArgument));
    const [lane, adapter] = (await exchangeBoth(open, "1.1", () => grpcRpc("ListWorkflows", {}), false)).map(response) as [RawResponse, RawResponse];
    assert.equal(lane.status, adapter.status);
    assert.deepEqual(withoutDate(lane.headers), withoutDate(adapter.headers));
  });
});

describe("requests without a usable authority", () => {
  // connect-node's adapter throws out of the request listener for these; uncaught, that ended the server process.
  test("are refused with 400 on both paths, and the server goes on serving", async () => {
    for (const head of [
      "POST /cairn.v1.WorkflowService/ListWorkflows HTTP/1.0", // HTTP/1.0 needs no Host
      "POST /cairn.v1.WorkflowService/ListWorkflows HTTP/1.1\r\nHost: ok:99999",
      "POST /cairn.v1.WorkflowService/ListWorkflows HTTP/1.1\r\nHost: a b",
      "POST /cairn.v1.WorkflowService/WatchRuns HTTP/1.0", // a stream: the adapter's
    ]) {
      const answers: string[] = [];
      for (const server of [open.lane, open.generic]) {
        const before = server.unaryLaneCalls();
        const raw = await rawSocketExchange(server.port, `${head}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`);
        answers.push(raw.replace(/^Date: .*\r\n/m, ""));
        assert.equal(server.unaryLaneCalls(), before, "the lane leaves these to the guard");
        assert.equal(response(await rawExchange(server.url, "1.1", rpc("ListWorkflows", {}, "json"))).status, 200);
      }
      assert.match(answers[0] ?? "", /^HTTP\/1\.1 400 /, head);
      assert.match(answers[0] ?? "", /"code":"invalid_argument"/);
      assert.equal(answers[0], answers[1]);
    }
  });
});

describe("server shutdown", () => {
  test("ends the long polls in flight on both paths", async () => {
    const pair = await startPair({});
    const runs = await runOnEach(pair, "waiter", { type: "never", key: randomUUID() });
    const polls = [pair.lane, pair.generic].map((server) =>
      rawExchange(server.url, "2", rpc("AwaitRun", { runId: idOn(runs, server), timeout: "60s" }, "json")).then(response),
    );
    for (const server of [pair.lane, pair.generic]) await until(async () => server.feed.waiters(idOn(runs, server)) > 0, "AwaitRun never started waiting");
    // Both runs parked on their event first: a run still RUNNING at the close would answer differently from one WAITING.
    for (const server of [pair.lane, pair.generic]) {
      await until(async () => {
        const got = response(await rawExchange(server.url, "2", rpc("GetRun", { runId: idOn(runs, server) }, "json")));
        return (JSON.parse(got.body.toString()) as { run?: { status?: string } }).run?.status === "RUN_STATUS_WAITING";
      }, "the run never parked on its event");
    }
    const began = Date.now();
    const closing = [pair.lane.close(), pair.generic.close()];
    const [viaLane, viaAdapter] = await Promise.all(polls);
    await Promise.all(closing);
    assert.ok(Date.now() - began < 15_000);
    assert.equal(viaLane?.status, 200);
    assert.equal(viaAdapter?.status, 200);
    assert.deepEqual(normalized(JSON.parse(viaLane?.body.toString() ?? "")), normalized(JSON.parse(viaAdapter?.body.toString() ?? "")));
  });
});

// ---------------------------------------------------------------------------------------------
// What the Cairn services never do, on a fixture service: response headers and trailers, error
// metadata, what interceptors and handlers are given, the deadline's
// abort reason.

describe("the lane and the adapter on a fixture service", () => {
  const seen = createContextKey<string>("", { description: "seen" });
  const observed: Record<string, unknown>[] = [];
  const recorder: Interceptor = (next) => async (request) => {
    request.contextValues.set(seen, "interceptor");
    observed.push({
      url: request.url,
      requestMethod: request.requestMethod,
      service: request.service.typeName,
      method: request.method.name,
      header: request.header instanceof Headers ? request.header.get("x-test") : "not Headers",
      signal: request.signal instanceof AbortSignal,
    });
    const answer = await next(request);
    answer.header.set("x-from-interceptor", "yes");
    return answer;
  };
  const fixture: Partial<ServiceImpl<typeof WorkflowService>> = {
    listWorkflows(_request, context) {
      observed.push({ protocol: context.protocolName, value: context.values.get(seen), timeout: typeof context.timeoutMs(), url: context.url });
      context.responseHeader.set("x-handler", "h");
      context.responseHeader.append("set-cookie", "a=1");
      context.responseHeader.append("set-cookie", "b=2");
      context.responseTrailer.set("x-trailer", "t");
      return create(ListWorkflowsResponseSchema, { workflows: [create(WorkflowSchema, { name: "w" })] });
    },
    getRun(request) {
      throw new ConnectError("refused", Code.FailedPrecondition, { "x-meta": "m", "retry-after": "3" });
    },
    async awaitRun(_request, context) {
      // Waits for the deadline (5 s at most), then tells how the signal was aborted.
      await new Promise((resolve) => {
        context.signal.addEventListener("abort", resolve, { once: true });
        setTimeout(resolve, 5000).unref();
      });
      return create(AwaitRunResponseSchema, { run: { runId: deadlinePassed(context.signal) ? "deadline" : `other: ${String(context.signal.reason)}` } });
    },
    cancelRun() {
      throw new Error("a bug");
    },
  };
  const options = { routes: (router: ConnectRouter) => router.service(WorkflowService, fixture), interceptors: [recorder], readMaxBytes: 1024 };
  let viaLane: Listening;
  let viaAdapter: Listening;
  let laneCalls: () => number;

  beforeAll(async () => {
    const adapter = connectNodeAdapter(options);
    const lane = withUnaryLane(adapter, options);
    laneCalls = lane.served;
    viaLane = await listen(lane, { host: "127.0.0.1", port: 0 });
    viaAdapter = await listen(connectNodeAdapter(options), { host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    await viaLane?.close();
    await viaAdapter?.close();
  });

  async function same(http: HttpVersion, request: RawRequest): Promise<RawResponse> {
    const before = laneCalls();
    observed.length = 0;
    const lane = response(await rawExchange(`http://127.0.0.1:${viaLane.port}`, http, request));
    const laneObserved = observed.splice(0);
    assert.equal(laneCalls() - before, 1);
    const adapter = response(await rawExchange(`http://127.0.0.1:${viaAdapter.port}`, http, request));
    const adapterObserved = observed.splice(0);
    assert.equal(lane.status, adapter.status);
    assert.deepEqual(withoutDate(lane.headers), withoutDate(adapter.headers));
    assert.equal(lane.body.toString("latin1"), adapter.body.toString("latin1"));
    const port = (text: unknown) => JSON.parse(JSON.stringify(text).replace(/127\.0\.0\.1:\d+/g, "HOST"));
    assert.deepEqual(port(laneObserved), port(adapterObserved));
    return lane;
  }

  for (const http of versions) {
    test(`HTTP/${http}: response headers, set-cookie, trailers as trailer- headers, what interceptors see`, async () => {
      const answer = await same(http, { path: "/cairn.v1.WorkflowService/ListWorkflows", headers: { "content-type": "application/json", "x-test": "t" }, body: "{}" });
      assert.equal(answer.headers["x-handler"], "h");
      assert.equal(answer.headers["trailer-x-trailer"], "t");
      assert.equal(answer.headers["x-from-interceptor"], "yes");
    });

    // @connectrpc/connect 2.1 (pinned for Node 20) has no wire-error flag and no protocol-header filter.
    test(`HTTP/${http}: error metadata becomes headers`, async () => {
      const refused = await same(http, { path: "/cairn.v1.WorkflowService/GetRun", headers: { "content-type": "application/json" }, body: '{"runId": "x"}' });
      assert.equal(refused.status, 400);
      assert.equal(refused.headers["x-meta"], "m");
      assert.equal(refused.headers["retry-after"], "3");
      assert.equal(refused.headers["content-type"], "application/json");
    });

    test(`HTTP/${http}: a deadline aborts the signal with DEADLINE_EXCEEDED`, async () => {
      const answer = await same(http, { path: "/cairn.v1.WorkflowService/AwaitRun", headers: { "content-type": "application/json", "connect-timeout-ms": "50" }, body: "{}" });
      assert.equal(JSON.parse(answer.body.toString()).run.runId, "deadline");
    });

    test(`HTTP/${http}: an error that is not a ConnectError is INTERNAL`, async () => {
      assert.equal((await same(http, { path: "/cairn.v1.WorkflowService/CancelRun", headers: { "content-type": "application/json" }, body: "{}" })).status, 500);
    });

    test(`HTTP/${http}: an unimplemented method is UNIMPLEMENTED`, async () => {
      assert.equal((await same(http, { path: "/cairn.v1.WorkflowService/SendEvent", headers: { "content-type": "application/json" }, body: "{}" })).status, 501);
    });
  }

  async function sameGrpc(request: RawRequest): Promise<RawResponse> {
    const before = laneCalls();
    observed.length = 0;
    const lane = await rawExchange(`http://127.0.0.1:${viaLane.port}`, "2", request);
    const laneObserved = observed.splice(0);
    assert.equal(laneCalls() - before, 1);
    const adapter = await rawExchange(`http://127.0.0.1:${viaAdapter.port}`, "2", request);
    const adapterObserved = observed.splice(0);
    const port = (text: unknown) => JSON.parse(JSON.stringify(text).replace(/127\.0\.0\.1:\d+/g, "HOST"));
    assert.deepEqual(port(laneObserved), port(adapterObserved));
    return assertSameGrpcAnswer(lane, adapter);
  }
  const grpcCall = (method: string, message: Uint8Array, headers: Record<string, string> = {}): RawRequest => ({
    path: `/cairn.v1.WorkflowService/${method}`,
    headers: { "content-type": "application/grpc+proto", te: "trailers", "x-test": "t", ...headers },
    body: envelope(message),
  });

  test("gRPC: headers, set-cookie and trailers from the handler and interceptors, what interceptors see", async () => {
    const answer = await sameGrpc(grpcCall("ListWorkflows", new Uint8Array()));
    assert.equal(answer.headers["x-handler"], "h");
    assert.equal(answer.trailers?.["x-trailer"], "t");
    assert.equal(answer.headers["x-from-interceptor"], "yes");
  });

  test("gRPC: error metadata in the trailers; a deadline from grpc-timeout; a non-Connect error is INTERNAL; UNIMPLEMENTED", async () => {
    const refused = await sameGrpc(grpcCall("GetRun", new Uint8Array()));
    assert.equal(refused.trailers?.["grpc-status"], String(Code.FailedPrecondition));
    assert.equal(refused.trailers?.["x-meta"], "m");
    const deadline = await sameGrpc(grpcCall("AwaitRun", new Uint8Array(), { "grpc-timeout": "50m" }));
    assert.equal((grpcMessageOf(deadline) as { run: { runId: string } }).run.runId, "deadline");
    assert.equal((await sameGrpc(grpcCall("CancelRun", new Uint8Array()))).trailers?.["grpc-status"], String(Code.Internal));
    assert.equal((await sameGrpc(grpcCall("SendEvent", new Uint8Array()))).trailers?.["grpc-status"], String(Code.Unimplemented));
  });

  function grpcMessageOf(answer: RawResponse): unknown {
    return toJson(AwaitRunResponseSchema, fromBinary(AwaitRunResponseSchema, answer.body.subarray(5)));
  }
});

// ---------------------------------------------------------------------------------------------

async function newKey(namespace: string, role: ApiKeyRole): Promise<string> {
  const generated = generateApiKey();
  await insertApiKey(keyed.lane.database.db, { id: generated.id, namespace, role, secretHash: generated.secretHash, name: `unary lane ${role}` });
  return generated.key;
}

/** Writes `request` as it is on a new connection and returns everything the server sent until it closed. */
function rawSocketExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(request));
    let received = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("close", () => resolve(received));
    socket.on("error", reject);
    socket.setTimeout(5000, () => socket.destroy(new Error(`no answer to ${JSON.stringify(request.slice(0, 60))}`)));
  });
}

async function until(check: () => Promise<boolean>, message: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(message);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
