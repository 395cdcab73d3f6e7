/**
 * The API port's deadlines and caps against slow and idle clients, with raw sockets and real HTTP/2 sessions
 * (no Connect client in between): half-sent HTTP/1.1 headers and bodies are answered 408 and closed, an
 * HTTP/2 session that opens no stream or goes idle is closed, a stream whose request never completes is
 * cancelled, streams per connection are announced and connections over the cap are dropped. Quiet long
 * streams (WatchRun on a waiting run) outlive every one of those deadlines, over HTTP/1.1 and HTTP/2.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, expect, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import type { CairnServer } from "../../server/app.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";
import { envelope } from "../support/raw-http.js";

const headersTimeoutMs = 500;
const requestTimeoutMs = 1000;
const idleTimeoutMs = 800;
const maxConnections = 40;

let server: CairnServer;
let sdk: CairnClient;
let dropDatabase: () => Promise<void>;
let port: number;

beforeAll(async () => {
  const database = await createTestDatabase("front_door");
  dropDatabase = database.drop;
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/wait-workflows",
    CAIRN_HEADERS_TIMEOUT_MS: String(headersTimeoutMs),
    CAIRN_REQUEST_TIMEOUT_MS: String(requestTimeoutMs),
    CAIRN_IDLE_TIMEOUT_MS: String(idleTimeoutMs),
    CAIRN_MAX_CONNECTIONS: String(maxConnections),
    CAIRN_MAX_STREAMS_PER_CONNECTION: "7",
  }));
  sdk = createCairnClient({ baseUrl: server.url });
  port = server.port;
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

/** Opens a socket, writes `bytes`, and resolves how long the server took to close it and what it said. */
function closedAfter(bytes: string | Buffer, limitMs = 5000): Promise<{ ms: number; said: string }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let said = "";
    const socket = net.connect(port, "127.0.0.1", () => socket.write(bytes));
    socket.setEncoding("latin1").on("data", (chunk: string) => (said += chunk));
    socket.on("error", () => {});
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${limitMs} ms; it said ${JSON.stringify(said)}`));
    }, limitMs);
    socket.on("close", () => {
      clearTimeout(guard);
      resolve({ ms: Date.now() - started, said });
    });
  });
}

test("HTTP/1.1: 30 connections sending half a header are answered 408 and closed at the header deadline", async () => {
  const outcomes = await Promise.all(
    Array.from({ length: 30 }, () => closedAfter("POST /cairn.v1.WorkflowService/GetRun HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")),
  );
  for (const { ms, said } of outcomes) {
    expect(said).toMatch(/^HTTP\/1\.1 408 /);
    expect(ms).toBeGreaterThanOrEqual(headersTimeoutMs - 50);
    expect(ms).toBeLessThan(headersTimeoutMs + 1500);
  }
});

test("HTTP/1.1: a body that stops halfway is answered 408 and closed at the request deadline", async () => {
  const { ms, said } = await closedAfter(
    "POST /cairn.v1.WorkflowService/GetRun HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"runId\":",
  );
  expect(said).toMatch(/^HTTP\/1\.1 408 /);
  expect(ms).toBeGreaterThanOrEqual(requestTimeoutMs - 50);
  expect(ms).toBeLessThan(requestTimeoutMs + 1500);
});

test("HTTP/2: a session that sends only the preface is closed at the header deadline", async () => {
  const { ms } = await closedAfter(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"));
  expect(ms).toBeGreaterThanOrEqual(headersTimeoutMs - 50);
  expect(ms).toBeLessThan(headersTimeoutMs + 2000);
});

function h2Session(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.once("remoteSettings", () => resolve(session));
    session.once("error", reject);
  });
}

test("HTTP/2: streams per connection are announced; a session left idle after its calls is closed", async () => {
  const session = await h2Session();
  expect(session.remoteSettings.maxConcurrentStreams).toBe(7);
  const answered = await new Promise<number>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": "/cairn.v1.WorkflowService/ListWorkflows", "content-type": "application/json" });
    stream.on("response", (headers) => resolve(Number(headers[":status"])));
    stream.on("error", reject);
    stream.end("{}");
    stream.resume();
  });
  expect(answered).toBe(200);
  const started = Date.now();
  await new Promise((resolve) => session.once("close", resolve));
  const ms = Date.now() - started;
  expect(ms).toBeGreaterThanOrEqual(idleTimeoutMs - 100);
  expect(ms).toBeLessThan(idleTimeoutMs + 2000);
});

test("HTTP/2: a stream whose request body never ends is cancelled at the request deadline; the session goes on", async () => {
  const session = await h2Session();
  const started = Date.now();
  const code = await new Promise<number>((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": "/cairn.v1.WorkflowService/GetRun", "content-type": "application/json" });
    stream.write('{"runId":');
    stream.on("error", () => {});
    stream.on("close", () => resolve(stream.rstCode ?? -1));
  });
  const ms = Date.now() - started;
  expect(code).toBe(http2.constants.NGHTTP2_CANCEL);
  expect(ms).toBeGreaterThanOrEqual(requestTimeoutMs - 50);
  expect(ms).toBeLessThan(requestTimeoutMs + 1500);
  expect(session.closed).toBe(false);
  session.destroy();
});

test("connections over CAIRN_MAX_CONNECTIONS are dropped at once; the port serves again when they go", async () => {
  const held: net.Socket[] = [];
  try {
    for (let i = 0; i < maxConnections; i++) {
      held.push(await new Promise<net.Socket>((resolve) => {
        const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
        socket.on("error", () => {});
      }));
    }
    // The server counts a connection once it accepted it: give the last ones a moment.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const { ms } = await closedAfter("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect(ms).toBeLessThan(headersTimeoutMs);
  } finally {
    for (const socket of held) socket.destroy();
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  const workflows = await sdk.listWorkflows();
  assert.ok(workflows.length > 0);
});

/** A WatchRun stream over Connect JSON: resolves once the first message arrived; `open()` tells whether it still is. */
async function quietWatch(version: "1.1" | "2", runId: string): Promise<{ open: () => boolean; stop: () => void }> {
  const body = Buffer.from(envelope(new TextEncoder().encode(JSON.stringify({ runId }))));
  const headers = { "content-type": "application/connect+json", "connect-protocol-version": "1" };
  let closed = false;
  if (version === "2") {
    const session = await h2Session();
    const stream = session.request({ ":method": "POST", ":path": "/cairn.v1.WorkflowService/WatchRun", ...headers });
    stream.on("error", () => {});
    stream.on("close", () => (closed = true));
    stream.end(body);
    await new Promise((resolve) => stream.once("data", resolve));
    return { open: () => !closed && !session.closed, stop: () => session.destroy() };
  }
  const request = http.request({ host: "127.0.0.1", port, method: "POST", path: "/cairn.v1.WorkflowService/WatchRun", headers });
  request.on("error", () => {});
  const response = await new Promise<http.IncomingMessage>((resolve) => {
    request.once("response", resolve);
    request.end(body);
  });
  response.on("close", () => (closed = true));
  await new Promise((resolve) => response.once("data", resolve));
  return { open: () => !closed, stop: () => request.destroy() };
}

test("a quiet WatchRun stream outlives the header, request and idle deadlines, over HTTP/1.1 and HTTP/2", async () => {
  const run = await sdk.createRun("waiter", { type: "front.door", key: "quiet" });
  const deadline = Date.now() + 10_000;
  while ((await sdk.getRun(run.runId)).status !== "waiting") {
    if (Date.now() > deadline) throw new Error("the run never parked");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const watches = await Promise.all([quietWatch("1.1", run.runId), quietWatch("2", run.runId)]);
  await new Promise((resolve) => setTimeout(resolve, requestTimeoutMs + idleTimeoutMs + 700));
  expect(watches.map((watch) => watch.open())).toEqual([true, true]);
  for (const watch of watches) watch.stop();
  await sdk.cancelRun(run.runId);
});

/** One HTTP/1.1 request with exactly these headers (fetch would set Host itself). */
function rawPost(path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: "127.0.0.1", port, method: "POST", path, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers } });
    request.on("response", (response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

test("open mode: a non-loopback Host (DNS rebinding) and a cross-site Origin are refused, and start nothing", async () => {
  const createRun = JSON.stringify({ workflowName: "waiter", input: { type: "front.door", key: "rebinding" } });
  const countRuns = async () => {
    let count = 0;
    for await (const _run of sdk.listRuns({ workflow: "waiter" })) count++;
    return count;
  };
  const before = await countRuns();
  const refused = [
    await rawPost("/cairn.v1.WorkflowService/CreateRun", { host: `rebind.attacker.example:${port}` }, createRun),
    await rawPost("/workflows/runs", { host: `rebind.attacker.example:${port}` }, JSON.stringify({ workflow_name: "waiter", input: { type: "t", key: "k" } })),
    await rawPost("/cairn.v1.WorkflowService/CreateRun", { host: `127.0.0.1:${port}`, origin: "https://evil.example" }, createRun),
    await rawPost("/cairn.v1.WorkflowService/CreateRun", { host: `127.0.0.1:${port}`, origin: "null" }, createRun),
  ];
  for (const response of refused) {
    expect(response.status).toBe(403);
    expect(JSON.parse(response.body)).toMatchObject({ code: "permission_denied" });
  }
  expect(JSON.parse(refused[0]!.body).message).toMatch(/Host "rebind\.attacker\.example:\d+" is not a loopback name/);
  expect(JSON.parse(refused[2]!.body).message).toMatch(/Origin "https:\/\/evil\.example" may not call this server/);

  // The same over HTTP/2, by :authority.
  const session = await h2Session();
  const status = await new Promise<number>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": "/cairn.v1.WorkflowService/CreateRun", ":authority": "rebind.attacker.example", "content-type": "application/json" });
    stream.on("response", (headers) => resolve(Number(headers[":status"])));
    stream.on("error", reject);
    stream.end(createRun);
    stream.resume();
  });
  session.destroy();
  expect(status).toBe(403);
  expect(await countRuns()).toBe(before);

  // Loopback names and origins pass: localhost, 127.0.0.1, [::1], and a page on a loopback origin.
  const passing: Record<string, string>[] = [{ host: `localhost:${port}` }, { host: `127.0.0.1:${port}` }, { host: `[::1]:${port}` }, { host: `127.0.0.1:${port}`, origin: "http://localhost:5173" }];
  for (const headers of passing) {
    const response = await rawPost("/cairn.v1.WorkflowService/ListWorkflows", headers, "{}");
    expect(response.status, JSON.stringify(headers)).toBe(200);
  }
});
