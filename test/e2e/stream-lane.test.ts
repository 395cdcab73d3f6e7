// The stream lane (server/http/stream-lane.ts) against the Connect adapter it stands in front of.
// Each test sends the same WatchRun bytes over raw HTTP/2 (and, for Connect, HTTP/1.1) to a server with the lane on and to one with it off
// (CAIRN_STREAM_LANE=off), both on one database, and compares what comes back byte for byte: status, headers (all
// but Date), the response stream (every envelope, the end-stream message) and gRPC's trailers. The runs watched
// are finished or parked, so both servers stream the same bytes. Every comparison also checks who answered: the
// lane server's counter must move for requests the lane takes and stay put for those it leaves to the adapter.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, test } from "vitest";
import { fromBinary, fromJson, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WatchRunRequestSchema, WatchRunResponseSchema } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { envelope, type HttpVersion, rawExchange, type RawOutcome, type RawRequest, type RawResponse } from "../support/raw-http.js";

let database: TestDatabase;
interface Pair {
  lane: CairnServer;
  generic: CairnServer;
  client: WorkflowClient;
}
let open: Pair;
/** One stream per caller (open mode counts per peer address). */
let capped: Pair;
const servers: CairnServer[] = [];
let finishedRunId: string;
let parkedRunId: string;

