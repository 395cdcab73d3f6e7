// Fuzzing the API surface: FUZZ_COUNT (default 10,000) random and mutated requests, from a seeded PRNG, against
// every RPC of WorkflowService and AgentService and the two REST routes, over Connect (HTTP/1.1, application/proto
// and application/json, plus Connect GET), gRPC (h2c) and REST. A real server process on a fresh database.
//
// It asserts that the server never crashes and keeps answering, that no reply is INTERNAL / UNKNOWN / HTTP 500
// (every input here is a client's mistake or a valid request), that deadlines end long polls and streams, and that
// the database holds only whole, valid rows: exactly the runs and events whose creation was answered OK.
//
// Reproduce a run with the seed it prints: FUZZ_SEED=<seed> FUZZ_COUNT=<n> npx vitest run test/e2e/fuzz.test.ts
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, test } from "vitest";
import { create, type DescMessage, type DescMethod, fromBinary, type JsonValue, type Message, toBinary, toJson } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { BatchOperation, CreateRunResponseSchema, ForkRunResponseSchema, SendEventResponseSchema, WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { diagnostic } from "../support/diagnostic.js";
import { envelope } from "../support/raw-http.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : randomInt(2 ** 31);
const count = Number(process.env.FUZZ_COUNT ?? 10_000);
const concurrency = 16;
const workflowNames = ["fuzz_echo", "fuzz_typed", "fuzz_wait"];

let database: TestDatabase;
let server: ServerProcess;

beforeAll(async () => {
  database = await createTestDatabase("fuzz");
  server = await startServerProcess({
    name: "fuzz-server",
    databaseUrl: database.url,
    workflowDirs: ["test/fixtures/fuzz-workflows"],
    env: {
      CAIRN_MAX_INPUT_BYTES: "4096",
      CAIRN_MAX_EVENT_BYTES: "2048",
      CAIRN_MAX_AGENT_RESULT_BYTES: "2048",
      CAIRN_MAX_STEP_RESULT_BYTES: "8192",
      CAIRN_AGENT_LEASE_MS: "2000",
    },
  });
});

afterAll(async () => {
  await stopAllServerProcesses();
  await database?.drop();
});

// ---------------------------------------------------------------- seeded randomness

type Rng = () => number;

/** mulberry32: small, fast, good enough to pick fuzz cases; one stream per input, so workers' order doesn't matter. */
function prng(a: number): Rng {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, items: readonly T[]): T => items[int(rng, items.length)] as T;
const chance = (rng: Rng, p: number) => rng() < p;

function randomUuid(rng: Rng, upper = false): string {
  const hex = Array.from({ length: 32 }, () => int(rng, 16).toString(16)).join("");
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  return upper ? id.toUpperCase() : id;
}

const oddStrings = ["", " ", "\u0000", "a\u0000b", "\ud800", "💥", "é".repeat(300), "x".repeat(600), "../../../etc/passwd", "%zz", "null", "0", "-1", "RUN_STATUS_BOGUS", "<script>", "'; drop table runs; --", "\n\r\t"];

function randomString(rng: Rng): string {
  if (chance(rng, 0.4)) return pick(rng, oddStrings);
  const length = int(rng, chance(rng, 0.1) ? 2000 : 20);
  return Array.from({ length }, () => String.fromCharCode(chance(rng, 0.9) ? 32 + int(rng, 95) : int(rng, 0xffff))).join("");
}

function randomJson(rng: Rng, depth = 0): JsonValue {
  const kind = depth > 3 ? int(rng, 5) : int(rng, 7);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return chance(rng, 0.5);
    case 2:
      return pick(rng, [0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, 5e-324, int(rng, 1000)]);
    case 3:
    case 4:
      return randomString(rng);
    case 5:
      return Array.from({ length: int(rng, 4) }, () => randomJson(rng, depth + 1));
    default: {
      const object: Record<string, JsonValue> = {};
      for (let i = int(rng, 4); i > 0; i--) object[chance(rng, 0.3) ? randomString(rng) : `k${int(rng, 5)}`] = randomJson(rng, depth + 1);
      return object;
    }
  }
}

/** Deeply nested JSON (arrays or objects) around the limits: decoders stop at 100 messages, storage at 48 levels. */
function deepJson(rng: Rng): JsonValue {
  let value: JsonValue = "bottom";
  for (let i = 30 + int(rng, chance(rng, 0.9) ? 40 : 2000); i > 0; i--) value = chance(rng, 0.5) ? [value] : { d: value };
  return value;
}

// ---------------------------------------------------------------- what is fuzzed

interface Target {
  /** e.g. "WorkflowService/CreateRun", or "REST POST /workflows/runs". */
  name: string;
  method?: DescMethod;
  /** A valid (or nearly valid) message to start from. */
  seed?(rng: Rng): Message;
  /** Server stream or long poll: always sent with a short deadline. */
  waits?: boolean;
}

