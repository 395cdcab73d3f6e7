/**
 * Deadlines and caps on the connections of the API port, so that slow or idle clients cannot hold the
 * server's sockets and memory:
 *
 * - HTTP/1.1: the request headers must arrive within `headersTimeoutMs` and the whole request within
 *   `requestTimeoutMs` (Node answers 408 and closes). Node checks both from a timer that `http.Server` starts
 *   when it begins listening; our http.Server never listens (sockets are handed to it by the port's sniffer),
 *   so `startRequestDeadlines` starts it the same way. test/e2e/front-door.test.ts fails if Node changes that.
 * - HTTP/2: a session must open its first stream within `headersTimeoutMs`, and a session without open
 *   streams for `idleTimeoutMs` is closed (GOAWAY; clients reconnect). A session's quiet streams (a WatchRun
 *   with nothing to say) keep it open. Each stream must deliver its whole request within `requestTimeoutMs`
 *   or it is cancelled. `maxConcurrentStreams` is announced in the session's SETTINGS.
 * - `maxConnections`: connections over the cap are closed as they are accepted.
 */
import http from "node:http";
import http2, { type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import { resetByServer } from "./client-resets.js";

export interface ConnectionLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  maxConcurrentStreams: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxConnections: 10_000,
  maxConcurrentStreams: 1000,
};

export function createHttp1Server(limits: ConnectionLimits): http.Server {
  return http.createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // How often Node checks those two deadlines: a tenth of the shorter, between 50 ms and 1 s.
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10))),
  });
}

/** Starts Node's checks of headersTimeout and requestTimeout on a server that is never told to listen itself. */
export function startRequestDeadlines(server: http.Server): void {
  server.emit("listening");
}

export function createHttp2Server(limits: ConnectionLimits): http2.Http2Server {
  return http2.createServer({ settings: { maxConcurrentStreams: limits.maxConcurrentStreams } });
}

/** The first-stream deadline and the idle timeout of one HTTP/2 session. */
export function watchSessionIdleness(session: ServerHttp2Session, limits: ConnectionLimits): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (open > 0) return;
      // GOAWAY: a stream the client sent meanwhile still finishes; whatever is left after a second is dropped.
      session.close();
      setTimeout(() => session.destroy(), 1000).unref();
    }, ms);
    timer.unref();
  };
  arm(limits.headersTimeoutMs);
  session.on("stream", (stream: ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      if (--open === 0 && !session.closed) arm(limits.idleTimeoutMs);
    });
  });
  session.once("close", () => clearTimeout(timer));
}

/** The whole request of one HTTP/2 stream must arrive in time; the response may take as long as it takes. */
export function requireRequestInTime(stream: ServerHttp2Stream, limits: ConnectionLimits): void {
  if (stream.readableEnded || stream.endAfterHeaders) return;
  const timer = setTimeout(() => {
    if (stream.destroyed) return;
    resetByServer(stream, http2.constants.NGHTTP2_CANCEL);
  }, limits.requestTimeoutMs);
  timer.unref();
  // Both listeners go with the timer: a server stream (WatchRun) stays open for hours after its request ended.
  const done = () => {
    clearTimeout(timer);
    stream.off("end", done);
    stream.off("close", done);
  };
  stream.once("end", done);
  stream.once("close", done);
}
