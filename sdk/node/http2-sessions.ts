/**
 * The HTTP/2 connections of one Node transport (sdk/node-transport.ts): usually a single session
 * to the server, opened on the first call and reopened after it closes, fails or receives GOAWAY.
 * A session whose open streams reach the peer's SETTINGS_MAX_CONCURRENT_STREAMS gets a sibling
 * rather than a queue (as Go's HTTP/2 client does). An idle session is unref'd, so it never keeps
 * the process alive, and closed after `idleTimeoutMs`.
 *
 * It also serves @connectrpc/connect-node's streaming calls (it satisfies that package's
 * `NodeHttp2ClientSessionManager`), so unary calls and WatchRun streams share the connection.
 *
 * Node only.
 */
import http2 from "node:http2";

export interface Http2SessionsOptions {
  /** Options of `http2.connect`, e.g. `ca` for a private CA. */
  connectOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
  /** A session without open streams is closed after this long. Default 15 minutes (as connect-node). */
  idleTimeoutMs?: number;
}

/** What a peer is assumed to allow until it says (RFC 9113 §6.5.2 recommends at least 100; Node assumes 100). */
const assumedMaxConcurrentStreams = 100;
const defaultIdleTimeoutMs = 15 * 60 * 1000;

/** One session and the streams open on it. */
class PooledSession {
  openStreams = 0;
  /** GOAWAY received, closed or failed: no new streams go here. */
  retired = false;
  private idleSince = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly session: http2.ClientHttp2Session,
    private readonly idleTimeoutMs: number,
  ) {
    // No stream yet: the first one refs it.
    session.unref();
  }

  /** `peerLimit`: the limit the peer announced on another session, for a session whose SETTINGS have not arrived yet. */
  hasRoom(peerLimit: number | undefined): boolean {
    if (this.retired || this.session.closed || this.session.destroyed) return false;
    // remoteSettings is {} until the peer's SETTINGS frame arrives.
    return this.openStreams < (this.session.remoteSettings.maxConcurrentStreams ?? peerLimit ?? assumedMaxConcurrentStreams);
  }

  streamOpened(): void {
    if (this.openStreams++ === 0) this.session.ref();
  }

  streamClosed(): void {
    if (--this.openStreams > 0) return;
    // Idle: let the process exit, and close the session if it stays idle. One timer per idle
    // period rather than a clearTimeout/setTimeout pair per call: it re-arms itself if the
    // session was busy in between.
    this.session.unref();
    if (this.retired) return;
    this.idleSince = Date.now();
    this.idleTimer ??= this.armIdleTimer(this.idleTimeoutMs);
  }

  private armIdleTimer(ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.idleTimer = undefined;
      if (this.openStreams > 0 || this.retired) return;
      const idleFor = Date.now() - this.idleSince;
      if (idleFor >= this.idleTimeoutMs) {
        this.retired = true;
        this.session.close();
      } else {
        this.idleTimer = this.armIdleTimer(this.idleTimeoutMs - idleFor);
      }
    }, ms).unref();
  }

  retire(): void {
    this.retired = true;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

export class Http2Sessions {
  /** The origin every session connects to, e.g. "http://127.0.0.1:8080" (connect-node checks request URLs against it). */
  readonly authority: string;
  private readonly connectOptions: http2.ClientSessionOptions | http2.SecureClientSessionOptions | undefined;
  private readonly idleTimeoutMs: number;
  /** Sessions that take new streams, oldest first. Retired ones leave this list and finish on their own. */
  private sessions: PooledSession[] = [];
  /**
   * The peer's SETTINGS_MAX_CONCURRENT_STREAMS as last announced. A new session gets no SETTINGS
   * before it connects; streams opened on it meanwhile beyond the peer's limit would be refused.
   */
  private peerLimit: number | undefined;

  constructor(baseUrl: string, options: Http2SessionsOptions = {}) {
    this.authority = new URL(baseUrl).origin;
    this.connectOptions = options.connectOptions;
    this.idleTimeoutMs = Math.max(1, options.idleTimeoutMs ?? defaultIdleTimeoutMs);
  }

  /**
   * Opens a request stream on a session with room, connecting one if needed. Streams may be
   * opened before the session has connected: Node sends them once it has. Throws only when the
   * request cannot be made at all (e.g. invalid headers).
   */
  open(headers: http2.OutgoingHttpHeaders, options?: http2.ClientSessionRequestOptions): http2.ClientHttp2Stream {
    for (let attempt = 1; ; attempt++) {
      const pooled = this.sessionWithRoom();
      let stream: http2.ClientHttp2Stream;
      try {
        stream = pooled.session.request(headers, options);
      } catch (error) {
        // The session was destroyed or received GOAWAY since we looked: try a new one, once.
        if (!isGoneSessionError(error)) throw error;
        this.retire(pooled);
        if (attempt >= 2) throw error;
        continue;
      }
      pooled.streamOpened();
      stream.once("close", () => pooled.streamClosed());
      return stream;
    }
  }

  /** For connect-node's streaming calls (`NodeHttp2ClientSessionManager.request`). */
  async request(method: string, path: string, headers: http2.OutgoingHttpHeaders, options: Omit<http2.ClientSessionRequestOptions, "signal">): Promise<http2.ClientHttp2Stream> {
    return this.open({ ...headers, ":method": method, ":path": path }, options);
  }

  /** connect-node reports reads for its keep-alive PINGs; this pool sends none (as connect-node by default). */
  notifyResponseByteRead(): void {}

  /** Closes every session once its open streams have finished; the next call opens a new one. */
  close(): void {
    const sessions = this.sessions;
    this.sessions = [];
    for (const pooled of sessions) {
      pooled.retire();
      pooled.session.close();
    }
  }

  private sessionWithRoom(): PooledSession {
    for (const pooled of this.sessions) if (pooled.hasRoom(this.peerLimit)) return pooled;
    const pooled = this.connect();
    this.sessions.push(pooled);
    return pooled;
  }

  private connect(): PooledSession {
    const session = http2.connect(this.authority, this.connectOptions);
    const pooled = new PooledSession(session, this.idleTimeoutMs);
    const retire = () => this.retire(pooled);
    session.on("remoteSettings", (settings) => {
      if (settings.maxConcurrentStreams !== undefined) this.peerLimit = settings.maxConcurrentStreams;
    });
    // After GOAWAY the session takes no new streams; those in flight finish (Node closes it then).
    session.on("goaway", retire);
    session.once("close", retire);
    // Connection failures reach each stream as its own error; this listener keeps them from being thrown.
    session.on("error", retire);
    return pooled;
  }

  private retire(pooled: PooledSession): void {
    pooled.retire();
    const index = this.sessions.indexOf(pooled);
    if (index >= 0) this.sessions.splice(index, 1);
  }
}

function isGoneSessionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === "ERR_HTTP2_INVALID_SESSION" || code === "ERR_HTTP2_GOAWAY_SESSION";
}