async function startPair(env: Record<string, string>): Promise<Pair> {
  const base = { DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", ...env };
  const lane = (await startTestServer({ ...base, CAIRN_STREAM_LANE: "on" })).server;
  const { server: generic, client } = await startTestServer({ ...base, CAIRN_STREAM_LANE: "off" });
  servers.push(lane, generic);
  return { lane, generic, client };
}

beforeAll(async () => {
  database = await createTestDatabase("stream_lane");
  open = await startPair({});
  capped = await startPair({ CAIRN_MAX_STREAMS_PER_CALLER: "1" });
  const client = open.client;
  // A run with a few entries that has ended, and one parked on an event nobody sends.
  finishedRunId = (await client.createRun({ workflowName: "sleeper", input: fromJson(ValueSchema, { ms: 1 }) })).run!.runId;
  await waitForEnd(client, finishedRunId);
  parkedRunId = (await client.createRun({ workflowName: "waiter", input: fromJson(ValueSchema, { type: "stream.lane", key: randomUUID() }) })).run!.runId;
  for (;;) {
    const { run } = await client.getRun({ runId: parkedRunId });
    if (run?.status === RunStatus.WAITING) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

afterAll(async () => {
  for (const server of servers) await server.close();
  await database?.drop();
});

const protocols = {
  "connect+proto": { "content-type": "application/connect+proto" },
  "connect+json": { "content-type": "application/connect+json" },
  grpc: { "content-type": "application/grpc", te: "trailers" },
} as const;
type Protocol = keyof typeof protocols;

function watch(protocol: Protocol, message: JsonValue, extra: { headers?: Record<string, string>; body?: Uint8Array } = {}): RawRequest {
  const payload = protocol === "connect+json" ? new TextEncoder().encode(JSON.stringify(message)) : toBinary(WatchRunRequestSchema, fromJson(WatchRunRequestSchema, message));
  return {
    path: "/cairn.v1.WorkflowService/WatchRun",
    headers: { ...protocols[protocol], ...extra.headers },
    body: extra.body ?? envelope(payload),
  };
}

function response(outcome: RawOutcome): RawResponse {
  assert.ok(!("broken" in outcome), `the exchange broke off: ${"broken" in outcome ? outcome.broken : ""}`);
  return outcome;
}

function withoutDate(r: RawResponse): RawResponse {
  const { date: _, ...headers } = r.headers;
  return { ...r, headers };
}

/** Sends the request to both servers; the lane server's lane must have taken it (or not); both answers must be equal. */
const assertSame = (pair: Pair, request: RawRequest, taken = true) => assertSameOver(pair, request, taken, "2");

async function assertSameOver(pair: Pair, request: RawRequest, taken = true, over: HttpVersion = "2"): Promise<RawResponse> {
  const before = pair.lane.streamLaneCalls();
  const viaLane = response(await rawExchange(pair.lane.url, over, request));
  assert.equal(pair.lane.streamLaneCalls() - before, taken ? 1 : 0, taken ? "the lane should have answered" : "the lane should have left this to the adapter");
  const viaAdapter = response(await rawExchange(pair.generic.url, over, request));
  assert.equal(pair.generic.streamLaneCalls(), 0);
  assert.deepEqual(withoutDate(viaLane), withoutDate(viaAdapter));
  return viaLane;
}

/** The envelopes of a response body: flags and payload. */
function envelopes(body: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let offset = 0; offset + 5 <= body.byteLength; ) {
    const length = body.readUInt32BE(offset + 1);
    out.push({ flags: body[offset]!, payload: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return out;
}

function endStream(r: RawResponse): { error?: { code: string; message: string } } {
  const last = envelopes(r.body).at(-1);
  assert.ok(last && (last.flags & 0b10) !== 0, "the stream should end with an end-stream message");
  const payload = (last.flags & 1) !== 0 ? gunzipSync(last.payload) : last.payload;
  return JSON.parse(payload.toString("utf8")) as { error?: { code: string; message: string } };
}

describe("WatchRun through the lane and through the adapter", () => {
  for (const [protocol, over] of [
    ...(Object.keys(protocols) as Protocol[]).map((p) => [p, "2"] as const),
    // fetch and browsers hold their streams over HTTP/1.1: Connect there, one request per stream (gRPC needs HTTP/2).
    ["connect+proto", "1.1"] as const,
    ["connect+json", "1.1"] as const,
  ]) {
    const assertSame = (pair: Pair, request: RawRequest, taken = true) => assertSameOver(pair, request, taken, over);
    const openStream = (server: CairnServer, request: RawRequest) => openStreamOver(server, request, over);
    const exchange = (server: CairnServer, request: RawRequest) => rawExchange(server.url, over, request);
    describe(`${protocol} over HTTP/${over}`, () => {
      test("a run that has ended: its snapshot, its entries, the end", async () => {
        const r = await assertSame(open, watch(protocol, { runId: finishedRunId }));
        const frames = envelopes(r.body);
        if (protocol === "grpc") {
          assert.equal(r.trailers?.["grpc-status"], "0");
          assert.ok(frames.length >= 2);
          assert.equal(fromBinary(WatchRunResponseSchema, frames[0]!.payload).update.case, "run");
        } else {
          assert.ok(frames.length >= 3);
          assert.equal(endStream(r).error, undefined);
        }
      });

      test("NOT_FOUND", async () => {
        const r = await assertSame(open, watch(protocol, { runId: randomUUID() }));
        if (protocol === "grpc") assert.equal(r.trailers?.["grpc-status"], "5");
        else assert.equal(endStream(r).error?.code, "not_found");
      });

      test("bad requests: a run id that is no uuid, no message, two messages, an incomplete envelope, undecodable bytes, a compressed flag without an encoding, and more", async () => {
        const valid = watch(protocol, { runId: finishedRunId }).body as Uint8Array;
        const bodies = [
          (watch(protocol, { runId: "not-a-uuid" }).body as Uint8Array),
          new Uint8Array(0),
          Buffer.concat([valid, valid]),
          valid.subarray(0, valid.byteLength - 2),
          envelope(new Uint8Array([0xff, 0xff, 0xff])),
          envelope(valid.subarray(5), 0b01),
          // A length past the read limit, a valid message then a few stray bytes, a message then an empty one; for
          // Connect, an end-stream flag on a request (gRPC defines only the compressed bit: both ignore it); for JSON,
          // bytes that are no JSON and a field of the wrong type.
          (() => {
            const head = new Uint8Array(5);
            new DataView(head.buffer).setUint32(1, 0x7fff_ffff);
            return head;
          })(),
          Buffer.concat([valid, new Uint8Array([0, 0, 0])]),
          Buffer.concat([valid, envelope(new Uint8Array(0))]),
          ...(protocol === "grpc" ? [] : [envelope(valid.subarray(5), 0b10)]),
          ...(protocol === "connect+json" ? [envelope(new TextEncoder().encode("{runId:")), envelope(new TextEncoder().encode(JSON.stringify({ runId: 42 })))] : []),
        ];
        for (const body of bodies) {
          const r = await assertSame(open, watch(protocol, {}, { body }));
          if (protocol === "grpc") assert.notEqual(r.trailers?.["grpc-status"], "0");
          else assert.ok(endStream(r).error);
        }
      });

      test("a body that arrives in two parts: one message, and 100 ms later a second one or the rest of the first", async () => {
        const valid = watch(protocol, { runId: finishedRunId }).body as Uint8Array;
        for (const [body, bytes] of [
          [Buffer.concat([valid, valid]), valid.byteLength],
          [Buffer.from(valid), 3],
          [Buffer.from(valid), valid.byteLength - 1],
        ] as const) {
          const r = await assertSame(open, { ...watch(protocol, {}, { body }), pause: { bytes, ms: 100 } });
          const ok = body.byteLength === valid.byteLength;
          if (protocol === "grpc") assert.equal(r.trailers?.["grpc-status"] === "0", ok);
          else assert.equal(endStream(r).error === undefined, ok);
        }
      });

      test("a deadline that passes while the run is parked: the snapshot, then DEADLINE_EXCEEDED", async () => {
        const headers: Record<string, string> = protocol === "grpc" ? { "grpc-timeout": "300m" } : { "connect-timeout-ms": "300" };
        const r = await assertSame(open, watch(protocol, { runId: parkedRunId }, { headers }));
        if (protocol === "grpc") assert.equal(r.trailers?.["grpc-status"], "4");
        else assert.equal(endStream(r).error?.code, "deadline_exceeded");
        const malformed: Record<string, string> = protocol === "grpc" ? { "grpc-timeout": "soon" } : { "connect-timeout-ms": "soon" };
        await assertSame(open, watch(protocol, { runId: parkedRunId }, { headers: malformed }));
      });

      test("compression as negotiated: gzip for envelopes of 1 KiB and more", async () => {
        const headers: Record<string, string> = protocol === "grpc" ? { "grpc-accept-encoding": "gzip" } : { "connect-accept-encoding": "gzip" };
        await assertSame(open, watch(protocol, { runId: finishedRunId }, { headers }));
      });

      test("the per-caller stream cap: RESOURCE_EXHAUSTED while the caller holds its one stream", async () => {
        for (const server of [capped.lane, capped.generic]) {
          const held = await openStream(server, watch(protocol, { runId: parkedRunId }));
          try {
            const r = response(await exchange(server, watch(protocol, { runId: parkedRunId })));
            const other = server === capped.lane ? capped.generic : capped.lane;
            const otherHeld = await openStream(other, watch(protocol, { runId: parkedRunId }));
            try {
              const r2 = response(await exchange(other, watch(protocol, { runId: parkedRunId })));
              assert.deepEqual(withoutDate(r), withoutDate(r2));
              if (protocol === "grpc") assert.equal(r.trailers?.["grpc-status"], "8");
              else assert.equal(endStream(r).error?.code, "resource_exhausted");
            } finally {
              otherHeld.cancel();
            }
          } finally {
            held.cancel();
          }
          break;
        }
      });

      test("a client that goes away: the same first message, then the stream's tail, feed subscription and slot are released", async () => {
        for (const server of [open.lane, open.generic]) {
          const before = server.streamLaneCalls();
          const held = await openStream(server, watch(protocol, { runId: parkedRunId }));
          assert.equal(server.streamLaneCalls() - before, server === open.lane ? 1 : 0);
          assert.ok(held.firstChunk.byteLength > 5);
          assert.ok(server.feed.waiters(parkedRunId) >= 1);
          held.cancel();
          const deadline = Date.now() + 5000;
          while (server.feed.waiters(parkedRunId) > 0) {
            assert.ok(Date.now() < deadline, "the stream's feed subscription should be released");
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
        const [a, b] = await Promise.all([openStream(open.lane, watch(protocol, { runId: parkedRunId })), openStream(open.generic, watch(protocol, { runId: parkedRunId }))]);
        a.cancel();
        b.cancel();
        assert.deepEqual(a.headers, b.headers);
        assert.deepEqual(a.firstChunk, b.firstChunk);
        // The cap's slot came back: one stream per caller is allowed again at once.
        for (const server of [capped.lane, capped.generic]) {
          const first = await openStream(server, watch(protocol, { runId: parkedRunId }));
          first.cancel();
          await new Promise((resolve) => setTimeout(resolve, 100));
          const again = await openStream(server, watch(protocol, { runId: parkedRunId }));
          again.cancel();
          assert.equal(envelopes(again.firstChunk)[0]?.flags, 0, "the second stream should get the snapshot, not a refusal");
        }
      });
    });
  }

  test("left to the adapter: gRPC over HTTP/1.1, compressed requests, gRPC with JSON, other methods", async () => {
    const valid = watch("connect+proto", { runId: finishedRunId });
    const before = open.lane.streamLaneCalls();
    await assertSameOver(open, watch("grpc", { runId: finishedRunId }), false, "1.1");
    await assertSameOver(open, { ...valid, headers: { ...valid.headers, "connect-content-encoding": "gzip" } }, false, "1.1");
    await assertSame(open, { ...valid, headers: { ...valid.headers, "connect-content-encoding": "gzip" } }, false);
    await assertSame(open, { ...watch("grpc", { runId: finishedRunId }), headers: { "content-type": "application/grpc", te: "trailers", "grpc-encoding": "gzip" } }, false);
    await assertSame(open, { ...watch("connect+json", { runId: finishedRunId }), headers: { "content-type": "application/grpc+json", te: "trailers" } }, false);
    await assertSame(open, { ...valid, path: "/cairn.v1.WorkflowService/GetRun" }, false);
    assert.equal(open.lane.streamLaneCalls(), before);
    // A repeated timeout header arrives over HTTP/2 joined into one value: taken, and refused as the adapter refuses it.
    await assertSame(open, { ...valid, headers: { ...valid.headers, "connect-timeout-ms": ["1000", "2000"] as unknown as string } });
  });
});

interface OpenStream {
  headers: Record<string, string>;
  firstChunk: Buffer;
  cancel: () => void;
}

/**
 * Opens a WatchRun stream and waits for its headers and first chunk; cancel() goes away: over HTTP/2 it resets the
 * stream (RST_STREAM CANCEL), over HTTP/1.1 it closes the connection.
 */
function openStreamOver(server: CairnServer, request: RawRequest, over: HttpVersion): Promise<OpenStream> {
  return over === "2" ? openStream(server, request) : openStream1(server, request);
}

async function openStream1(server: CairnServer, request: RawRequest): Promise<OpenStream> {
  const url = new URL(server.url);
  const body = Buffer.from(request.body as Uint8Array);
  const req = http.request({ host: url.hostname, port: url.port, path: request.path, method: "POST", headers: { ...request.headers, "content-length": String(body.byteLength) }, agent: false });
  req.on("error", () => undefined);
  req.end(body);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once("response", resolve);
    req.once("error", reject);
  });
  const firstChunk = await new Promise<Buffer>((resolve, reject) => {
    res.once("data", (chunk: Buffer) => resolve(chunk));
    res.once("error", reject);
  });
  // The headers a client sees that are the connection's, not the call's.
  const { date: _d, connection: _c, "keep-alive": _k, ...headers } = res.headers as Record<string, string>;
  return { headers, firstChunk, cancel: () => req.destroy() };
}

/** Opens a WatchRun stream over HTTP/2 and waits for its headers and first chunk; cancel() resets it (RST_STREAM CANCEL). */
async function openStream(server: CairnServer, request: RawRequest): Promise<OpenStream> {
  const session = http2.connect(server.url);
  const stream = session.request({ ":method": "POST", ":path": request.path, ...request.headers });
  stream.end(Buffer.from(request.body as Uint8Array));
  const [headers, firstChunk] = await Promise.all([
    new Promise<Record<string, string>>((resolve) =>
      stream.once("response", (h) => {
        const { ":status": _s, date: _d, ...rest } = h;
        resolve(rest as Record<string, string>);
      }),
    ),
    new Promise<Buffer>((resolve, reject) => {
      stream.once("data", (chunk: Buffer) => resolve(chunk));
      stream.once("error", reject);
    }),
  ]);
  return {
    headers,
    firstChunk,
    cancel: () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    },
  };
}
