// Streams a client resets (RST_STREAM) before they end. Node's HTTP/2 server closes a connection with
// INTERNAL_ERROR, failing every call on it, once its client has reset 1,000 streams in a burst (nghttp2's
// rapid-reset defence). What must hold:
// - the server counts the resets it receives (cairn_http2_client_resets_total), and not the streams it ended;
// - the SDK's watchRun reads a finished run's stream to its end, so a caller that stops at the final status
//   resets nothing: 1,100 such watches on one connection leave the counter where it was, and a long poll opened
//   on that connection before them is still open after them (a closed connection would have failed it);
// - against a peer that holds the end back, watchRun hands the final status over once the end came (no reset),
//   and cancels only when no end came within 2 s; a final status followed by a finished run's history is read to
//   the end as well.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, test } from "vitest";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromJson, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { EntryKind, RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WatchRunRequestSchema, WatchRunResponseSchema } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { type CairnClient, createCairnClient } from "../../sdk/index.js";
import type { CairnServer } from "../../server/app.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { scrape, valueOf } from "../support/prometheus-text.js";
import { envelope } from "../support/raw-http.js";

let database: TestDatabase;
let server: CairnServer;
let client: WorkflowClient;
let finishedRunId: string;
const resets = async () => valueOf(await scrape(`${server.url}/metrics`), "cairn_http2_client_resets_total");

async function parkedRun(): Promise<string> {
  const runId = (await client.createRun({ workflowName: "waiter", input: fromJson(ValueSchema, { type: "client.resets", key: randomUUID() }) })).run!.runId;
  for (;;) {
    const { run } = await client.getRun({ runId });
    if (run?.status === RunStatus.WAITING) return runId;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  database = await createTestDatabase("client_resets");
  ({ server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_MAX_STREAMS_PER_CALLER: "100000" }));
  finishedRunId = (await client.createRun({ workflowName: "sleeper", input: fromJson(ValueSchema, { ms: 1 }) })).run!.runId;
  await waitForEnd(client, finishedRunId);
});

afterAll(async () => {
  await server?.close();
  await database?.drop();
});

/** Watches a run until its final status, then stops, as a caller that only wants the end does. */
async function watchToFinal(sdk: CairnClient, runId: string, signal?: AbortSignal): Promise<string> {
  for await (const update of sdk.watchRun(runId, signal ? { signal } : {})) {
    if (update.type === "run" && ["completed", "failed", "cancelled"].includes(update.run.status)) return update.run.status;
  }
  throw new Error("the watch ended before the run did");
}

/** Opens WatchRun (Connect, binary) on a raw HTTP/2 session; resolves with the stream once the run's state came. */
function rawWatch(session: http2.ClientHttp2Session, runId: string): Promise<http2.ClientHttp2Stream> {
  const payload = toBinary(WatchRunRequestSchema, create(WatchRunRequestSchema, { runId }));
  const stream = session.request({ ":method": "POST", ":path": "/cairn.v1.WorkflowService/WatchRun", "content-type": "application/connect+proto" });
  stream.end(envelope(payload));
  return new Promise((resolve, reject) => {
    stream.once("data", () => resolve(stream));
    stream.once("error", reject);
  });
}

const closed = (stream: http2.ClientHttp2Stream) => new Promise((resolve) => (stream.closed ? resolve(undefined) : stream.once("close", resolve)));

