/**
 * A slow-client flood against every server while the chaos workload runs: connections that hold a server's
 * sockets without ever finishing a request, and watch streams that never read what they are sent.
 *
 *   half-header  HTTP/1.1, half a request head and nothing more           → 408 and closed at the header deadline
 *   trickle      HTTP/1.1, a full head announcing 100 kB, then one byte a
 *                second                                                   → 408 and closed at the request deadline
 *   preface      HTTP/2, the client preface alone (no SETTINGS, no stream) → closed at the header deadline
 *   watch-h1     WatchRuns over HTTP/1.1 (Connect streaming), socket paused → held: a quiet stream is legitimate
 *   watch-h2     WatchRuns over HTTP/2, stream paused (flow control fills)  → held
 *
 * Each lane keeps its connections open: when one ends, another replaces it. The flood connects from its own
 * loopback address (127.0.0.2), so its watch streams count against a peer of their own (open mode's per-peer
 * stream cap), not against the driver's and agent workers' 127.0.0.1.
 *
 * A connection of the first three kinds still open `slackMs` after its deadline was held past it: an overdue
 * connection, which the chaos run reports as a violation. (A server paused with SIGSTOP closes nothing while it is
 * stopped, and one starved of CPU checks its deadlines late, hence the slack.) Closes before the deadline are
 * counted as cut short (a server killed under them).
 */
import http2 from "node:http2";
import net from "node:net";

export type FloodKind = "half-header" | "trickle" | "preface" | "watch-h1" | "watch-h2";

export interface FloodOptions {
  ports: readonly number[];
  /** Connections per server of each kind. */
  perServer: Record<FloodKind, number>;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** How late past its deadline a server may close a connection before it counts as overdue. */
  slackMs: number;
  localAddress?: string;
}

export interface KindFigures {
  opened: number;
  /** Closed by the server at (not before) the deadline of their kind. */
  closedByDeadline: number;
  /** Closed before their deadline: the server went away (SIGKILL) or refused them. */
  cutShort: number;
  /** Still open `slackMs` past their deadline (each counted once). */
  overdue: number;
  /** Open when the flood stopped. */
  openAtEnd: number;
  /** Latest close after the deadline, in ms past it. */
  maxLateMs: number;
}

export type FloodFigures = Record<FloodKind, KindFigures>;

