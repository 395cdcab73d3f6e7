/**
 * The API key is checked before a body is read (CAIRN_AUTH=keys): a caller without a valid key that declares a
 * 5 MB body and sends one byte of it is refused at once, in its protocol's wire format, over Connect on HTTP/1.1
 * and HTTP/2, gRPC (h2), gRPC-Web and REST; the server drops the connection (HTTP/1.1) or resets the stream with
 * NO_ERROR (HTTP/2) instead of waiting for the rest. Without the gate the server waits for the body (up to the
 * request deadline) before it answers, so these tests fail. Valid keys keep working on every protocol, a call's
 * key is verified once (the gate hands it to the interceptor), and health stays open without a key.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, test, vi } from "vitest";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../sdk/gen/grpc/health/v1/health_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { KeyCache } from "../../server/auth/key-cache.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";
import { scrape } from "../support/prometheus-text.js";

const declared = 5 * 1024 * 1024;
/** The server must answer long before this; without the gate it waits for the body until this deadline (408). */
const requestTimeoutMs = 20_000;
/** "Promptly": the gate answers from the headers; anything near the request deadline means the body was awaited. */
const promptMs = 3000;

let server: CairnServer;
let dropDatabase: () => Promise<void>;
let goodKey: string;
let adminKey: string;
const badKey = generateApiKey().key;

beforeAll(async () => {
  const database = await createTestDatabase("key_gate");
  dropDatabase = database.drop;
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    CAIRN_AUTH: "keys",
    WORKFLOW_DIRS: "test/fixtures/auth-workflows",
    CAIRN_REQUEST_TIMEOUT_MS: String(requestTimeoutMs),
    // The flood of refusals below must all be answered UNAUTHENTICATED, not cut short by the per-peer limit.
    CAIRN_AUTH_FAILURE_RPS: "0",
  }));
  const generated = generateApiKey();
  await insertApiKey(server.database.db, { id: generated.id, namespace: "default", role: "client", secretHash: generated.secretHash, name: "gate test" });
  goodKey = generated.key;
  const admin = generateApiKey();
  await insertApiKey(server.database.db, { id: admin.id, namespace: "default", role: "admin", secretHash: admin.secretHash, name: "gate metrics" });
  adminKey = admin.key;
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

afterEach(() => {
  vi.restoreAllMocks();
});

interface RawAnswer {
  ms: number;
  said: string;
  /** Whether the server closed the connection (within the guard). */
  closed: boolean;
}

