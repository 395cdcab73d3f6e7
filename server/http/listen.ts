// One plaintext port for every client: browsers, curl and Connect/gRPC-Web clients speak HTTP/1.1,
// while gRPC clients (grpc-js, grpc-go, buf curl --protocol grpc, grpcurl -plaintext) speak HTTP/2
// cleartext with prior knowledge. Node's http2 server only offers allowHTTP1 with TLS, so a plain
// net.Server sniffs the first bytes of each connection for the HTTP/2 client preface and hands the
// socket to an http2 or an http server that share the same request handler.
// With TLS (`tls` option) the port speaks TLS instead: ALPN picks HTTP/2 ("h2": gRPC, Connect over
// h2) or HTTP/1.1 (browsers, curl, Connect JSON, gRPC-Web, REST), handed to the same two servers.
// close() drains gracefully (GOAWAY for HTTP/2 sessions, "Connection: close" / closing idle
// keep-alive sockets for HTTP/1.1) and destroys whatever is left after a bounded delay, which is
// what a SIGTERM handler needs.

import type http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type http2 from "node:http2";
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session, ServerHttp2Stream } from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";
import tls, { type TLSSocket } from "node:tls";
import {
  type ConnectionLimits,
  createHttp1Server,
  createHttp2Server,
  defaultConnectionLimits,
  requireRequestInTime,
  startRequestDeadlines,
  watchSessionIdleness,
} from "./connection-limits.js";
import { countClientResets } from "./client-resets.js";

/** What `connectNodeAdapter({ routes })` returns. */
export type NodeHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

export interface ListenOptions {
  /** Interface to bind, e.g. "0.0.0.0", "::" or "127.0.0.1". Default: Node's default (all interfaces). */
  host?: string;
  /** 0 picks a free port; the chosen one is returned. */
  port: number;
  /** How long close() waits for in-flight requests before destroying connections. Default 5000. */
  shutdownTimeoutMs?: number;
  /** Connections that send nothing for this long before protocol detection are dropped. Default 10000. */
  detectTimeoutMs?: number;
  /** Server- and session-level errors (not per-socket network errors, which are routine). */
  onError?: (err: Error) => void;
  /** Serve TLS: PEM certificate chain and private key. HTTP/2 is negotiated by ALPN, HTTP/1.1 otherwise. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Header, request and idle deadlines, the connection cap and HTTP/2's stream cap (see connection-limits.ts). */
  limits?: ConnectionLimits;
  /** An HTTP/2 stream the client reset (RST_STREAM) before it ended (client-resets.ts). */
  onClientReset?: () => void;
}

export interface Listening {
  /** The listening socket server. */
  readonly server: net.Server;
  /** The HTTP/1.1 and HTTP/2 servers the connections are handed to (for timeouts and settings). */
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  readonly host: string;
  readonly port: number;
  /** Whether the port speaks TLS. */
  readonly tls: boolean;
  /** Stop accepting, drain gracefully, force-close after shutdownTimeoutMs. Idempotent. */
  close(): Promise<void>;
}

