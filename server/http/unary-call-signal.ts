/**
 * The abort signal of a unary call on the fast lane (`unary-lane.ts`): the same
 * `context.signal` the Connect adapter gives a handler, built for less.
 *
 * Connect links three signals per call (a deadline controller, the request's
 * own controller, the shutdown signal) into a fourth controller, and aborts it
 * in a `finally` on every call, which builds a DOMException with a stack trace.
 * Here a call has one AbortController, aborted only when something really ends
 * the call:
 *
 * - its deadline (`connect-timeout-ms`) passes: reason ConnectError
 *   DEADLINE_EXCEEDED "the operation timed out", as Connect's, which
 *   `server/rpc/deadline.ts` tells apart from other aborts;
 * - the client goes away (the response closes before the call settled), with
 *   the reason Connect's Node adapter gives: the HTTP/2 reset code as a
 *   ConnectError, or the request's error, or none (an AbortError);
 * - the server shuts down: one listener on the shutdown signal aborts every
 *   call in flight with the shutdown signal's reason, rather than one listener
 *   per call;
 * - the call fails: aborted with its error, as Connect does before it answers.
 *
 * A call that succeeds is settled without aborting; nothing in Cairn relies on
 * the signal aborting after a call has answered.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

export class UnaryCallSignals {
  private readonly inFlight = new Set<UnaryCallSignal>();

  constructor(private readonly shutdownSignal: AbortSignal | undefined) {
    shutdownSignal?.addEventListener(
      "abort",
      () => {
        for (const call of this.inFlight) call.abort(shutdownSignal.reason);
        this.inFlight.clear();
      },
      { once: true },
    );
  }

  /** A signal for one call; `timeoutMs` is the parsed `connect-timeout-ms`, if any. */
  open(timeoutMs: number | undefined): UnaryCallSignal {
    const call = new UnaryCallSignal(this.inFlight, timeoutMs);
    // Connect's order: a deadline already passed wins over a shutdown already under way.
    if (!call.signal.aborted && this.shutdownSignal?.aborted) call.abort(this.shutdownSignal.reason);
    if (!call.signal.aborted) this.inFlight.add(call);
    return call;
  }
}

export class UnaryCallSignal {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private settled = false;
  /** As `HandlerContext.timeoutMs`: the time left before the deadline, or undefined without one. */
  readonly timeoutMs: () => number | undefined;

  constructor(
    private readonly inFlight: Set<UnaryCallSignal>,
    timeoutMs: number | undefined,
  ) {
    if (timeoutMs === undefined) {
      this.timeoutMs = () => undefined;
      return;
    }
    const deadline = Date.now() + timeoutMs;
    this.timeoutMs = () => deadline - Date.now();
    // As Connect's createDeadlineSignal, including setTimeout's treatment of values past 2^31 - 1 ms.
    if (timeoutMs <= 0) this.expire();
    else this.timer = setTimeout(() => this.expire(), timeoutMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(reason);
    this.release();
  }

  /** The call answered: later events (the response closing, the shutdown) no longer concern it. */
  settle(): void {
    this.settled = true;
    this.release();
  }

  /** Aborts the call if the client goes away before it settled. */
  abortWhenClientGoes(req: IncomingMessage | Http2ServerRequest, res: { once(event: "close", listener: () => void): unknown }): void {
    res.once("close", () => {
      if (!this.settled) this.abort(clientGoneReason(req));
    });
  }

  private expire(): void {
    this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  }

  private release(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight.delete(this);
  }
}

/** The reason Connect's Node adapter aborts a request's signal with when its stream closes early. */
function clientGoneReason(req: IncomingMessage | Http2ServerRequest): unknown {
  if ("stream" in req) return h2ResetReason(req.stream.rstCode);
  const errored = req.errored;
  if (!errored) return undefined;
  const code = (errored as { code?: unknown }).code;
  const hungUp = code === "ECONNRESET" || code === "ERR_STREAM_DESTROYED" || code === "ERR_STREAM_WRITE_AFTER_END";
  return ConnectError.from(errored, hungUp ? Code.Aborted : Code.Internal);
}

const h2ResetCodes: Record<number, [name: string, code: Code]> = {
  0x1: ["PROTOCOL_ERROR", Code.Internal],
  0x2: ["INTERNAL_ERROR", Code.Internal],
  0x3: ["FLOW_CONTROL_ERROR", Code.Internal],
  0x4: ["SETTINGS_TIMEOUT", Code.Internal],
  0x6: ["FRAME_SIZE_ERROR", Code.Internal],
  0x7: ["REFUSED_STREAM", Code.Unavailable],
  0x8: ["CANCEL", Code.Canceled],
  0x9: ["COMPRESSION_ERROR", Code.Internal],
  0xa: ["CONNECT_ERROR", Code.Internal],
  0xb: ["ENHANCE_YOUR_CALM", Code.ResourceExhausted],
  0xc: ["INADEQUATE_SECURITY", Code.PermissionDenied],
  0xd: ["HTTP_1_1_REQUIRED", Code.PermissionDenied],
};

/** connect-node's connectErrorFromH2ResetCode (not exported): NO_ERROR and STREAM_CLOSED give no reason. */
function h2ResetReason(rstCode: number): ConnectError | undefined {
  const known = h2ResetCodes[rstCode];
  if (!known) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${known[0]} (0x${rstCode.toString(16)})`, known[1]);
}