/** Raw HTTP/1.1: the request head, then one byte of the declared body; what the server says and whether it closes. */
function http1Refusal(path: string, headers: Record<string, string>): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const started = Date.now();
    let said = "";
    let answeredAt = 0;
    const head = [`POST ${path} HTTP/1.1`, `Host: 127.0.0.1:${server.port}`, `Content-Length: ${declared}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    const socket = net.connect(server.port, "127.0.0.1", () => socket.write(`${head.join("\r\n")}\r\n\r\n{`));
    socket.setEncoding("latin1").on("data", (chunk: string) => {
      said += chunk;
      answeredAt ||= Date.now();
    });
    socket.on("error", () => {});
    const guard = setTimeout(() => {
      socket.destroy();
      resolve({ ms: (answeredAt || Date.now()) - started, said, closed: false });
    }, promptMs + 2000);
    socket.on("close", () => {
      clearTimeout(guard);
      resolve({ ms: (answeredAt || Date.now()) - started, said, closed: true });
    });
  });
}

interface H2Answer {
  ms: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  /** The stream's close code (0: NO_ERROR). */
  rstCode: number | undefined;
}

/** HTTP/2: the request headers, then one byte of the body (the stream stays open); the whole answer. */
function h2Refusal(path: string, headers: Record<string, string>, firstBytes: Uint8Array = Buffer.from("{")): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    stream.write(firstBytes);
    let answer: Omit<H2Answer, "rstCode" | "body" | "trailers"> | undefined;
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (answer = { ms: Date.now() - started, headers: h }));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", () => {});
    const guard = setTimeout(() => {
      session.destroy();
      reject(new Error(`no complete answer within ${promptMs + 2000} ms; headers ${JSON.stringify(answer?.headers)}`));
    }, promptMs + 2000);
    stream.on("close", () => {
      clearTimeout(guard);
      session.close();
      if (!answer) return reject(new Error(`the stream closed without an answer (code ${stream.rstCode})`));
      resolve({ ...answer, trailers, body: Buffer.concat(chunks), rstCode: stream.rstCode });
    });
  });
}

describe("a big body with a bad key is refused before it is read", () => {
  test("Connect over HTTP/1.1: 401 with Connect error JSON, and the connection is closed", async () => {
    for (const key of [undefined, badKey]) {
      const answer = await http1Refusal("/cairn.v1.WorkflowService/CreateRun", {
        "Content-Type": "application/json",
        "Connect-Protocol-Version": "1",
        ...(key ? { "X-Api-Key": key } : {}),
      });
      assert.match(answer.said, /^HTTP\/1\.1 401 /, answer.said);
      assert.match(answer.said, /\r\nconnection: close\r\n/i);
      const body = JSON.parse(answer.said.slice(answer.said.indexOf("\r\n\r\n") + 4)) as { code: string; message: string };
      assert.equal(body.code, "unauthenticated");
      assert.match(body.message, key ? /is not valid/ : /missing API key/);
      assert.ok(answer.ms < promptMs, `answered after ${answer.ms} ms`);
      assert.ok(answer.closed, "the server closed the connection instead of waiting for the body");
    }
  });

  test("REST over HTTP/1.1: 401 with the REST error JSON, and the connection is closed", async () => {
    const answer = await http1Refusal("/workflows/runs", { "Content-Type": "application/json", Authorization: `Bearer ${badKey}` });
    assert.match(answer.said, /^HTTP\/1\.1 401 /, answer.said);
    assert.equal((JSON.parse(answer.said.slice(answer.said.indexOf("\r\n\r\n") + 4)) as { code: string }).code, "unauthenticated");
    assert.ok(answer.ms < promptMs, `answered after ${answer.ms} ms`);
    assert.ok(answer.closed);
  });

  test("gRPC-Web over HTTP/1.1: grpc-status 16 in the trailer frame", async () => {
    const answer = await http1Refusal("/cairn.v1.WorkflowService/CreateRun", { "Content-Type": "application/grpc-web+proto", "X-Api-Key": badKey });
    assert.match(answer.said, /^HTTP\/1\.1 200 /, answer.said);
    assert.match(answer.said, /grpc-status: ?16\r\n/);
    assert.ok(answer.ms < promptMs, `answered after ${answer.ms} ms`);
    assert.ok(answer.closed);
  });

  test("gRPC over HTTP/2: grpc-status 16 trailers-only, then the stream is reset with NO_ERROR", async () => {
    // A gRPC message prefix announcing 5 MB, and nothing more.
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(declared, 1);
    const answer = await h2Refusal("/cairn.v1.WorkflowService/CreateRun", { "content-type": "application/grpc", te: "trailers", "x-api-key": badKey }, prefix);
    assert.equal(answer.headers[":status"], 200);
    assert.equal(answer.headers["grpc-status"], "16");
    assert.match(decodeURIComponent(String(answer.headers["grpc-message"])), /is not valid/);
    assert.ok(answer.ms < promptMs, `answered after ${answer.ms} ms`);
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  });

  test("Connect over HTTP/2: 401, then the stream is reset with NO_ERROR", async () => {
    const answer = await h2Refusal("/cairn.v1.WorkflowService/CreateRun", {
      "content-type": "application/json",
      "content-length": String(declared),
      "connect-protocol-version": "1",
    });
    assert.equal(answer.headers[":status"], 401);
    assert.equal((JSON.parse(answer.body.toString("utf8")) as { code: string }).code, "unauthenticated");
    assert.ok(answer.ms < promptMs, `answered after ${answer.ms} ms`);
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  });

  test("REST over HTTP/2: 401, then the stream is reset with NO_ERROR", async () => {
    const answer = await h2Refusal("/workflows/runs", { "content-type": "application/json", "x-api-key": badKey });
    assert.equal(answer.headers[":status"], 401);
    assert.equal((JSON.parse(answer.body.toString("utf8")) as { code: string }).code, "unauthenticated");
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  });

  test("a Connect stream (WatchRuns) without a valid key ends with an end-stream error", async () => {
    const answer = await h2Refusal("/cairn.v1.WorkflowService/WatchRuns", { "content-type": "application/connect+json", "x-api-key": badKey }, Buffer.alloc(0));
    assert.equal(answer.headers[":status"], 200);
    assert.equal(answer.body[0], 0b10, "an end-stream envelope");
    const endStream = JSON.parse(answer.body.subarray(5).toString("utf8")) as { error: { code: string } };
    assert.equal(endStream.error.code, "unauthenticated");
  });
});

function withKey(key: string): Interceptor[] {
  return [
    (next) => (request) => {
      request.header.set("x-api-key", key);
      return next(request);
    },
  ];
}

describe("valid keys and open health", () => {
  test("a valid key works on Connect (HTTP/1.1 and h2), gRPC, gRPC-Web and REST, with a body well past the drain size, and is verified once per call", async () => {
    const verify = vi.spyOn(KeyCache.prototype, "verify");
    const input = valueFromJson({ n: 7, padding: "x".repeat(200 * 1024) } as never);
    const transports = {
      "connect h1": createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: withKey(goodKey) }),
      "connect h2": createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: withKey(goodKey) }),
      grpc: createGrpcTransport({ baseUrl: server.url, interceptors: withKey(goodKey) }),
      "grpc-web": createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: withKey(goodKey) }),
    };
    for (const [name, transport] of Object.entries(transports)) {
      const before = verify.mock.calls.length;
      const { run } = await createClient(WorkflowService, transport).createRun({ workflowName: "quick", input });
      assert.ok(run?.runId, name);
      assert.equal(verify.mock.calls.length - before, 1, `${name}: the key is verified once`);
    }
    const before = verify.mock.calls.length;
    const response = await fetch(`${server.url}/workflows/runs`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": goodKey },
      body: JSON.stringify({ workflow_name: "quick", input: { n: 1, padding: "y".repeat(200 * 1024) } }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    assert.ok(((await response.json()) as { run: { run_id: string } }).run.run_id);
    assert.equal(verify.mock.calls.length - before, 1, "REST: the key is verified once");
  });

  test("a refused small body keeps its HTTP/1.1 connection: the next call on it is answered", async () => {
    const answers = await new Promise<string>((resolve, reject) => {
      let said = "";
      const body = '{"workflowName":"quick"}';
      const request = (key: string) =>
        `POST /cairn.v1.WorkflowService/CreateRun HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Api-Key: ${key}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const socket = net.connect(server.port, "127.0.0.1", () => socket.write(request(badKey) + request(goodKey)));
      socket.setEncoding("latin1").on("data", (chunk: string) => {
        said += chunk;
        if ((said.match(/HTTP\/1\.1 /g) ?? []).length === 2 && said.endsWith("}")) {
          socket.destroy();
          resolve(said);
        }
      });
      socket.on("error", reject);
      setTimeout(() => reject(new Error(`incomplete: ${said}`)), 5000).unref();
    });
    const statuses = [...answers.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ["401", "200"]);
  });

  test("health needs no key (CAIRN_OPEN_HEALTH default) and unknown paths are still 404", async () => {
    const health = createClient(Health, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    const unknown = await fetch(`${server.url}/no.such.Service/Call`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(unknown.status, 404);
  });

  test("refusals at the gate are counted in cairn_rpc_requests_total under their procedure", async () => {
    const count = async () => {
      const families = await scrape(`${server.url}/metrics`, { "x-api-key": adminKey });
      const sample = families
        .get("cairn_rpc_requests_total")
        ?.metrics.find((m) => m.labels?.method === "cairn.v1.WorkflowService/GetRun" && m.labels?.code === "unauthenticated");
      return Number(sample?.value ?? 0);
    };
    const before = await count();
    const response = await fetch(`${server.url}/cairn.v1.WorkflowService/GetRun`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": badKey }, body: "{}" });
    assert.equal(response.status, 401);
    assert.equal((await count()) - before, 1);
  });

  test("a bad key through the SDK's clients is UNAUTHENTICATED on every protocol", async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: withKey(badKey) }),
      createGrpcTransport({ baseUrl: server.url, interceptors: withKey(badKey) }),
      createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: withKey(badKey) }),
    ]) {
      const client = createClient(WorkflowService, transport);
      await assert.rejects(client.createRun({ workflowName: "quick" }), (error: unknown) => ConnectError.from(error).code === Code.Unauthenticated);
      await assert.rejects(
        (async () => {
          for await (const _ of client.watchRuns({})) break;
        })(),
        (error: unknown) => ConnectError.from(error).code === Code.Unauthenticated,
      );
    }
  });
});