/** RFC 9113 section 3.4: every HTTP/2 connection starts with these 24 bytes. */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export function listen(handler: NodeHandler, options: ListenOptions): Promise<Listening> {
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 5000;
  const detectTimeoutMs = options.detectTimeoutMs ?? 10_000;
  const report = (err: Error): void => options.onError?.(err);
  const limits = options.limits ?? defaultConnectionLimits;

  let closing = false;
  const sockets = new Set<Socket>(); // every accepted connection, until it closes
  const sniffing = new Set<Socket>(); // protocol not known yet
  const inflight = new Map<Socket, number>(); // HTTP/1.1 sockets -> requests being answered
  const sessions = new Set<ServerHttp2Session>();

  const http1 = createHttp1Server(limits);
  startRequestDeadlines(http1);
  http1.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    inflight.set(socket, (inflight.get(socket) ?? 0) + 1);
    if (closing && !res.headersSent) res.setHeader("connection", "close");
    res.once("close", () => {
      const left = (inflight.get(socket) ?? 1) - 1;
      if (inflight.has(socket)) inflight.set(socket, left);
      // The response went out before close() could ask for "Connection: close": end it here.
      if (closing && left === 0) socket.end();
    });
  });
  http1.on("request", handler);

  const h2 = createHttp2Server(limits);
  h2.on("request", handler);
  h2.on("stream", (stream: ServerHttp2Stream) => {
    requireRequestInTime(stream, limits);
    if (options.onClientReset) countClientResets(stream, options.onClientReset);
  });
  h2.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    watchSessionIdleness(session, limits);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  h2.on("sessionError", report);

  const handOff = (socket: Socket, head: Buffer, isHttp2: boolean): void => {
    sniffing.delete(socket);
    socket.pause();
    if (head.length > 0) socket.unshift(head);
    if (isHttp2) {
      // The session reads the unshifted bytes itself (socket.readableLength) on the next tick.
      h2.emit("connection", socket);
    } else {
      inflight.set(socket, 0);
      socket.once("close", () => inflight.delete(socket));
      http1.emit("connection", socket);
      socket.resume(); // replays `head` to the parser before any new bytes can arrive
    }
  };

  /** Every accepted TCP connection, until it closes (close() destroys what is left after the timeout). */
  const track = (socket: Socket): boolean => {
    // Network errors (resets, timeouts) are routine; the owning server cleans up on "close".
    socket.on("error", () => socket.destroy());
    if (closing) {
      socket.destroy();
      return false;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    return true;
  };

  const sniff = (socket: Socket): void => {
    sniffing.add(socket);
    socket.once("close", () => sniffing.delete(socket));

    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), detectTimeoutMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, PREFACE.length);
      const matches = head.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (matches && head.length < PREFACE.length) return; // could still be HTTP/2: wait for more
      socket.off("data", onData);
      socket.off("end", onEnd);
      clearTimeout(timer);
      handOff(socket, head, matches);
    };
    const onEnd = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
  };

  let server: net.Server;
  if (options.tls) {
    const secure = tls.createServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: ["h2", "http/1.1"],
      handshakeTimeout: detectTimeoutMs,
    });
    secure.on("connection", (socket: Socket) => {
      socket.setNoDelay(true);
      track(socket);
    });
    // Failed handshakes (plaintext clients, untrusted certificates) are routine, like resets.
    secure.on("tlsClientError", (_err: Error, socket: TLSSocket) => socket.destroy());
    secure.on("secureConnection", (socket: TLSSocket) => {
      socket.on("error", () => socket.destroy());
      if (closing) {
        socket.destroy();
        return;
      }
      // RFC 9113 §3.2: HTTP/2 over TLS is chosen by ALPN; without it the client speaks HTTP/1.1.
      handOff(socket, Buffer.alloc(0), socket.alpnProtocol === "h2");
    });
    server = secure;
  } else {
    server = net.createServer({ noDelay: true }, (socket) => {
      if (track(socket)) sniff(socket);
    });
  }

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      closing = true;
      const force = setTimeout(() => {
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, shutdownTimeoutMs);
      force.unref();
      // Resolves once the listening socket is closed and every accepted connection has ended.
      server.close(() => {
        clearTimeout(force);
        // Stops Node's request-deadline timer (startRequestDeadlines); the server never listened, hence the error it passes.
        http1.close(() => {});
        resolve();
      });
      for (const socket of sniffing) socket.destroy();
      for (const [socket, count] of inflight) if (count === 0) socket.destroy(); // idle keep-alive
      for (const session of sessions) session.close(); // GOAWAY, then close when streams finish
    });
    return closed;
  };

  server.maxConnections = limits.maxConnections;
  return new Promise<Listening>((resolve, reject) => {
    const onListenError = (err: Error): void => reject(err);
    server.once("error", onListenError);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off("error", onListenError);
      server.on("error", report);
      const address = server.address() as AddressInfo;
      resolve({ server, http1, http2: h2, host: address.address, port: address.port, tls: options.tls !== undefined, close });
    });
  });
}
