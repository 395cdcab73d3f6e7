/**
 * The stream lane: WatchRun server streams, Connect (`application/connect+proto`, `+json`) over HTTP/2 and HTTP/1.1
 * and gRPC (`application/grpc`, `+proto`, HTTP/2 only), answered in front of the Connect adapter, which keeps
 * everything else.
 *
 * Why: a WatchRun stream may stay open for hours on a parked run, and the adapter holds for each one its whole
 * generic pipeline: a dozen async generators (request body, envelope split/parse, invoke, serialize, compress,
 * join, catch, the Node writer...), three web Headers, three linked AbortControllers and their listeners, about
 * 40 KB of heap per stream. Here a stream holds what the call itself needs: one AbortController
 * (`unary-call-signal.ts`), the headers, and the interceptors' and the handler's own generators; each message is
 * serialized, enveloped and written as the handler yields it.
 *
 * What stays identical to the adapter (test/e2e/stream-lane.test.ts compares both over raw HTTP/2): the method's
 * implementation and the interceptors, run in Connect's order on Connect's request object (the request message an
 * iterable that is read only when the handler asks for it, so an interceptor's refusal wins over a bad body, as
 * there); `connect-timeout-ms` / `grpc-timeout` parsing and the deadline's abort reason; response compression as
 * negotiated (`connect-accept-encoding` / `grpc-accept-encoding`, envelopes of `compressMinBytes` or more); the
 * envelope rules and their errors (a size over `readMaxBytes`, an incomplete envelope, a compressed flag without an
 * encoding, a missing or a second message; Connect's request end-stream envelopes skipped); headers written with
 * the first envelope (the first message or the end), so that what the handler and interceptors set is in them;
 * Connect's end-stream message (the trailers as metadata, the error) and gRPC's trailers (`setTrailerStatus`);
 * the corrections `reclassifyProtocolErrors` applies; backpressure (a write waits for `drain`); a client that goes
 * away aborts the call's signal with the adapter's reason and ends the handler's iteration (`return()`), so its
 * tail, feed subscription and caller slot are released.
 *
 * What the lane leaves to the adapter: gRPC over HTTP/1.1 (which the adapter refuses), compressed requests
 * (`connect-content-encoding`, `grpc-encoding` other than identity), gRPC with JSON, gRPC-Web, repeated protocol
 * headers, an authority that makes no URL, and every other method. Deliberate difference, as on the unary lane: a
 * stream that ends cleanly does not abort its `context.signal` afterwards.
 */
