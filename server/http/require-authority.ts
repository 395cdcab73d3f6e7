/**
 * connect-node's adapter builds each request's URL from its authority (HTTP/2 `:authority`, HTTP/1.1
 * `Host`) and throws, synchronously and out of the request listener, when there is none (an HTTP/1.0
 * request without Host) or when it does not make a URL (`Host: a b`, `Host: x:99999`). Uncaught, one such
 * request ends the server process. This guard, in front of the adapter, answers those requests 400 itself.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { NodeHandler } from "./listen.js";

/** The request URL as Connect's adapter builds it, or undefined where the adapter would throw. */
export function connectRequestUrl(req: IncomingMessage | Http2ServerRequest): string | undefined {
  const authority = "authority" in req ? req.authority : req.headers.host;
  if (authority === undefined) return undefined;
  const encrypted = "encrypted" in req.socket && req.socket.encrypted === true;
  try {
    return new URL(req.url ?? "", `${encrypted ? "https" : "http"}://${authority}`).toString();
  } catch {
    return undefined;
  }
}

export function withValidAuthority(next: NodeHandler): NodeHandler {
  return (req, res) => {
    if (connectRequestUrl(req) !== undefined) {
      next(req, res);
      return;
    }
    const body = JSON.stringify({ code: "invalid_argument", message: "the request names no valid authority: send a Host header with a host name and port" });
    res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
}