const kinds: readonly FloodKind[] = ["half-header", "trickle", "preface", "watch-h1", "watch-h2"];
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export class SlowClientFlood {
  private running = false;
  private readonly lanes: Promise<void>[] = [];
  private readonly open = new Set<() => void>();
  readonly figures: FloodFigures = Object.fromEntries(
    kinds.map((kind) => [kind, { opened: 0, closedByDeadline: 0, cutShort: 0, overdue: 0, openAtEnd: 0, maxLateMs: 0 }]),
  ) as FloodFigures;

  constructor(private readonly options: FloodOptions) {}

  start(): void {
    this.running = true;
    for (const port of this.options.ports) {
      for (const kind of kinds) {
        for (let i = 0; i < this.options.perServer[kind]; i++) this.lanes.push(this.lane(kind, port));
      }
    }
  }

  /** Ends every flood connection; resolves with the figures once every lane has stopped. */
  async stop(): Promise<FloodFigures> {
    this.running = false;
    for (const end of [...this.open]) end();
    await Promise.all(this.lanes);
    return this.figures;
  }

  private async lane(kind: FloodKind, port: number): Promise<void> {
    // Staggered, so the lanes do not all reconnect in step.
    await sleep(Math.random() * 1000);
    while (this.running) {
      const refused = await this.once(kind, port);
      await sleep(refused ? 500 : 50);
    }
  }

  /** One connection of `kind`, from open to close; true when it could not connect (the server is down). */
  private once(kind: FloodKind, port: number): Promise<boolean> {
    return kind === "watch-h2" || kind === "preface" ? this.h2(kind, port) : this.h1(kind, port);
  }

  private deadlineOf(kind: FloodKind): number | undefined {
    if (kind === "half-header" || kind === "preface") return this.options.headersTimeoutMs;
    if (kind === "trickle") return this.options.requestTimeoutMs;
    return undefined;
  }

  /** Bookkeeping shared by both protocols: the overdue timer, the outcome of the close, the stop hook. */
  private track(kind: FloodKind, destroy: () => void): { closed: (byServer: boolean) => void } {
    const figures = this.figures[kind];
    const deadline = this.deadlineOf(kind);
    const began = Date.now();
    let connected = true;
    const overdue =
      deadline === undefined
        ? undefined
        : setTimeout(() => {
            if (connected) figures.overdue++;
          }, deadline + this.options.slackMs);
    const end = () => {
      if (connected) figures.openAtEnd++;
      connected = false;
      destroy();
    };
    this.open.add(end);
    return {
      closed: (byServer) => {
        clearTimeout(overdue);
        this.open.delete(end);
        if (!connected) return; // ended by stop()
        connected = false;
        if (!byServer) return;
        const lived = Date.now() - began;
        if (deadline !== undefined && lived >= deadline - 100) {
          figures.closedByDeadline++;
          figures.maxLateMs = Math.max(figures.maxLateMs, lived - deadline);
        } else {
          figures.cutShort++;
        }
      },
    };
  }

  private h1(kind: FloodKind, port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.connect({ port, host: "127.0.0.1", ...(this.options.localAddress ? { localAddress: this.options.localAddress } : {}) });
      let trickle: NodeJS.Timeout | undefined;
      let tracked: ReturnType<SlowClientFlood["track"]> | undefined;
      socket.on("error", () => {});
      socket.once("connect", () => {
        this.figures[kind].opened++;
        tracked = this.track(kind, () => socket.destroy());
        // Read what the server says (its 408), so that its close is seen: a socket never read never hears the FIN.
        if (kind !== "watch-h1") socket.on("data", () => {});
        if (kind === "half-header") {
          socket.write(`POST /cairn.v1.WorkflowService/GetRun HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Ty`);
        } else if (kind === "trickle") {
          socket.write(
            `POST /cairn.v1.WorkflowService/GetRun HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`,
          );
          trickle = setInterval(() => socket.write(" "), 1000);
        } else {
          const body = Buffer.from("{}");
          const envelope = Buffer.alloc(5 + body.length);
          envelope.writeUInt32BE(body.length, 1);
          body.copy(envelope, 5);
          socket.write(
            `POST /cairn.v1.WorkflowService/WatchRuns HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/connect+json\r\n` +
              `Connect-Protocol-Version: 1\r\nContent-Length: ${envelope.length}\r\n\r\n`,
          );
          socket.write(envelope);
          // Never read: the server's writes fill the socket buffers and it must hold them within its budgets.
          socket.pause();
        }
      });
      socket.once("close", () => {
        clearInterval(trickle);
        if (!tracked) return resolve(true);
        // A paused socket sees the server's FIN only when read: watch-h1 closes count as the server's when not ours.
        tracked.closed(true);
        resolve(false);
      });
    });
  }

  private h2(kind: FloodKind, port: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (kind === "preface") {
        // Raw bytes: the preface and nothing else (an http2 client would send SETTINGS at once).
        const socket = net.connect({ port, host: "127.0.0.1", ...(this.options.localAddress ? { localAddress: this.options.localAddress } : {}) });
        let tracked: ReturnType<SlowClientFlood["track"]> | undefined;
        socket.on("error", () => {});
        socket.on("data", () => {}); // the server's SETTINGS and GOAWAY
        socket.once("connect", () => {
          this.figures[kind].opened++;
          tracked = this.track(kind, () => socket.destroy());
          socket.write(PREFACE);
        });
        socket.once("close", () => {
          if (!tracked) return resolve(true);
          tracked.closed(true);
          resolve(false);
        });
        return;
      }
      const session = http2.connect(`http://127.0.0.1:${port}`, {
        createConnection: () => net.connect({ port, host: "127.0.0.1", ...(this.options.localAddress ? { localAddress: this.options.localAddress } : {}) }),
      });
      let tracked: ReturnType<SlowClientFlood["track"]> | undefined;
      session.on("error", () => {});
      session.once("connect", () => {
        this.figures[kind].opened++;
        tracked = this.track(kind, () => session.destroy());
        const stream = session.request({
          ":method": "POST",
          ":path": "/cairn.v1.WorkflowService/WatchRuns",
          "content-type": "application/connect+json",
          "connect-protocol-version": "1",
        });
        stream.on("error", () => {});
        const body = Buffer.from("{}");
        const envelope = Buffer.alloc(5 + body.length);
        envelope.writeUInt32BE(body.length, 1);
        body.copy(envelope, 5);
        stream.end(envelope);
        // Never read: HTTP/2 flow control stops the server once the window is full.
        stream.pause();
      });
      session.once("close", () => {
        if (!tracked) return resolve(true);
        tracked.closed(true);
        resolve(false);
      });
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One line per kind, for the chaos report. */
export function describeFlood(figures: FloodFigures): string[] {
  return kinds.map((kind) => {
    const f = figures[kind];
    const watch = kind.startsWith("watch");
    return (
      `${kind.padEnd(11)} ${f.opened} opened; ` +
      (watch
        ? `${f.openAtEnd} held open (never read) until the flood stopped, ${f.cutShort} ended by the server (a restart)`
        : `${f.closedByDeadline} closed by the server at its deadline (at most ${(f.maxLateMs / 1000).toFixed(1)} s late), ${f.cutShort} cut short by a restart, ` +
          `${f.overdue} overdue, ${f.openAtEnd} open at the end`)
    );
  });
}