let knownRunIds: string[] = [];
const runId = (rng: Rng) => (chance(rng, 0.7) && knownRunIds.length > 0 ? pick(rng, knownRunIds) : randomUuid(rng, chance(rng, 0.1)));
const jsonInput = (rng: Rng): JsonValue =>
  pick(rng, [
    () => ({ value: randomJson(rng) }),
    () => ({ name: "n", count: int(rng, 2000) - 500, tags: ["a"] }),
    () => ({ key: `k${int(rng, 3)}` }),
    () => randomJson(rng),
    () => ({ blob: "x".repeat(int(rng, 6000)) }),
  ])();
/** A page token shaped like the server's (base64url JSON of created_at and id), with odd dates and ids. */
const forgedPageToken = (rng: Rng) =>
  Buffer.from(
    JSON.stringify({
      c: pick(rng, ["2026-01-01T00:00:00.000Z", "0000-01-01T00:00:00Z", "-271821-04-20T00:00:00.000Z", "+275760-09-13T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "not a date", 0]),
      i: chance(rng, 0.8) ? randomUuid(rng) : randomString(rng),
    }),
  ).toString("base64url");
const statuses = () => [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

const W = WorkflowService.method;
const A = AgentService.method;
const targets: Target[] = [
  { name: "WorkflowService/ListWorkflows", method: W.listWorkflows, seed: () => create(W.listWorkflows.input) },
  {
    name: "WorkflowService/CreateRun",
    method: W.createRun,
    seed: (rng) =>
      create(W.createRun.input, {
        workflowName: chance(rng, 0.9) ? pick(rng, workflowNames) : randomString(rng),
        input: valueFromJson(jsonInput(rng)),
        eagerStart: chance(rng, 0.3),
        idempotencyKey: chance(rng, 0.3) ? `key-${int(rng, 40)}` : "",
        metadata: chance(rng, 0.3) ? { team: "fuzz", [randomString(rng)]: randomString(rng) } : {},
      }),
  },
  { name: "WorkflowService/GetRun", method: W.getRun, seed: (rng) => create(W.getRun.input, { runId: runId(rng) }) },
  { name: "WorkflowService/ExplainRun", method: W.explainRun, seed: (rng) => create(W.explainRun.input, { runId: runId(rng) }) },
  {
    name: "WorkflowService/ListRuns",
    method: W.listRuns,
    seed: (rng) =>
      create(W.listRuns.input, {
        workflowName: chance(rng, 0.5) ? pick(rng, workflowNames) : "",
        statuses: chance(rng, 0.5) ? [pick(rng, statuses())] : [],
        parentRunId: chance(rng, 0.1) ? runId(rng) : "",
        pageSize: int(rng, 20),
        pageToken: chance(rng, 0.1) ? randomString(rng) : chance(rng, 0.1) ? forgedPageToken(rng) : "",
        waitingFor: int(rng, 6),
        createdAfter: chance(rng, 0.2) ? { seconds: BigInt(int(rng, 2_000_000_000)), nanos: 0 } : undefined,
      }),
  },
  {
    name: "WorkflowService/GetRunHistory",
    method: W.getRunHistory,
    seed: (rng) => create(W.getRunHistory.input, { runId: runId(rng), afterSequence: BigInt(int(rng, 5)), pageSize: int(rng, 10) }),
  },
  {
    name: "WorkflowService/CancelRun",
    method: W.cancelRun,
    seed: (rng) => create(W.cancelRun.input, { runId: runId(rng), reason: chance(rng, 0.5) ? randomString(rng) : "", detachChildren: chance(rng, 0.5) }),
  },
  { name: "WorkflowService/PauseRun", method: W.pauseRun, seed: (rng) => create(W.pauseRun.input, { runId: runId(rng), reason: chance(rng, 0.5) ? randomString(rng) : "" }) },
  { name: "WorkflowService/ResumeRun", method: W.resumeRun, seed: (rng) => create(W.resumeRun.input, { runId: runId(rng), reason: chance(rng, 0.5) ? randomString(rng) : "" }) },
  { name: "WorkflowService/RetryRun", method: W.retryRun, seed: (rng) => create(W.retryRun.input, { runId: runId(rng), reason: chance(rng, 0.5) ? randomString(rng) : "" }) },
  {
    name: "WorkflowService/ForkRun",
    method: W.forkRun,
    seed: (rng) =>
      create(W.forkRun.input, {
        runId: runId(rng),
        fromOperation: chance(rng, 0.7) ? pick(rng, ["echo", "typed", "wait", "go"]) : randomString(rng),
        ...(chance(rng, 0.5) ? { input: valueFromJson(jsonInput(rng)) } : {}),
      }),
  },
  {
    name: "WorkflowService/StartBatch",
    method: W.startBatch,
    seed: (rng) =>
      create(W.startBatch.input, {
        filter: chance(rng, 0.9)
          ? { workflowName: chance(rng, 0.7) ? pick(rng, workflowNames) : "", statuses: chance(rng, 0.5) ? [pick(rng, statuses())] : [], metadata: chance(rng, 0.3) ? { team: "fuzz" } : {} }
          : undefined,
        operation: pick(rng, [BatchOperation.CANCEL, BatchOperation.PAUSE, BatchOperation.RESUME, BatchOperation.RETRY, 0, 9]),
        dryRun: chance(rng, 0.7),
        reason: chance(rng, 0.3) ? randomString(rng) : "",
      }),
  },
  { name: "WorkflowService/GetBatch", method: W.getBatch, seed: (rng) => create(W.getBatch.input, { batchId: chance(rng, 0.8) ? randomUuid(rng) : randomString(rng) }) },
  {
    name: "WorkflowService/SendEvent",
    method: W.sendEvent,
    seed: (rng) =>
      create(W.sendEvent.input, {
        eventType: chance(rng, 0.7) ? "fuzz.go" : randomString(rng),
        correlationId: `k${int(rng, 3)}`,
        payload: valueFromJson(chance(rng, 0.8) ? randomJson(rng) : { blob: "y".repeat(int(rng, 3000)) }),
        runId: chance(rng, 0.2) ? runId(rng) : "",
        idempotencyKey: chance(rng, 0.3) ? `event-${int(rng, 40)}` : "",
      }),
  },
  { name: "WorkflowService/WatchRun", method: W.watchRun, waits: true, seed: (rng) => create(W.watchRun.input, { runId: runId(rng), afterSequence: BigInt(int(rng, 4)) }) },
  {
    name: "WorkflowService/WatchRuns",
    method: W.watchRuns,
    waits: true,
    seed: (rng) => create(W.watchRuns.input, { workflowName: chance(rng, 0.5) ? pick(rng, workflowNames) : "", statuses: chance(rng, 0.3) ? [pick(rng, statuses())] : [] }),
  },
  {
    name: "AgentService/ReceiveTurns",
    method: A.receiveTurns,
    waits: true,
    seed: (rng) => create(A.receiveTurns.input, { agents: ["fuzz"], workerId: "fuzz", maxInFlight: int(rng, 3) }),
  },
  {
    name: "AgentService/PollTurns",
    method: A.pollTurns,
    waits: true,
    seed: (rng) => create(A.pollTurns.input, { agents: ["fuzz"], workerId: "fuzz", maxTurns: int(rng, 3), waitSeconds: 1 + int(rng, 3) }),
  },
  {
    name: "AgentService/HeartbeatTurn",
    method: A.heartbeatTurn,
    seed: (rng) => create(A.heartbeatTurn.input, { turnId: randomUuid(rng), leaseToken: randomUuid(rng) }),
  },
  {
    name: "AgentService/CompleteTurn",
    method: A.completeTurn,
    seed: (rng) => create(A.completeTurn.input, { turnId: randomUuid(rng), leaseToken: randomUuid(rng), result: valueFromJson(randomJson(rng)) }),
  },
  {
    name: "AgentService/FailTurn",
    method: A.failTurn,
    seed: (rng) =>
      create(A.failTurn.input, {
        turnId: randomUuid(rng),
        leaseToken: randomUuid(rng),
        error: { name: randomString(rng), message: randomString(rng), stack: "", details: valueFromJson(randomJson(rng)) },
        retryable: chance(rng, 0.5),
      }),
  },
  { name: "REST POST /workflows/runs", seed: (rng) => targets[1]?.seed?.(rng) as Message },
  { name: "REST GET /workflows/runs/{id}" },
];

// ---------------------------------------------------------------- mutations

function mutateBytes(rng: Rng, input: Uint8Array, schema: DescMessage | undefined): Uint8Array {
  let bytes: Uint8Array = input;
  for (let round = 1 + int(rng, 3); round > 0; round--) {
    const at = bytes.length === 0 ? 0 : int(rng, bytes.length);
    switch (int(rng, 10)) {
      case 0: {
        // flip bits
        const out = bytes.slice();
        for (let i = 1 + int(rng, 4); i > 0 && out.length > 0; i--) {
          const j = int(rng, out.length);
          out[j] = (out[j] ?? 0) ^ (1 << int(rng, 8));
        }
        bytes = out;
        break;
      }
      case 1: // insert random bytes
        bytes = concat(bytes.subarray(0, at), randomBytes(rng, 1 + int(rng, 8)), bytes.subarray(at));
        break;
      case 2: // delete a range
        bytes = concat(bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + 1 + int(rng, 8))));
        break;
      case 3: // truncate
        bytes = bytes.subarray(0, at);
        break;
      case 4: // duplicate a range
        bytes = concat(bytes.subarray(0, at), bytes.subarray(at, at + int(rng, 16)), bytes.subarray(at));
        break;
      case 5: // overwrite with random bytes
        bytes = concat(bytes.subarray(0, at), randomBytes(rng, int(rng, 6)), bytes.subarray(at + int(rng, 6)));
        break;
      case 6: // a known field with the wrong wire type
        bytes = concat(bytes, wrongWireType(rng, schema));
        break;
      case 7: // a length prefix far beyond the message
        bytes = concat(bytes.subarray(0, at), new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), bytes.subarray(at));
        break;
      case 8: // the tag byte's wire type changed in place
        bytes = bytes.slice();
        if (bytes.length > 0) bytes[at] = ((bytes[at] ?? 0) & 0xf8) | int(rng, 8);
        break;
      default: // nothing but noise
        bytes = randomBytes(rng, int(rng, 64));
    }
  }
  return bytes;
}

