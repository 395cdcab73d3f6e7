/**
 * Per-caller caps on what a caller can hold open: server streams (WatchRun, WatchRuns, ReceiveTurns) and long
 * polls (AwaitRun, PollTurns). Each holds memory, a feed subscription and database work for as long as it lasts,
 * so one caller opening thousands would starve everyone else. Counted per API key, per peer address in open mode
 * (no key); past `CAIRN_MAX_STREAMS_PER_CALLER` the call is RESOURCE_EXHAUSTED naming the limit. Counts live in
 * this process only: each replica bounds what a caller holds on it. Runs after the auth interceptor (it reads
 * the caller it resolved).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { callerKey } from "./auth.js";
import { peerOf } from "./peer.js";

/** The procedures that hold a slot while they run (method names of WorkflowService and AgentService). */
const heldCalls = new Set(["WatchRun", "WatchRuns", "AwaitRun", "PollTurns", "ReceiveTurns"]);

export class CallerSlots {
  private readonly open = new Map<string, number>();
  constructor(readonly limit: number) {}

  /** A release function, or undefined when the caller holds `limit` slots already. */
  take(caller: string): (() => void) | undefined {
    const held = this.open.get(caller) ?? 0;
    if (held >= this.limit) return undefined;
    this.open.set(caller, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = (this.open.get(caller) ?? 1) - 1;
      if (now <= 0) this.open.delete(caller);
      else this.open.set(caller, now);
    };
  }

  held(caller: string): number {
    return this.open.get(caller) ?? 0;
  }
}

export function callerCapsInterceptor(slots: CallerSlots): Interceptor {
  return (next) => async (request) => {
    if (!heldCalls.has(request.method.name)) return next(request);
    const keyId = request.contextValues.get(callerKey)?.keyId;
    const caller = keyId !== undefined ? `key ${keyId}` : `peer ${peerOf(request.contextValues)}`;
    const release = slots.take(caller);
    if (!release) {
      throw new ConnectError(
        `${caller} already has ${slots.limit} open streams and long polls (WatchRun, WatchRuns, AwaitRun, PollTurns, ReceiveTurns), ` +
          `the limit CAIRN_MAX_STREAMS_PER_CALLER=${slots.limit}; close one first`,
        Code.ResourceExhausted,
      );
    }
    // Released once, whichever comes first: the call's end (a throw, a unary answer, a stream's last message or
    // its abandonment) or its signal (the client went away, the deadline passed, the server is shutting down).
    request.signal.addEventListener("abort", release, { once: true });
    let response;
    try {
      response = await next(request);
    } catch (error) {
      release();
      throw error;
    }
    if (!response.stream) {
      release();
      return response;
    }
    return { ...response, message: releasedAtEnd(response.message, release) };
  };
}

async function* releasedAtEnd<T>(messages: AsyncIterable<T>, release: () => void): AsyncIterable<T> {
  try {
    yield* messages;
  } finally {
    release();
  }
}
