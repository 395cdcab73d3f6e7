/**
 * The unary fast lane: plain unary Connect calls (`POST /cairn.v1.WorkflowService/GetRun`
 * with an application/proto or application/json body) are answered here, in front of the
 * Connect adapter, which keeps everything else.
 *
 * Why: the adapter's generic per-call machinery (three web Headers and two linked
 * AbortControllers per call, an abort with a DOMException on every completion, async-iterable
 * pipelines for both bodies, the `reclassifyProtocolErrors` rewrite of every response) cost
 * several times what the HTTP exchange itself costs, on the calls clients make most
 * (CreateRun, AwaitRun, GetRun, SendEvent...). Here a call converts its headers once, reads its
 * body from the stream's events, has one AbortController that is aborted only when something
 * really ends the call (`unary-call-signal.ts`), and writes its answer in one piece.
 *
 * What must stay identical (test/e2e/unary-lane.test.ts compares both paths): the methods served
 * (those `routes` registers without per-service options) and their implementations; the
 * interceptors, run by Connect's own `invokeUnaryImplementation` with the request and context
 * objects they know; `connect-timeout-ms` parsing, its errors and the deadline's abort reason;
 * the body limit and its messages (`unary-body.ts`); decoding by Connect's own serializers;
 * decoding errors corrected as `reclassifyProtocolErrors` corrects them; the response: status,
 * content type, handler headers, `trailer-` headers, Connect error JSON with the error's
 * metadata as headers, response compression as negotiated by `accept-encoding`.
 *
 * What the lane takes: POST to the exact path of a unary method, `content-type` one that the
 * Connect protocol accepts for unary calls, no request compression (`content-encoding` and
 * `connect-content-encoding` absent or identity), single-valued protocol headers, and an
 * authority that makes a URL (`require-authority.ts`). Anything else (streams, GET, gRPC and
 * gRPC-Web, compressed bodies, query strings, unknown paths) goes to the adapter untouched.
 *
 * The one deliberate difference: a call that succeeds does not abort `context.signal` after it
 * answered (Connect does, at the cost of a DOMException per call). Nothing in Cairn listens to a
 * call's signal after the call returned.
 */
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ContextValues,
  type MethodImplSpec,
} from "@connectrpc/connect";
import { laneContext } from "./lane-context.js";
import { laneMethodsOf } from "./lane-methods.js";
import {
  type Compression,
  compressionNegotiate,
  createMethodSerializationLookup,
  invokeUnaryImplementation,
  type UniversalHandlerOptions,
  validateUniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  codeToString,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  contentTypeUnaryRegExp,
  errorToJson,
  parseTimeout,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { type Fix, protocolErrorFix } from "../rpc/protocol-errors.js";
import type { NodeHandler } from "./listen.js";
import { connectRequestUrl } from "./require-authority.js";
import { serveGrpcUnary, takesGrpc } from "./grpc-unary.js";
import { readUnaryBody } from "./unary-body.js";
import { UnaryCallSignals } from "./unary-call-signal.js";
import { webHeaders } from "./web-headers.js";

/** The options `connectNodeAdapter` is given: pass the very same object, so both paths serve the same. */
export interface UnaryLaneOptions {
  routes: (router: ConnectRouter) => void;
  interceptors?: UniversalHandlerOptions["interceptors"];
  readMaxBytes?: number;
  /** Longer `connect-timeout-ms` values are refused (INVALID_ARGUMENT), as the adapter does. */
  maxTimeoutMs?: number;
  acceptCompression?: Compression[];
  jsonOptions?: UniversalHandlerOptions["jsonOptions"];
  binaryOptions?: UniversalHandlerOptions["binaryOptions"];
  shutdownSignal?: AbortSignal;
  /** Per-call context values from the Node request (the peer address), as the adapter's option of the same name. */
  contextValues?: (req: IncomingMessage | Http2ServerRequest) => ContextValues;
}

/** What the gRPC side (`grpc-unary.ts`) needs of the lane's options. */
export interface LaneSettings {
  opt: ReturnType<typeof validateUniversalHandlerOptions>;
  contextValues: UnaryLaneOptions["contextValues"];
}

export interface UnaryLaneHandler extends NodeHandler {
  /** Calls the lane answered (the rest went to the adapter): for tests and diagnostics. */
  readonly served: () => number;
}

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;
type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;
type Serialization = ReturnType<typeof createMethodSerializationLookup>;

export interface LaneMethod {
  spec: UnarySpec;
  serialization: Serialization;
  /** The corrections `reclassifyProtocolErrors` applies to this method's errors. */
  fix: Fix;
}

export function withUnaryLane(next: NodeHandler, options: UnaryLaneOptions): UnaryLaneHandler {
  const opt = validateUniversalHandlerOptions({
    ...options,
    // As connectNodeAdapter: gzip and br unless told otherwise.
    acceptCompression: options.acceptCompression ?? [compressionGzip, compressionBrotli],
  });
  const methods = new Map<string, LaneMethod>();
  for (const spec of laneMethodsOf(options.routes, "unary")) {
    methods.set(`/${spec.method.parent.typeName}/${spec.method.name}`, {
      spec,
      serialization: createMethodSerializationLookup(spec.method, opt.binaryOptions, opt.jsonOptions, opt),
      fix: protocolErrorFix(spec.method.input.typeName),
    });
  }
  const signals = new UnaryCallSignals(opt.shutdownSignal);
  const settings: LaneSettings = { opt, contextValues: options.contextValues };
  let served = 0;

  const handler: NodeHandler = (req, res) => {
    const method = req.method === "POST" && req.url !== undefined ? methods.get(req.url) : undefined;
    const grpc = method !== undefined && takesGrpc(req);
    // Without a URL for the request (no or a malformed authority), the adapter's side has the answer.
    const url = method && (grpc || takes(req.headers)) ? connectRequestUrl(req) : undefined;
    if (!method || url === undefined) {
      next(req, res);
      return;
    }
    served++;
    if (grpc) {
      serveGrpcUnary(method, req as Http2ServerRequest, res as Http2ServerResponse, url, settings, signals).catch((error: unknown) => {
        console.error(`unary lane: gRPC ${method.spec.method.name} of ${method.spec.method.parent.typeName} failed`, error);
        res.destroy();
      });
      return;
    }
    serve(method, req, res, url).catch((error: unknown) => {
      // Only a fault outside the call gets here (headers Node refuses, an error that cannot be serialized): every call
      // error is answered as Connect error JSON. The adapter logs these too, but leaves the client waiting.
      console.error(`unary lane: rpc ${method.spec.method.name} of ${method.spec.method.parent.typeName} failed`, error);
      try {
        if (res.headersSent) throw error;
        send(res, 500, jsonError(new ConnectError("internal error", Code.Internal), opt.jsonOptions), new Headers({ "content-type": contentTypeUnaryJson }));
      } catch {
        res.destroy();
      }
    });
  };

  async function serve(method: LaneMethod, req: Request, res: Response, url: string): Promise<void> {
    const { spec, serialization } = method;
    const headers = req.headers;
    const binary = contentTypeUnaryProto === (headers["content-type"] as string).toLowerCase();
    const timeout = parseTimeout((headers["connect-timeout-ms"] as string | undefined) ?? null, opt.maxTimeoutMs);
    const call = signals.open(timeout.timeoutMs);
    call.abortWhenClientGoes(req, res);
    const requestHeader = webHeaders(headers);
    const responseHeader = new Headers({ "content-type": binary ? contentTypeUnaryProto : contentTypeUnaryJson });
    const responseTrailer = new Headers();
    const context = laneContext(spec, call, { protocolName: "connect", url, requestHeader, responseHeader, responseTrailer, values: options.contextValues?.(req) });
    const compression = compressionNegotiate(opt.acceptCompression, null, requestHeader.get("accept-encoding"), "Accept-Encoding");
    let status = 200;
    let body: Uint8Array;
    try {
      if (timeout.error) throw timeout.error;
      const input = serialization.getI(binary).parse(await readUnaryBody(req, opt.readMaxBytes, headers["content-length"]));
      const output = await invokeUnaryImplementation(spec, context, input, opt.interceptors);
      body = serialization.getO(binary).serialize(output);
    } catch (thrown) {
      call.abort(thrown);
      const error = thrown instanceof ConnectError ? thrown : new ConnectError("internal error", Code.Internal, undefined, undefined, thrown);
      responseHeader.set("content-type", contentTypeUnaryJson);
      // As @connectrpc/connect 2.1's handler does (pinned: 2.2 needs Node 22): metadata set over the headers.
      error.metadata.forEach((value, key) => responseHeader.set(key, value));
      const json = errorToJson(error, opt.jsonOptions);
      body = encoder.encode(JSON.stringify(json));
      status = codeToHttpStatus(error.code);
      // reclassifyProtocolErrors rewrites the error JSON the adapter sends, when it is not compressed.
      const fixed = compression.response && body.byteLength >= opt.compressMinBytes ? undefined : method.fix({ code: error.code, message: error.rawMessage });
      if (fixed) {
        body = encoder.encode(JSON.stringify({ ...json, code: codeToString(fixed.code), message: fixed.message }));
        status = codeToHttpStatus(fixed.code);
      }
    } finally {
      call.settle();
    }
    if (compression.response && body.byteLength >= opt.compressMinBytes) {
      body = await compression.response.compress(body);
      responseHeader.set("content-encoding", compression.response.name);
    }
    send(res, status, body, responseTrailer.keys().next().done ? responseHeader : trailerMux(responseHeader, responseTrailer));
  }

  return Object.assign(handler, { served: () => served });
}

const encoder = new TextEncoder();

/** The request is a plain unary Connect call: an uncompressed body and single-valued protocol headers. */
function takes(headers: IncomingHttpHeaders): boolean {
  const contentType = headers["content-type"];
  if (typeof contentType !== "string" || !contentTypeUnaryRegExp.test(contentType)) return false;
  if (!isIdentity(headers["content-encoding"]) || !isIdentity(headers["connect-content-encoding"])) return false;
  return isSingle(headers["connect-timeout-ms"]) && isSingle(headers["content-length"]) && isSingle(headers["accept-encoding"]);
}

function isIdentity(value: string | string[] | undefined): boolean {
  return value === undefined || value === "identity";
}

function isSingle(value: string | string[] | undefined): boolean {
  return value === undefined || typeof value === "string";
}

function jsonError(error: ConnectError, jsonOptions: UnaryLaneOptions["jsonOptions"]): Uint8Array {
  return encoder.encode(JSON.stringify(errorToJson(error, jsonOptions)));
}

/** Writes the whole answer: headers as connect-node converts them (lower-cased, repeated ones as arrays), then the body. */
function send(res: Response, status: number, body: Uint8Array, header: Headers): void {
  header.set("content-length", String(body.byteLength));
  const nodeHeaders: OutgoingHttpHeaders = Object.create(null) as OutgoingHttpHeaders;
  header.forEach((value, name) => {
    const existing = nodeHeaders[name];
    if (existing === undefined) nodeHeaders[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else nodeHeaders[name] = [String(existing), value];
  });
  // A response whose client went away takes both calls quietly, on HTTP/1.1 and HTTP/2.
  res.writeHead(status, nodeHeaders);
  res.end(body);
}