function wrongWireType(rng: Rng, schema: DescMessage | undefined): Uint8Array {
  const field = schema && schema.fields.length > 0 ? pick(rng, schema.fields) : undefined;
  const number = field?.number ?? 1 + int(rng, 20);
  const writer = new BinaryWriter();
  switch (int(rng, 5)) {
    case 0:
      writer.tag(number, WireType.Varint).uint64(BigInt(int(rng, 2 ** 31)) * 4294967296n);
      break;
    case 1:
      writer.tag(number, WireType.Bit64).fixed64(12345678901234n);
      break;
    case 2:
      writer.tag(number, WireType.LengthDelimited).bytes(randomBytes(rng, int(rng, 20)));
      break;
    case 3:
      writer.tag(number, WireType.Bit32).fixed32(int(rng, 2 ** 31));
      break;
    default:
      writer.tag(number, WireType.StartGroup).tag(number, WireType.EndGroup);
  }
  return writer.finish();
}

/** encodeURIComponent for any string: lone surrogates (which it refuses) go as U+FFFD, like TextEncoder does. */
function percentEncode(text: string): string {
  return [...Buffer.from(text, "utf8")].map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, "0").toUpperCase()}`)).join("");
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => int(rng, 256));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A JSON request body: the seed's proto3 JSON with fields of the wrong type, dropped, renamed, swollen, or broken text. */
function mutateJson(rng: Rng, seedJson: Record<string, JsonValue>, schema: DescMessage | undefined): string {
  const json: Record<string, JsonValue> = { ...seedJson };
  const fieldNames = schema ? schema.fields.flatMap((f) => [f.name, f.jsonName]) : Object.keys(json);
  for (let round = 1 + int(rng, 3); round > 0; round--) {
    const key = chance(rng, 0.8) && fieldNames.length > 0 ? pick(rng, fieldNames) : randomString(rng);
    switch (int(rng, 8)) {
      case 0:
        json[key] = randomJson(rng); // wrong type, most of the time
        break;
      case 1:
        delete json[key];
        break;
      case 2:
        json[key] = pick(rng, ["NaN", "Infinity", "-0", "1e400", "18446744073709551616", "-9223372036854775809", "0x10", "RUN_STATUS_NOPE", "1.5"]);
        break;
      case 3:
        json[key] = pick(rng, [0, -1, 2 ** 31, 2 ** 63, 1.5, -(2 ** 53)]);
        break;
      case 4:
        json[key] = "x".repeat(int(rng, 5000));
        break;
      case 5:
        json[key] = deepJson(rng);
        break;
      case 6:
        json[key] = { nested: randomJson(rng), "@type": "type.googleapis.com/google.protobuf.Empty" };
        break;
      default:
        json[key] = [randomJson(rng), randomJson(rng)];
    }
  }
  let text = JSON.stringify(json);
  if (chance(rng, 0.25)) {
    // break the text itself
    const at = int(rng, text.length + 1);
    text = pick(rng, [
      () => text.slice(0, at),
      () => `${text.slice(0, at)}${pick(rng, ["{", "}", '"', "\\", ",", ":", "\u0000", "\ud800", "]"])}${text.slice(at)}`,
      () => `${text.slice(0, -1)},"${fieldNames[0] ?? "x"}":1,"${fieldNames[0] ?? "x"}":"dup"}`,
      () => pick(rng, ["", "null", "[]", "true", "0", '"text"', "{", "{}}", "\ufeff{}"]),
    ])();
  }
  return text;
}

// ---------------------------------------------------------------- one request

interface Outcome {
  /** ok, a Connect code name (invalid_argument, ...), or http_NNN / network / client_timeout. */
  code: string;
  createdRunId?: string;
  createdEventId?: string;
}

interface Request {
  target: Target;
  protocol: "connect-proto" | "connect-json" | "connect-get" | "grpc" | "rest";
  /** A short deadline in ms, sent in connect-timeout-ms / grpc-timeout. */
  timeoutMs?: number;
  body: Uint8Array | string;
  contentType: string;
  /** REST GET: the id path segment. */
  restId?: string;
  /** Sent compressed (Connect POST and gRPC): the body compressed with it, then maybe damaged. */
  compression?: { name: "gzip" | "br"; damage: "none" | "truncate" | "flip" | "garbage"; at: number };
}

function buildRequest(rng: Rng): Request {
  const target = pick(rng, targets);
  const message = target.seed?.(rng);
  const schema = target.method?.input;
  const timeoutMs = target.waits ? 30 + int(rng, 120) : chance(rng, 0.05) ? 1 + int(rng, 40) : undefined;
  if (target.name.startsWith("REST GET")) {
    const restId = pick(rng, [() => (knownRunIds.length > 0 ? pick(rng, knownRunIds) : randomUuid(rng)), () => randomUuid(rng), () => percentEncode(randomString(rng)), () => pick(rng, ["%", "%zz", "..", "a/b", "x".repeat(3000)])])();
    return { target, protocol: "rest", body: "", contentType: "", restId };
  }
  if (target.name.startsWith("REST POST")) {
    const seedJson = toJson(W.createRun.input, message as never, { useProtoFieldName: true }) as Record<string, JsonValue>;
    const body = chance(rng, 0.15) ? JSON.stringify(seedJson) : chance(rng, 0.1) ? JSON.stringify(randomJson(rng)) : mutateJson(rng, seedJson, W.createRun.input);
    const contentType = chance(rng, 0.95) ? "application/json" : pick(rng, ["text/plain", "application/proto", "application/x-www-form-urlencoded", ""]);
    return { target, protocol: "rest", body, contentType };
  }
  const protocols: Request["protocol"][] = ["connect-proto", "connect-json", "grpc", "connect-proto", "connect-json", "grpc"];
  if (target.method?.idempotency === 1 /* NO_SIDE_EFFECTS */ && target.method.methodKind === "unary") protocols.push("connect-get");
  const protocol = pick(rng, protocols);
  const valid = chance(rng, 0.15);
  const compression: Request["compression"] =
    protocol !== "connect-get" && chance(rng, 0.06)
      ? { name: pick(rng, ["gzip", "br"] as const), damage: pick(rng, ["none", "none", "truncate", "flip", "garbage"] as const), at: rng() }
      : undefined;
  if (protocol === "connect-json") {
    const seedJson = toJson(schema as DescMessage, message as never, { useProtoFieldName: chance(rng, 0.5) }) as Record<string, JsonValue>;
    const body = valid ? JSON.stringify(seedJson) : chance(rng, 0.08) ? JSON.stringify(randomJson(rng)) : mutateJson(rng, seedJson, schema);
    return { target, protocol, timeoutMs, body, contentType: "application/json", compression };
  }
  const binary = toBinary(schema as DescMessage, message as never);
  const body = valid ? binary : mutateBytes(rng, binary, schema);
  if (protocol === "connect-get" && chance(rng, 0.5)) {
    const seedJson = toJson(schema as DescMessage, message as never) as Record<string, JsonValue>;
    return { target, protocol, timeoutMs, body: valid ? JSON.stringify(seedJson) : mutateJson(rng, seedJson, schema), contentType: "json" };
  }
  return { target, protocol, timeoutMs, body, contentType: protocol === "connect-get" ? "proto" : "application/proto", compression };
}

/** The payload compressed as the request says, then damaged as it says. */
function compressed(payload: Uint8Array, compression: NonNullable<Request["compression"]>): Uint8Array {
  if (compression.damage === "garbage") return Uint8Array.from({ length: 1 + Math.floor(compression.at * 40) }, (_, i) => (i * 131 + 7) & 0xff);
  const bytes = new Uint8Array(
    compression.name === "gzip" ? gzipSync(payload, { level: 1 }) : brotliCompressSync(payload, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 1 } }),
  );
  const at = Math.floor(compression.at * bytes.length);
  if (compression.damage === "truncate") return bytes.subarray(0, at);
  if (compression.damage === "flip" && bytes.length > 0) bytes[at] = (bytes[at] ?? 0) ^ 0x5a;
  return bytes;
}

/** CPU seconds a process has used so far (Linux), or NaN. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Most envelopes are honest; some claim compression, lie about their length, or carry a second message. */
function lyingEnvelope(payload: Uint8Array, salt: number): Uint8Array {
  const rng = prng(payload.length * 7919 + salt);
  if (rng() < 0.88) return envelope(payload);
  return pick(rng, [
    () => envelope(payload, 1),
    () => envelope(payload, 0x80 | int(rng, 0x80)),
    () => envelope(payload).subarray(0, 5 + int(rng, payload.length + 1)),
    () => concat(envelope(payload), envelope(payload)),
    () => new Uint8Array([0, 0xff, 0xff, 0xff, 0xff]),
  ])();
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const clientTimeoutMs = 30_000;

/** Connect code names as they appear in error JSON, by gRPC status number. */
const codeNames = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied",
  "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
];

async function send(request: Request, h2: () => http2.ClientHttp2Session): Promise<Outcome> {
  if (request.protocol === "grpc") return sendGrpc(request, h2());
  const { target } = request;
  const headers: Record<string, string> = {};
  if (request.contentType) headers["content-type"] = request.contentType;
  if (request.timeoutMs !== undefined) headers["connect-timeout-ms"] = String(request.timeoutMs);
  let url: string;
  let method = "POST";
  let body: Uint8Array | string | undefined = request.body;
  const streaming = target.method?.methodKind === "server_streaming";
  if (request.protocol === "rest") {
    url = `${server.url}/workflows/runs${request.restId === undefined ? "" : `/${request.restId}`}`;
    if (request.restId !== undefined) {
      method = "GET";
      body = undefined;
    }
  } else if (request.protocol === "connect-get") {
    const message =
      request.contentType === "json" ? percentEncode(request.body as string) : Buffer.from(request.body as Uint8Array).toString("base64url");
    url = `${server.url}/${target.method?.parent.typeName}/${target.method?.name}?connect=v1&encoding=${request.contentType}&message=${message}${request.contentType === "json" ? "" : "&base64=1"}`;
    method = "GET";
    body = undefined;
    delete headers["content-type"];
  } else {
    url = `${server.url}/${target.method?.parent.typeName}/${target.method?.name}`;
    const bytes = typeof body === "string" ? encoder.encode(body) : body;
    if (streaming) {
      headers["content-type"] = request.protocol === "connect-json" ? "application/connect+json" : "application/connect+proto";
      if (request.compression) {
        headers["connect-content-encoding"] = request.compression.name;
        body = envelope(compressed(bytes, request.compression), 1);
      } else {
        body = lyingEnvelope(bytes, request.timeoutMs ?? 0);
      }
    } else if (request.compression) {
      headers["content-encoding"] = request.compression.name;
      body = compressed(bytes, request.compression);
    }
  }
  let response: Response;
  let bytes: Uint8Array;
  try {
    response = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(clientTimeoutMs) });
    bytes = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    return { code: (error as Error).name === "TimeoutError" ? "client_timeout" : `network(${(error as Error).message})` };
  }
  if (streaming && response.status === 200) {
    // Envelopes; the last one (flag 0b10) ends the stream, with an error or without.
    let offset = 0;
    let code = "ok";
    while (offset + 5 <= bytes.length) {
      const flags = bytes[offset] ?? 0;
      const length = new DataView(bytes.buffer, bytes.byteOffset + offset + 1, 4).getUint32(0);
      const framed = bytes.subarray(offset + 5, offset + 5 + length);
      // A compressed envelope (flag 0b01) is in the stream's connect-content-encoding, as the request's.
      const encoding = response.headers.get("connect-content-encoding");
      const payload = flags & 0b01 ? (encoding === "br" ? brotliDecompressSync(framed) : gunzipSync(framed)) : framed;
      if (flags & 0b10) {
        const end = JSON.parse(decoder.decode(payload)) as { error?: { code?: string } };
        code = end.error?.code ?? "ok";
      }
      offset += 5 + length;
    }
    return { code };
  }
  if (response.status !== 200) {
    try {
      const error = JSON.parse(decoder.decode(bytes)) as { code?: string };
      if (typeof error.code === "string") return { code: error.code };
    } catch {
      // not an error JSON
    }
    return { code: `http_${response.status}` };
  }
  const outcome: Outcome = { code: "ok" };
  if (target.method === W.createRun || target.method === W.forkRun || target.name.startsWith("REST POST")) {
    if (request.protocol === "connect-proto") {
      const reply = fromBinary(target.method === W.forkRun ? ForkRunResponseSchema : CreateRunResponseSchema, bytes) as { deduplicated?: boolean; run?: { runId: string } };
      if (!reply.deduplicated) outcome.createdRunId = reply.run?.runId;
    } else {
      const reply = JSON.parse(decoder.decode(bytes)) as { run?: { runId?: string; run_id?: string }; deduplicated?: boolean };
      if (!reply.deduplicated) outcome.createdRunId = reply.run?.runId ?? reply.run?.run_id;
    }
  } else if (target.method === W.sendEvent) {
    if (request.protocol === "connect-proto") {
      const reply = fromBinary(SendEventResponseSchema, bytes);
      if (!reply.deduplicated) outcome.createdEventId = reply.eventId;
    } else {
      const reply = JSON.parse(decoder.decode(bytes)) as { eventId?: string; deduplicated?: boolean };
      if (!reply.deduplicated) outcome.createdEventId = reply.eventId;
    }
  }
  return outcome;
}

function sendGrpc(request: Request, session: http2.ClientHttp2Session): Promise<Outcome> {
  const { target } = request;
  return new Promise((resolve) => {
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": `/${target.method?.parent.typeName}/${target.method?.name}`,
      "content-type": "application/grpc",
      te: "trailers",
    };
    if (request.timeoutMs !== undefined) headers["grpc-timeout"] = `${request.timeoutMs}m`;
    if (request.compression) headers["grpc-encoding"] = request.compression.name;
    let status: string | undefined;
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers);
    } catch (error) {
      finish({ code: `network(${(error as Error).message})` });
      return;
    }
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      finish({ code: "client_timeout" });
    }, clientTimeoutMs);
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    };
    let responseEncoding: string | undefined;
    stream.on("response", (h) => {
      take(h);
      responseEncoding = h["grpc-encoding"] as string | undefined;
      if (h[":status"] !== 200) status ??= `http_${h[":status"]}`;
    });
    stream.on("trailers", take);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (error) => finish({ code: `network(${error.message})` }));
    stream.on("close", () => {
      if (status === undefined) return finish({ code: "network(no grpc-status)" });
      if (status.startsWith("http_")) return finish({ code: status });
      const code = codeNames[Number(status)] ?? `grpc_${status}`;
      const outcome: Outcome = { code };
      if (code === "ok" && (target.method === W.createRun || target.method === W.forkRun || target.method === W.sendEvent)) {
        const data = Buffer.concat(chunks);
        const framed = data.subarray(5, 5 + data.readUInt32BE(1));
        // The server answers in the request's grpc-encoding when the reply is large enough to compress.
        const message = data[0] === 1 ? (responseEncoding === "br" ? brotliDecompressSync(framed) : gunzipSync(framed)) : framed;
        if (target.method === W.createRun || target.method === W.forkRun) {
          const reply = fromBinary(target.method === W.forkRun ? ForkRunResponseSchema : CreateRunResponseSchema, message) as { deduplicated?: boolean; run?: { runId: string } };
          if (!reply.deduplicated) outcome.createdRunId = reply.run?.runId;
        } else {
          const reply = fromBinary(SendEventResponseSchema, message);
          if (!reply.deduplicated) outcome.createdEventId = reply.eventId;
        }
      }
      finish(outcome);
    });
    const payload = typeof request.body === "string" ? encoder.encode(request.body) : request.body;
    stream.end(Buffer.from(request.compression ? envelope(compressed(payload, request.compression), 1) : lyingEnvelope(payload, request.timeoutMs ?? 0)));
  });
}

// ---------------------------------------------------------------- the run

test(`fuzz: ${count} inputs across every RPC and the REST routes (seed ${seed})`, async () => {
  diagnostic(`fuzz seed ${seed}: reproduce with FUZZ_SEED=${seed} FUZZ_COUNT=${count}`);
  console.log(`fuzz seed ${seed}: reproduce with FUZZ_SEED=${seed} FUZZ_COUNT=${count}`);

  // A few runs to aim at, so GetRun, WatchRun, CancelRun, SendEvent(run_id) reach past "not found".
  const sdk = createClient(WorkflowService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
  const expectedRuns = new Set<string>();
  for (const [i, name] of [...workflowNames, ...workflowNames].entries()) {
    const { run } = await sdk.createRun({ workflowName: name, input: valueFromJson(name === "fuzz_typed" ? { name: "seed", count: i } : { key: "k0" }) });
    knownRunIds.push(run?.runId ?? "");
    expectedRuns.add(run?.runId ?? "");
  }
  knownRunIds = knownRunIds.sort();

  let session: http2.ClientHttp2Session | undefined;
  const h2 = () => {
    if (!session || session.closed || session.destroyed) {
      session = http2.connect(server.url);
      session.on("error", () => undefined);
    }
    return session;
  };

  const codes = new Map<string, number>();
  const byTarget = new Map<string, Map<string, number>>();
  const expectedEvents = new Set<string>();
  const bad: string[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let index = next++; index < count; index = next++) {
        const rng = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
        const request = buildRequest(rng);
        const outcome = await send(request, h2);
        codes.set(outcome.code, (codes.get(outcome.code) ?? 0) + 1);
        const perTarget = byTarget.get(request.target.name) ?? new Map<string, number>();
        perTarget.set(outcome.code, (perTarget.get(outcome.code) ?? 0) + 1);
        byTarget.set(request.target.name, perTarget);
        if (outcome.createdRunId) expectedRuns.add(outcome.createdRunId);
        if (outcome.createdEventId) expectedEvents.add(outcome.createdEventId);
        const wrong =
          outcome.code === "internal" ||
          outcome.code === "unknown" ||
          outcome.code === "http_500" ||
          outcome.code === "client_timeout" ||
          outcome.code.startsWith("network") ||
          outcome.code.startsWith("grpc_");
        if (wrong && bad.length < 20) {
          const body = typeof request.body === "string" ? JSON.stringify(request.body.slice(0, 200)) : Buffer.from(request.body).toString("hex").slice(0, 200);
          bad.push(`#${index} ${request.target.name} over ${request.protocol}${request.timeoutMs ? ` (timeout ${request.timeoutMs} ms)` : ""}: ${outcome.code}; body ${body}${request.restId ? ` id ${request.restId.slice(0, 80)}` : ""}`);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const clientCpu = process.cpuUsage();
  const serverCpu = cpuSeconds(server.pid);
  session?.close();

  const table = [...codes.entries()].sort((a, b) => b[1] - a[1]);
  const lines = [
    `fuzz: ${count} inputs in ${seconds.toFixed(1)} s (${Math.round(count / seconds)}/s), seed ${seed}; CPU: fuzzer ${((clientCpu.user + clientCpu.system) / 1e6).toFixed(1)} s, server ${serverCpu.toFixed(1)} s`,
    "  code                      count",
    ...table.map(([code, n]) => `  ${code.padEnd(24)} ${String(n).padStart(6)}`),
    ...(codes.has("internal") ? [] : [`  ${"internal".padEnd(24)} ${"0".padStart(6)}`]),
    "  by target:",
    ...[...byTarget.entries()].map(([name, m]) => `    ${name.padEnd(34)} ${[...m.entries()].map(([c, n]) => `${c} ${n}`).join(", ")}`),
  ];
  console.log(lines.join("\n"));
  for (const line of lines) diagnostic(line);

  assert.equal(bad.length, 0, `server faults for client input (seed ${seed}):\n${bad.join("\n")}`);
  assert.equal(codes.get("internal") ?? 0, 0);
  assert.ok((codes.get("ok") ?? 0) > count / 20, "too few valid requests got through: the fuzzer is not reaching the services");
  assert.ok((codes.get("invalid_argument") ?? 0) > count / 4, "too few requests were refused as invalid");
  assert.ok((codes.get("deadline_exceeded") ?? 0) > 0, "no long poll or stream ended at its deadline");

  // The process never crashed and still answers, and a valid run still completes.
  assert.equal(server.hasExited(), false, `the server exited during the fuzz:\n${server.logs().slice(-4000)}`);
  const health = await fetch(`${server.url}/grpc.health.v1.Health/Check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  assert.deepEqual(await health.json(), { status: "SERVING" });
  const { run } = await sdk.createRun({ workflowName: "fuzz_echo", input: valueFromJson({ value: "after" }), eagerStart: true });
  expectedRuns.add(run?.runId ?? "");
  for (const deadline = Date.now() + 30_000; ; ) {
    const { run: now } = await sdk.getRun({ runId: run?.runId ?? "" });
    if (now?.status === RunStatus.COMPLETED) break;
    assert.ok(Date.now() < deadline, `the run after the fuzz did not complete (status ${now?.status})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  // Nothing the server logged as an internal error, and no handler crashed.
  const faults = server.logRecords().filter((r) => r.msg === "internal error" || r.msg === "REST route failed");
  assert.deepEqual(faults.map((r) => JSON.stringify(r).slice(0, 500)), []);
  assert.doesNotMatch(server.logs(), /handler for rpc .* failed/);

  // Only whole, valid rows; exactly the runs and events whose creation was answered OK.
  await withClient(database.url, async (pg) => {
    const invalidRuns = await pg.query(
      `select id, workflow_name, status, jsonb_typeof(input) as input_type from runs
       where workflow_name <> all($1::text[]) or status::text <> all($2::text[]) or jsonb_typeof(input) <> 'object'`,
      [workflowNames, ["queued", "running", "waiting", "paused", "completed", "failed", "cancelled"]],
    );
    assert.deepEqual(invalidRuns.rows, []);
    const orphans = await pg.query("select count(*)::int as n from journal_entries j where not exists (select 1 from runs r where r.id = j.run_id)");
    assert.equal(orphans.rows[0].n, 0, "journal entries without a run");
    const blankEvents = await pg.query("select count(*)::int as n from events where btrim(event_type) = ''");
    assert.equal(blankEvents.rows[0].n, 0, "events with an empty type");
    const runs = await pg.query("select id from runs");
    assert.deepEqual(new Set(runs.rows.map((r: { id: string }) => r.id)), expectedRuns, "runs in the database vs runs created OK");
    const events = await pg.query("select id from events");
    assert.deepEqual(new Set(events.rows.map((r: { id: string }) => r.id)), expectedEvents, "events in the database vs events sent OK");
    diagnostic(`database: ${runs.rows.length} runs, ${events.rows.length} events, all valid`);
  });
});
