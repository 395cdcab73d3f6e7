/**
 * The API key, checked from the request headers before the body is read (CAIRN_AUTH=keys).
 *
 * The auth interceptor runs after Connect (or the unary lane, or the REST routes) has read and decoded the
 * request body, so a caller without a valid key could make the server read and decode up to
 * CAIRN_MAX_REQUEST_BYTES per request. This gate, in front of them, authenticates calls to the API's services
 * and REST routes from their headers alone (server/auth/authenticate.ts: the failed-auth limit per peer, then
 * the key cache) and refuses the rest unread, in the wire format of the call's protocol:
 *
 *   Connect unary, Connect GET, REST  HTTP 401 (429 over the failed-auth limit), JSON {"code", "message"},
 *                                     the error's metadata (retry-after, retry-after-ms) as headers
 *   Connect streaming                 HTTP 200, an end-stream message carrying the error
 *   gRPC                              HTTP 200, grpc-status 16 (8) and grpc-message in the trailers
 *   gRPC-Web                          HTTP 200, the same trailers as the body's trailer frame
 *
 * The unread body is dropped, not read: on HTTP/2 the stream is reset with NO_ERROR after the answer (RFC 9113
 * §8.1: the client stops sending); on HTTP/1.1 the connection is closed after the answer unless the rest of the
 * body is small (at most 64 KiB declared), which Node then discards to keep the connection. A verified key is
 * remembered for the request and handed to the auth interceptor as a context value (`requestContextValues`),
 * which then checks roles and rate limits without a second lookup.
 *
 * Not gated: preflights (OPTIONS), health and reflection when they need no key, paths that are neither a
 * service of ours nor a REST route (answered 404 as before), and everything in open mode (the gate is not
 * installed). A key lookup that fails (the store is down) lets the call through unverified: the interceptor
 * tries again and maps the failure to UNAVAILABLE as before.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorToJson } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { authenticate, presentedKey } from "../auth/authenticate.js";
import type { KeyCache, VerifiedKey } from "../auth/key-cache.js";
import type { RateLimiter } from "../auth/rate-limit.js";
import type { Logger } from "../logger.js";
import type { NodeHandler } from "./listen.js";
import { pathOf } from "./rest.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

export interface KeyGateOptions {
  keys: KeyCache;
  failedAuthLimiter?: RateLimiter | undefined;
  /** Fully qualified names of the services whose calls need a key (`cairn.v1.WorkflowService`...). */
  services: Iterable<string>;
  /** Paths of the REST routes: each path and everything under it needs a key. */
  restPaths: readonly string[];
  logger: Logger;
  /** Told of every refusal (the RPC metrics count them, as they counted the interceptor's). */
  onRefused?: (path: string, error: ConnectError) => void;
}

/** Requests whose key the gate verified, with the key: read by `keyVerifiedAtGate`. */
const verified = new WeakMap<Request, VerifiedKey>();

/** The key the gate verified for this request, if it did. */
export function keyVerifiedAtGate(req: Request): VerifiedKey | undefined {
  return verified.get(req);
}

/** HTTP/1.1 bodies up to this size (declared) are discarded after a refusal, keeping the connection. */
const drainableBytes = 64 * 1024;

export function withKeyGate(next: NodeHandler, options: KeyGateOptions): NodeHandler {
  const { keys, failedAuthLimiter, logger, restPaths } = options;
  const services = new Set(options.services);
  const gated = (path: string): boolean => {
    if (restPaths.some((root) => path === root || path.startsWith(`${root}/`))) return true;
    const slash = path.indexOf("/", 1);
    return slash > 1 && services.has(path.slice(1, slash));
  };

  return (req, res) => {
    const path = pathOf(req.url);
    if (req.method === "OPTIONS" || !gated(path)) {
      next(req, res);
      return;
    }
    const peer = req.socket?.remoteAddress ?? "unknown";
    const presented = presentedKey((name) => {
      const value = req.headers[name];
      return typeof value === "string" ? value : undefined;
    });
    authenticate(presented, peer, { keys, failedAuthLimiter }).then(
      (authentication) => {
        if (authentication.ok) {
          verified.set(req, authentication.key);
          next(req, res);
          return;
        }
        const { error, keyId } = authentication;
        logger.info({ keyId, path, code: Code[error.code], peer, retryAfterMs: error.metadata.get("retry-after-ms") ?? undefined }, "request refused before its body was read");
        options.onRefused?.(path, error);
        refuse(req, res, error);
      },
      // The store could not be asked: the interceptor asks again and maps the failure (UNAVAILABLE).
      () => next(req, res),
    );
  };
}

/** Answers `error` in the call's protocol, without reading the request body, and drops the rest of the body. */
function refuse(req: Request, res: Response, error: ConnectError): void {
  answer(req, res, error);
  if (req.httpVersionMajor === 2) {
    // Once the answer has been written (a stream whose writable side is ending sends the reset after it finishes):
    // RST_STREAM NO_ERROR tells the client to stop sending the body.
    const stream = (req as Http2ServerRequest).stream;
    if (!req.readableEnded && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }
}

function answer(req: Request, res: Response, error: ConnectError): void {
  const contentType = (typeof req.headers["content-type"] === "string" ? req.headers["content-type"] : "").toLowerCase();
  if (req.httpVersionMajor === 1 && !drainable(req)) res.setHeader("connection", "close");
  if (contentType.startsWith("application/grpc-web")) {
    const trailer = new Headers();
    setTrailerStatus(trailer, error);
    const frame = encodeEnvelope(trailerFlag, trailerSerialize(trailer));
    const body = contentType.startsWith("application/grpc-web-text") ? Buffer.from(Buffer.from(frame).toString("base64"), "latin1") : Buffer.from(frame);
    res.writeHead(200, { "content-type": contentType.split(";")[0] as string, "content-length": body.byteLength });
    res.end(body);
  } else if (contentType.startsWith("application/grpc")) {
    // Trailers-only (the status in the one HEADERS frame, which ends the stream): sent whole before the reset, where
    // trailers after the headers could be overtaken by it.
    const trailer = new Headers();
    setTrailerStatus(trailer, error);
    const headers: Record<string, string> = { "content-type": contentType.split(";")[0] as string };
    trailer.forEach((value, name) => (headers[name] = value));
    if (req.httpVersionMajor === 2) (res as Http2ServerResponse).stream.respond({ ":status": 200, ...headers }, { endStream: true });
    else res.writeHead(200, headers).end();
  } else if (contentType.startsWith("application/connect+")) {
    const json = endStreamToJson(error.metadata, error, undefined);
    const body = Buffer.from(encodeEnvelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(json))));
    res.writeHead(200, { "content-type": contentType.split(";")[0] as string, "content-length": body.byteLength });
    res.end(body);
  } else {
    // Connect unary and GET calls, and the REST routes: the same JSON error and status both answer.
    const body = Buffer.from(JSON.stringify(errorToJson(error, undefined)), "utf8");
    const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": body.byteLength };
    error.metadata.forEach((value, name) => (headers[name] = value));
    res.writeHead(codeToHttpStatus(error.code), headers);
    res.end(body);
  }
}

/** Whatever is left of this HTTP/1.1 request's body is small enough to discard rather than close the connection. */
function drainable(req: Request): boolean {
  if (req.complete) return true;
  if (req.headers["transfer-encoding"] !== undefined) return false;
  const declared = req.headers["content-length"];
  return declared === undefined || Number(declared) <= drainableBytes;
}
