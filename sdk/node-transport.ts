/**
 * A Node-only Connect transport over HTTP/2 (h2c for http://, TLS with ALPN h2 for https://) whose
 * unary calls speak the Connect protocol directly on a node:http2 stream. Streaming calls
 * (WatchRun, ...) go through @connectrpc/connect-node on the same connection.
 *
 * Why: connect-node's generic call path costs the client about twice the CPU per unary call
 * (linked AbortControllers and a DOMException per call, async-iterable body pipelines, its
 * session manager's per-stream bookkeeping), and a Cairn client usually shares its machine with
 * the server and PostgreSQL. The protocol is unchanged: request and response bytes, headers,
 * error JSON and the codes a caller sees are those of connect-node's transport, and interceptors
 * run as with any Connect transport.
 *
 * ```ts
 * import { createHttp2Transport } from "@cairnjs/sdk/node";
 * const transport = createHttp2Transport({ baseUrl: "http://127.0.0.1:8080" });
 * const cairn = createCairnClient({ transport, apiKey });
 * ```
 * or `createCairnClient({ baseUrl, apiKey, http2: true })`, which loads this file on the first call.
 *
 * Not browser-safe (node:http2): sdk/tsconfig.json leaves this file and sdk/node/ out of its check.
 */
import type http2 from "node:http2";
import { type BinaryReadOptions, type BinaryWriteOptions, create, type DescMessage, type DescMethodStreaming, type DescMethodUnary, type JsonReadOptions, type JsonWriteOptions, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, createContextValues, type Interceptor, type StreamResponse, type Transport, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { requestHeader } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { HeadersInit } from "./client.js";
import { type Abortable, abortableSignal, CallCancellation } from "./node/cancellation.js";
import { type Codec, decodeResponse, encodeRequest } from "./node/connect-unary.js";
import { exchange } from "./node/http2-exchange.js";
import { Http2Sessions } from "./node/http2-sessions.js";

export interface Http2TransportOptions {
  /** The server: "http://host:port" (HTTP/2 cleartext, prior knowledge) or "https://host" (TLS, ALPN h2). A path prefix is kept. */
  baseUrl: string;
  /** Protobuf binary bodies (default true) or JSON. */
  useBinaryFormat?: boolean;
  /** Connect interceptors, outermost first; they run for unary and streaming calls. */
  interceptors?: Interceptor[];
  /** Timeout (ms) of calls that set none; sent as `connect-timeout-ms`. */
  defaultTimeoutMs?: number;
  /** PEM certificate(s) to trust for an https baseUrl: a private CA or a self-signed certificate. */
  ca?: string | readonly string[];
  /** Further options of `http2.connect` (client certificates, ...); `ca` is added to them. */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
  /** Larger response bodies are refused with RESOURCE_EXHAUSTED. Default 64 MiB. */
  readMaxBytes?: number;
  /** A connection without calls is closed after this long. Default 15 minutes (as connect-node). */
  idleConnectionTimeoutMs?: number;
  jsonOptions?: Partial<JsonReadOptions & JsonWriteOptions>;
  binaryOptions?: Partial<BinaryReadOptions & BinaryWriteOptions>;
}

export interface Http2Transport extends Transport {
  /** Closes the connections once the calls in flight have finished; a later call opens a new one. Idle connections never hold the process open, so exiting needs no close(). */
  close(): void;
}

const defaultReadMaxBytes = 64 * 1024 * 1024;

type UnaryFn = (request: UnaryRequest) => Promise<UnaryResponse>;
type AnyFn = Parameters<Interceptor>[0];

/** Marks the requests this transport made, with their cancellation (copies made by interceptors keep it). */
const cancellationKey = Symbol("cairn.cancellation");
type MarkedRequest = UnaryRequest & { [cancellationKey]?: { cancellation: CallCancellation; original: object } };

export function createHttp2Transport(options: Http2TransportOptions): Http2Transport {
  const url = new URL(options.baseUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`createHttp2Transport needs an http: or https: baseUrl, got ${JSON.stringify(options.baseUrl)}`);
  const origin = url.origin;
  const originPath = `${origin}/`;
  const urlPrefix = origin + url.pathname.replace(/\/+$/, "");
  const binary = options.useBinaryFormat ?? true;
  const readMaxBytes = options.readMaxBytes ?? defaultReadMaxBytes;
  if (!(readMaxBytes >= 1)) throw new RangeError(`readMaxBytes must be at least 1, got ${readMaxBytes}`);
  const { defaultTimeoutMs } = options;
  // As Connect: unknown JSON fields are ignored.
  const codec: Codec = { binary, binaryOptions: options.binaryOptions, jsonRead: { ignoreUnknownFields: true, ...options.jsonOptions }, jsonWrite: options.jsonOptions };

  const ca = options.ca === undefined ? undefined : typeof options.ca === "string" ? options.ca : [...options.ca];
  const connectOptions = ca === undefined ? options.nodeOptions : { ...options.nodeOptions, ca };
  const sessions = new Http2Sessions(origin, {
    ...(connectOptions ? { connectOptions } : {}),
    ...(options.idleConnectionTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleConnectionTimeoutMs }),
  });

  // The innermost call, after the interceptors: one Connect unary exchange on an HTTP/2 stream.
  const send: UnaryFn = (request) => {
    // The connection is to `origin` only (as connect-node), whatever URL an interceptor set.
    if (!request.url.startsWith(originPath)) {
      return Promise.reject(new ConnectError(`cannot make a request to ${request.url}: the http2 session is connected to ${origin}`, Code.Internal));
    }
    let body: Uint8Array;
    try {
      body = encodeRequest(request, codec);
    } catch (error) {
      return Promise.reject(error);
    }
    const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": request.url.slice(origin.length) };
    request.header.forEach((value, name) => {
      headers[name] = value;
    });
    return exchange(sessions, headers, body, abortableOf(request), readMaxBytes).then((response) => decodeResponse(request.method, response, codec));
  };
  // Composed once, not per call.
  const intercepted = (options.interceptors ?? []).reduceRight<UnaryFn>((next, interceptor) => interceptor(next as AnyFn) as UnaryFn, send);

  const streams = createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion: "2",
    useBinaryFormat: binary,
    sessionManager: sessions,
    readMaxBytes,
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
    ...(defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs }),
    ...(options.jsonOptions ? { jsonOptions: options.jsonOptions } : {}),
    ...(options.binaryOptions ? { binaryOptions: options.binaryOptions } : {}),
  });

  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      // Connect's timeout rules: undefined → the default, <= 0 → none.
      const timeout = timeoutMs === undefined ? defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs;
      const cancellation = new CallCancellation(signal, timeout);
      let result: Promise<UnaryResponse<I, O>>;
      try {
        const request = {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: `${urlPrefix}/${method.parent.typeName}/${method.name}`,
          header: requestHeader(method.methodKind, binary, timeout, header, true),
          contextValues: contextValues ?? createContextValues(),
          message: create(method.input, input),
          get signal() {
            return cancellation.signal;
          },
        } as const;
        (request as MarkedRequest)[cancellationKey] = { cancellation, original: request };
        result = intercepted(request as unknown as UnaryRequest) as Promise<UnaryResponse<I, O>>;
      } catch (error) {
        result = Promise.reject(error); // a bad input or header, or an interceptor that threw instead of rejecting
      }
      return result.then(
        (response) => {
          cancellation.dispose();
          return response;
        },
        (error: unknown) => {
          cancellation.dispose();
          // A cancelled or timed-out call fails with that reason, whatever the exchange saw (as runUnaryCall).
          throw cancellation.aborted ? ConnectError.from(cancellation.reason, Code.Canceled) : ConnectError.from(error);
        },
      );
    },

    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      return streams.stream(method, signal, timeoutMs, header, input, contextValues);
    },

    close: () => sessions.close(),
  };
}

/**
 * What aborts the exchange of `request`: the call's own cancellation (no AbortSignal needed) while
 * the request's signal is still the call's, else the signal an interceptor put in its place.
 */
function abortableOf(request: UnaryRequest): Abortable {
  const mark = (request as MarkedRequest)[cancellationKey];
  if (mark && (request === mark.original || mark.cancellation.owns(request.signal))) return mark.cancellation;
  return abortableSignal(request.signal);
}