import { create, type DescMessage, type Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type HandlerContext,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import { laneContext } from "./lane-context.js";
import { laneMethodsOf } from "./lane-methods.js";
import { compressionNegotiate, createMethodSerializationLookup, validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";
import {
  contentTypeStreamJson,
  contentTypeStreamProto,
  createEndStreamSerialization,
  endStreamFlag,
  parseContentType,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import { grpcStatusOk, parseTimeout as parseGrpcTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { type Fix, fixGrpcStatus, protocolErrorFix, rewriteEndStream } from "../rpc/protocol-errors.js";
import { nodeHeaders, takesGrpc } from "./grpc-unary.js";
import type { NodeHandler } from "./listen.js";
import { connectRequestUrl } from "./require-authority.js";
import { readBodyWith } from "./unary-body.js";
import { UnaryCallSignals } from "./unary-call-signal.js";
import type { UnaryLaneOptions } from "./unary-lane.js";
import { webHeaders } from "./web-headers.js";

/** The server-streaming methods the lane serves: those held open by the thousand. */
const laneMethods = new Set(["/cairn.v1.WorkflowService/WatchRun"]);

export interface StreamLaneHandler extends NodeHandler {
  /** Streams the lane answered (the rest went to the adapter): for tests and diagnostics. */
  readonly served: () => number;
}

type StreamSpec = Extract<MethodImplSpec, { kind: "server_streaming" }>;
type Serialization = ReturnType<typeof createMethodSerializationLookup>;

interface LaneMethod {
  spec: StreamSpec;
  serialization: Serialization;
  fix: Fix;
  /** The implementation behind the interceptors, applied once for every call (Connect applies them per call). */
  call: (request: StreamRequest) => Promise<StreamResponse>;
}

type StreamFn = (request: StreamRequest) => Promise<StreamResponse>;

/** A stream's request and response: an HTTP/2 stream's compatibility objects, or an HTTP/1.1 exchange. */
type LaneRequest = Http2ServerRequest | IncomingMessage;
type LaneResponse = Http2ServerResponse | ServerResponse;

/** The protocol of a stream the lane takes, and what differs between the two. */
interface Protocol {
  name: "connect" | "grpc";
  binary: boolean;
}

const envelopeCompressedFlag = 0b01;

export function withStreamLane(next: NodeHandler, options: UnaryLaneOptions): StreamLaneHandler {
  const opt = validateUniversalHandlerOptions({
    ...options,
    // As connectNodeAdapter: gzip and br unless told otherwise.
    acceptCompression: options.acceptCompression ?? [compressionGzip, compressionBrotli],
  });
  // Each call's handler context, found from its context values (every interceptor passes the same object on): the
  // chain of interceptors is then built once per method, not once per stream, and holds nothing of a call.
  const contexts = new WeakMap<ContextValues, HandlerContext>();
  const methods = new Map<string, LaneMethod>();
  for (const spec of laneMethodsOf(options.routes, "server_streaming")) {
    const path = `/${spec.method.parent.typeName}/${spec.method.name}`;
    if (!laneMethods.has(path)) continue;
    // Connect's invokeStreamImplementation, with the call's context from the map.
    const invoke: StreamFn = async (req) => {
      const context = contexts.get(req.contextValues);
      if (!context) throw new ConnectError("stream lane: an interceptor replaced the call's context values", Code.Internal);
      const input = await ensureSingle(req.message);
      return {
        stream: true,
        message: spec.impl(input, { ...context, service: req.service, requestHeader: req.header, signal: req.signal, values: req.contextValues }),
        method: spec.method,
        service: spec.method.parent,
        header: context.responseHeader,
        trailer: context.responseTrailer,
      } as StreamResponse;
    };
    let call = invoke;
    for (const interceptor of [...opt.interceptors].reverse()) call = interceptor(call as never) as unknown as StreamFn;
    methods.set(path, {
      spec,
      serialization: createMethodSerializationLookup(spec.method, opt.binaryOptions, opt.jsonOptions, opt),
      fix: protocolErrorFix(spec.method.input.typeName),
      call,
    });
  }
  const endStreamSerialization = createEndStreamSerialization(opt.jsonOptions);
  const signals = new UnaryCallSignals(opt.shutdownSignal);
  let served = 0;

  const handler: NodeHandler = (req, res) => {
    // HTTP/1.1 too: fetch and browsers hold their WatchRun streams over it, each one request (gRPC needs HTTP/2).
    const method = req.method === "POST" && req.url !== undefined && req.httpVersionMajor >= 1 ? methods.get(req.url) : undefined;
    const protocol = method ? protocolOf(req, opt.requireConnectProtocolHeader) : undefined;
    const url = protocol ? connectRequestUrl(req) : undefined;
    if (!method || !protocol || url === undefined) {
      next(req, res);
      return;
    }
    served++;
    serve(method, protocol, req, res, url).catch((error: unknown) => {
      // Only a fault outside the call gets here (headers Node refuses): every call error ends the stream in its protocol.
      console.error(`stream lane: rpc ${method.spec.method.name} of ${method.spec.method.parent.typeName} failed`, error);
      res.destroy();
    });
  };

  async function serve(method: LaneMethod, protocol: Protocol, req: LaneRequest, res: LaneResponse, url: string): Promise<void> {
    const { spec, serialization } = method;
    const headers = req.headers;
    const grpc = protocol.name === "grpc";
    const timeoutHeader = (headers[grpc ? "grpc-timeout" : "connect-timeout-ms"] as string | undefined) ?? null;
    const timeout = grpc ? parseGrpcTimeout(timeoutHeader, opt.maxTimeoutMs) : parseConnectTimeout(timeoutHeader, opt.maxTimeoutMs);
    const call = signals.open(timeout.timeoutMs);
    call.abortWhenClientGoes(req, res);
    const requestHeader = webHeaders(headers);
    const responseHeader = new Headers({
      "content-type": grpc ? "application/grpc+proto" : protocol.binary ? contentTypeStreamProto : contentTypeStreamJson,
    });
    const responseTrailer = grpc ? new Headers({ "grpc-status": grpcStatusOk }) : new Headers();
    const context = laneContext(spec, call, { protocolName: protocol.name, url, requestHeader, responseHeader, responseTrailer, values: options.contextValues?.(req) });
    const compression = grpc
      ? compressionNegotiate(opt.acceptCompression, requestHeader.get("grpc-encoding"), requestHeader.get("grpc-accept-encoding"), "grpc-accept-encoding")
      : compressionNegotiate(opt.acceptCompression, requestHeader.get("connect-content-encoding"), requestHeader.get("connect-accept-encoding"), "connect-accept-encoding");
    if (compression.response) responseHeader.set(grpc ? "grpc-encoding" : "connect-content-encoding", compression.response.name);

    // The request message, read when the handler first asks for it (after the interceptors ran), as Connect's pipeline.
    const input = requestMessages(req, opt.readMaxBytes, grpc ? undefined : endStreamFlag, () => {
      if (compression.error) throw compression.error;
      if (timeout.error) throw timeout.error;
    }, (bytes) => serialization.getI(protocol.binary).parse(bytes));
    const gone = "stream" in res ? () => res.stream.destroyed || res.stream.closed : () => res.destroyed || res.socket?.destroyed !== false;
    let headersSent = false;
    const compresses = (data: Uint8Array) => compression.response !== null && data.byteLength >= opt.compressMinBytes;
    const writeEnvelope = async (flags: number, data: Uint8Array, compress = compresses(data)): Promise<void> => {
      if (compress && compression.response) {
        data = await compression.response.compress(data);
        flags |= envelopeCompressedFlag;
      }
      const envelope = new Uint8Array(5 + data.byteLength);
      envelope[0] = flags;
      new DataView(envelope.buffer).setUint32(1, data.byteLength);
      envelope.set(data, 5);
      if (gone()) return;
      if (!headersSent) {
        headersSent = true;
        res.writeHead(200, nodeHeaders(responseHeader));
      }
      if (!(res as { write(chunk: Uint8Array): boolean }).write(envelope)) await drained(res);
    };

    let failure: unknown;
    let iterator: AsyncIterator<Message> | undefined;
    try {
      const request: StreamRequest = {
        stream: true,
        message: input,
        method: spec.method,
        requestMethod: "POST",
        url,
        signal: call.signal,
        header: requestHeader,
        service: spec.method.parent,
        contextValues: context.values,
      } as StreamRequest;
      contexts.set(context.values, context);
      const response = await method.call(request);
      copyHeaders(response.header, responseHeader);
      iterator = (response.message as AsyncIterable<Message>)[Symbol.asyncIterator]();
      const output = spec.method.output;
      const serializer = serialization.getO(protocol.binary);
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        if (gone()) break;
        await writeEnvelope(0, serializer.serialize(normalize(output, next.value)));
      }
      copyHeaders(response.trailer, responseTrailer);
    } catch (thrown) {
      failure = thrown;
      call.abort(thrown);
    } finally {
      // A client that went away (or a write that failed) ends the handler's iteration: its finally blocks release.
      if (failure === undefined && gone()) await iterator?.return?.()?.catch(() => undefined);
      call.settle();
    }
    if (gone()) return;
    const error =
      failure === undefined ? undefined : failure instanceof ConnectError ? failure : new ConnectError("internal error", Code.Internal, undefined, undefined, failure);
    if (grpc) {
      if (error) setTrailerStatus(responseTrailer, error);
      // reclassifyProtocolErrors corrects the status in the adapter's trailers; the same here.
      fixGrpcStatus(responseTrailer, method.fix);
      if (!headersSent) res.writeHead(200, nodeHeaders(responseHeader));
      (res as Http2ServerResponse).addTrailers(nodeHeaders(responseTrailer));
      res.end();
      return;
    }
    const end: { metadata: Headers; error?: ConnectError } = { metadata: responseTrailer };
    if (error) end.error = error;
    const data = endStreamSerialization.serialize(end);
    // reclassifyProtocolErrors rewrites an end-stream message that went out uncompressed (by its size before that).
    const compress = compresses(data);
    await writeEnvelope(endStreamFlag, compress ? data : (rewriteEndStream(data, method.fix) ?? data), compress);
    if (!gone()) res.end();
  }

  return Object.assign(handler, { served: () => served });
}

/** The protocol of a request the lane can take, or undefined (the adapter answers it). */
function protocolOf(req: LaneRequest, requireConnectProtocolHeader: boolean): Protocol | undefined {
  const headers = req.headers;
  if (takesGrpc(req)) return isIdentity(headers["grpc-encoding"]) ? { name: "grpc", binary: true } : undefined;
  const contentType = headers["content-type"];
  if (typeof contentType !== "string" || requireConnectProtocolHeader) return undefined;
  // As the Connect handler reads it: application/connect+proto or +json (with a UTF-8 charset at most).
  const type = parseContentType(contentType);
  if (!type?.stream) return undefined;
  if (!isIdentity(headers["connect-content-encoding"]) || !isSingle(headers["connect-timeout-ms"]) || !isSingle(headers["connect-accept-encoding"])) return undefined;
  return { name: "connect", binary: type.binary };
}

function isIdentity(value: string | string[] | undefined): boolean {
  return value === undefined || value === "identity";
}

function isSingle(value: string | string[] | undefined): boolean {
  return value === undefined || typeof value === "string";
}

/**
 * The request's messages as Connect's pipeline reads them (transformSplitEnvelope, transformDecompressEnvelope
 * without a compression, transformParseEnvelope): `first` runs at the first read (Connect's transformPrepend),
 * envelopes are parsed in order, and a reading error surfaces after the envelopes that came before it. At most two
 * messages are read: the handler takes one and refuses a second.
 */
function requestMessages<T>(
  req: LaneRequest,
  readMaxBytes: number,
  skipFlag: number | undefined,
  first: () => void,
  parse: (bytes: Uint8Array) => T,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      let read: Promise<{ envelopes: Buffer[]; error?: unknown }> | undefined;
      let index = 0;
      return {
        async next(): Promise<IteratorResult<T>> {
          if (read === undefined) {
            first();
            read = readEnvelopes(req, readMaxBytes, skipFlag);
          }
          const { envelopes, error } = await read;
          const envelope = envelopes[index++];
          if (envelope === undefined) {
            if (error !== undefined) throw error;
            return { done: true, value: undefined };
          }
          if ((envelope[0]! & envelopeCompressedFlag) !== 0) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
          return { done: false, value: parse(envelope.subarray(5)) };
        },
      };
    },
  };
}

function readEnvelopes(req: LaneRequest, readMaxBytes: number, skipFlag: number | undefined): Promise<{ envelopes: Buffer[]; error?: unknown }> {
  let pending: Buffer = Buffer.alloc(0);
  const envelopes: Buffer[] = [];
  return readBodyWith<{ envelopes: Buffer[]; error?: unknown }>(
    req,
    (chunk) => {
      pending = pending.byteLength === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.byteLength >= 5) {
        const length = pending.readUInt32BE(1);
        if (length > readMaxBytes) {
          return { done: { envelopes, error: new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted) } };
        }
        if (pending.byteLength < 5 + length) return undefined;
        const envelope = pending.subarray(0, 5 + length);
        pending = pending.subarray(5 + length);
        if (skipFlag !== undefined && (envelope[0]! & skipFlag) === skipFlag) continue;
        envelopes.push(envelope);
        // A second message: the call is refused whatever follows, so the rest is not read.
        if (envelopes.length === 2) return { done: { envelopes } };
      }
      return undefined;
    },
    () => (pending.byteLength > 0 ? { envelopes, error: new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument) } : { envelopes }),
  ).catch((error: unknown) => ({ envelopes, error }));
}

/** Connect's ensureSingle for a server-streaming method. */
async function ensureSingle<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  return first.value;
}

/** Connect's normalize: a handler may yield a message or its init object (a message is returned as it is). */
function normalize(schema: DescMessage, message: unknown): Message {
  return create(schema, message as never);
}

/** Connect's copyHeaders: an interceptor that replaced the headers object had its headers sent. */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}

function drained(res: LaneResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
