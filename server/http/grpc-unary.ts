/**
 * The unary fast lane's gRPC side (`unary-lane.ts` routes here): a unary call over HTTP/2 with
 * `content-type: application/grpc` or `application/grpc+proto`, answered without the Connect
 * adapter's per-call pipeline of async iterables, web Headers and AbortControllers.
 *
 * Why: grpc-js and every other gRPC client call unary methods this way, and the adapter's path cost
 * them about twice the server CPU per call of the Connect lane. The answer is written in one tick
 * (headers, the one message, trailers), where the adapter writes each of them after an await.
 *
 * What must stay identical to the adapter (test/e2e/unary-lane.test.ts compares both over raw HTTP/2):
 * the methods and interceptors (Connect's own `invokeUnaryImplementation`), `grpc-timeout` parsing,
 * compression negotiation (`grpc-encoding`, `grpc-accept-encoding`), the envelope rules and their
 * errors (one message; a size over `readMaxBytes`; an incomplete envelope; a compressed flag without
 * an encoding), the status in the trailers (`setTrailerStatus`, error metadata included), the
 * corrections `reclassifyProtocolErrors` applies, and the response headers.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { laneContext } from "./lane-context.js";
import { compressionNegotiate, invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import { grpcStatusOk, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { readBodyWith } from "./unary-body.js";
import type { UnaryCallSignals } from "./unary-call-signal.js";
import type { LaneMethod, LaneSettings } from "./unary-lane.js";
import { webHeaders } from "./web-headers.js";

/** `application/grpc` or `application/grpc+proto`, as Connect's gRPC content-type check reads them (JSON stays with the adapter). */
const grpcProtoContentType = /^application\/grpc(?:\+proto)?(?:;.*)?$/i;
const envelopeCompressedFlag = 0b01;

/** The request is a gRPC unary call the lane can take: HTTP/2, protobuf binary, single-valued protocol headers. */
export function takesGrpc(req: Http2ServerRequest | { httpVersionMajor: number; headers: IncomingHttpHeaders }): boolean {
  if (req.httpVersionMajor !== 2) return false;
  const headers = req.headers;
  const contentType = headers["content-type"];
  if (typeof contentType !== "string" || !grpcProtoContentType.test(contentType)) return false;
  return isSingle(headers["grpc-timeout"]) && isSingle(headers["grpc-encoding"]) && isSingle(headers["grpc-accept-encoding"]);
}

function isSingle(value: string | string[] | undefined): boolean {
  return value === undefined || typeof value === "string";
}

export async function serveGrpcUnary(
  method: LaneMethod,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  url: string,
  settings: LaneSettings,
  signals: UnaryCallSignals,
): Promise<void> {
  const { spec, serialization } = method;
  const { opt } = settings;
  const headers = req.headers;
  const timeout = parseTimeout((headers["grpc-timeout"] as string | undefined) ?? null, opt.maxTimeoutMs);
  const call = signals.open(timeout.timeoutMs);
  call.abortWhenClientGoes(req, res);
  const requestHeader = webHeaders(headers);
  const responseHeader = new Headers({ "content-type": "application/grpc+proto" });
  const responseTrailer = new Headers({ "grpc-status": grpcStatusOk });
  const context = laneContext(spec, call, { protocolName: "grpc", url, requestHeader, responseHeader, responseTrailer, values: settings.contextValues?.(req) });
  const compression = compressionNegotiate(
    opt.acceptCompression,
    requestHeader.get("grpc-encoding"),
    requestHeader.get("grpc-accept-encoding"),
    "grpc-accept-encoding",
  );
  if (compression.response) responseHeader.set("grpc-encoding", compression.response.name);
  let message: Uint8Array | undefined;
  try {
    if (compression.error) throw compression.error;
    if (timeout.error) throw timeout.error;
    // As the adapter's pipeline: each envelope is decompressed and parsed as it comes, then a unary call refuses a
    // missing or a second message.
    const envelopes = await readEnvelopes(req, opt.readMaxBytes);
    const parse = async (envelope: Buffer) => {
      let bytes: Uint8Array = envelope.subarray(5);
      if ((envelope[0]! & envelopeCompressedFlag) !== 0) {
        if (!compression.request) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
        bytes = await compression.request.decompress(bytes, opt.readMaxBytes);
      }
      return serialization.getI(true).parse(bytes);
    };
    if (envelopes.length === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
    const input = await parse(envelopes[0]!);
    if (envelopes.length > 1) {
      await parse(envelopes[1]!);
      throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
    }
    const output = await invokeUnaryImplementation(spec, context, input, opt.interceptors);
    message = serialization.getO(true).serialize(output);
  } catch (thrown) {
    call.abort(thrown);
    const error = thrown instanceof ConnectError ? thrown : new ConnectError("internal error", Code.Internal, undefined, undefined, thrown);
    setTrailerStatus(responseTrailer, error);
    // reclassifyProtocolErrors corrects the status in the adapter's trailers; the same here.
    const fixed = method.fix({ code: error.code, message: error.rawMessage });
    if (fixed) {
      responseTrailer.set("grpc-status", String(fixed.code));
      responseTrailer.set("grpc-message", encodeURIComponent(fixed.message));
    }
  } finally {
    call.settle();
  }
  let body: Uint8Array | undefined;
  if (message) {
    let flags = 0;
    if (compression.response && message.byteLength >= opt.compressMinBytes) {
      message = await compression.response.compress(message);
      flags = envelopeCompressedFlag;
    }
    body = new Uint8Array(5 + message.byteLength);
    body[0] = flags;
    new DataView(body.buffer).setUint32(1, message.byteLength);
    body.set(message, 5);
  }
  send(res, responseHeader, responseTrailer, body);
}

/**
 * The request's envelopes as they arrive, at most two (a unary call may send one; a second is refused): a declared
 * size over `readMaxBytes` is refused as soon as its prefix is in (RESOURCE_EXHAUSTED, as the adapter's envelope
 * decoder), and a body ending inside an envelope is INVALID_ARGUMENT "protocol error: incomplete envelope".
 */
function readEnvelopes(req: Http2ServerRequest, readMaxBytes: number): Promise<Buffer[]> {
  let pending: Buffer = Buffer.alloc(0);
  const envelopes: Buffer[] = [];
  return readBodyWith<Buffer[]>(
    req,
    (chunk) => {
      pending = pending.byteLength === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.byteLength >= 5) {
        const length = pending.readUInt32BE(1);
        if (length > readMaxBytes) return { refuse: new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted) };
        if (pending.byteLength < 5 + length) return undefined;
        envelopes.push(pending.subarray(0, 5 + length));
        pending = pending.subarray(5 + length);
        // A second message: the call is refused whatever follows, so the rest is not read.
        if (envelopes.length === 2) return { done: envelopes };
      }
      return undefined;
    },
    () => (pending.byteLength > 0 ? new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument) : envelopes),
  );
}

/** Headers, the message (if any) and the trailers, all in this tick. */
function send(res: Http2ServerResponse, header: Headers, trailer: Headers, body: Uint8Array | undefined): void {
  res.writeHead(200, nodeHeaders(header));
  res.addTrailers(nodeHeaders(trailer));
  if (body) res.end(body);
  else res.end();
}

/** Web headers as connect-node's webHeaderToNodeHeaders writes them: repeated ones as arrays. */
export function nodeHeaders(header: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = Object.create(null) as OutgoingHttpHeaders;
  header.forEach((value, name) => {
    const existing = out[name];
    if (existing === undefined) out[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else out[name] = [String(existing), value];
  });
  return out;
}