describe("streams reset by the client", () => {
  test("are counted: each one the client cancels, not the ones the server ends", async () => {
    const parked = await parkedRun();
    const session = http2.connect(server.url);
    try {
      const before = await resets();
      // Read to the end: the server ends the stream of a finished run after its state.
      const finished = await rawWatch(session, finishedRunId);
      finished.resume();
      await closed(finished);
      assert.equal(finished.rstCode, http2.constants.NGHTTP2_NO_ERROR);
      // Cancelled while the run is parked: three resets.
      for (let i = 0; i < 3; i++) {
        const stream = await rawWatch(session, parked);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        await closed(stream);
      }
      // The server sees a reset when its frame arrives; give it that long.
      const deadline = Date.now() + 5_000;
      while ((await resets()) < before + 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await resets()) - before, 3);
    } finally {
      session.close();
      await client.cancelRun({ runId: parked, reason: "test over" });
    }
  });

  test("the SDK's watchRun resets none when the caller stops at the final status, and the connection lives on", async () => {
    const sdk = createCairnClient({ baseUrl: server.url, http2: true, retry: false });
    const parked = await parkedRun();
    // A long poll on the same connection, open for the whole loop: a connection closed by the server fails it.
    let longPollSettled: string | undefined;
    const longPoll = sdk.waitForResult(parked, { timeoutMs: 300_000 }).then(
      () => (longPollSettled = "ended"),
      (error: unknown) => (longPollSettled = `failed: ${String(error)}`),
    );
    const before = await resets();
    // More than the 1,000 resets a burst may hold, each watch opened before its run ends (the final status then
    // comes as its own message, a moment before the stream's end): with a reset per watch the connection would be
    // closed midway. 8 at a time.
    let next = 0;
    const watchers = Array.from({ length: 8 }, async () => {
      while (next < 1_100) {
        next++;
        const { runId } = await sdk.createRun("sleeper", { ms: 0 });
        assert.equal(await watchToFinal(sdk, runId), "completed");
      }
    });
    await Promise.all(watchers);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await resets()) - before, 0);
    assert.equal(longPollSettled, undefined);
    await client.cancelRun({ runId: parked, reason: "test over" });
    await longPoll;
    assert.match(longPollSettled ?? "", /cancel/i);
  }, 240_000);

  test("the SDK reads on to the end even when it comes after the final status or after history, and waits for it at most 2 s", async () => {
    // A server of our own making, to hold the end back: WatchRun answers a completed run, then ends the stream
    // `endAfterMs` later. It reports how each stream closed.
    const final = toBinary(WatchRunResponseSchema, create(WatchRunResponseSchema, { update: { case: "run", value: { runId: "r1", workflowName: "w", status: RunStatus.COMPLETED } } }));
    const entry = toBinary(WatchRunResponseSchema, create(WatchRunResponseSchema, { update: { case: "entry", value: { sequence: 1n, kind: EntryKind.RUN_COMPLETED } } }));
    let endAfterMs = 50;
    let history = 0;
    const closes: number[] = [];
    const peer = http2.createServer();
    const sessions = new Set<http2.ServerHttp2Session>();
    peer.on("session", (session) => sessions.add(session));
    peer.on("stream", (stream) => {
      stream.on("error", () => undefined);
      stream.once("close", () => closes.push(stream.rstCode));
      stream.respond({ ":status": 200, "content-type": "application/connect+proto" });
      stream.write(envelope(final));
      for (let i = 0; i < history; i++) stream.write(envelope(entry));
      const timer = setTimeout(() => stream.end(envelope(new TextEncoder().encode("{}"), 0b10)), endAfterMs);
      stream.once("close", () => clearTimeout(timer));
    });
    await new Promise<void>((resolve) => peer.listen(0, "127.0.0.1", resolve));
    const sdk = createCairnClient({ baseUrl: `http://127.0.0.1:${(peer.address() as AddressInfo).port}`, http2: true, useBinaryFormat: true, retry: false });
    try {
      const started = Date.now();
      assert.equal(await watchToFinal(sdk, "r1"), "completed");
      assert.ok(Date.now() - started >= 40, "the final status is handed over once the stream ended");
      // An end that never comes in time: the SDK stops waiting after 2 s and cancels, as it always did.
      endAfterMs = 60_000;
      const slow = Date.now();
      assert.equal(await watchToFinal(sdk, "r1"), "completed");
      assert.ok(Date.now() - slow < 5_000);
      // A finished run's history comes after its final status, then the end: read to the end too, nothing reset.
      history = 1;
      endAfterMs = 50;
      const seen: string[] = [];
      for await (const update of sdk.watchRun("r1")) {
        seen.push(update.type);
        if (update.type === "run") break;
      }
      assert.deepEqual(seen, ["run"]);
      // More history than the SDK holds back (1,000 messages): it hands over at once and streams the rest.
      history = 1_500;
      endAfterMs = 60_000;
      const longStarted = Date.now();
      for await (const update of sdk.watchRun("r1")) if (update.type === "run") break;
      assert.ok(Date.now() - longStarted < 1_500, "past 1,000 held messages the status is not held for the end");
      const deadline = Date.now() + 5_000;
      while (closes.length < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(closes, [http2.constants.NGHTTP2_NO_ERROR, http2.constants.NGHTTP2_CANCEL, http2.constants.NGHTTP2_NO_ERROR, http2.constants.NGHTTP2_CANCEL]);
    } finally {
      for (const session of sessions) session.destroy();
      await new Promise((resolve) => peer.close(resolve));
    }
  });
});
