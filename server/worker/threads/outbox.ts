/**
 * A thread's messages to the main thread. Each message to the main thread wakes it, so those that need no answer
 * (a step attempt starting or ending, a log record) wait for the next one that must go at once (a host call, an
 * activation's end, a pong) and travel with it in one array, or go at the end of the thread's turn.
 */
import type { MessagePort } from "node:worker_threads";
import type { FromThread } from "./protocol.js";

export class Outbox {
  private queued: FromThread[] = [];
  private flushing = false;

  constructor(
    private readonly port: MessagePort,
    /** The thread's own setImmediate, before any wrapping. */
    private readonly later: (callback: () => void) => void,
  ) {}

  /** Sends `message` with everything queued before it, now. */
  send(message: FromThread): void {
    if (this.queued.length === 0) {
      this.port.postMessage(message);
      return;
    }
    this.queued.push(message);
    this.flush();
  }

  /** Queues `message` for the next send, or the end of this turn. */
  queue(message: FromThread): void {
    this.queued.push(message);
    if (this.flushing) return;
    this.flushing = true;
    this.later(() => this.flush());
  }

  private flush(): void {
    this.flushing = false;
    if (this.queued.length === 0) return;
    const batch = this.queued;
    this.queued = [];
    this.port.postMessage(batch.length === 1 ? batch[0] : batch);
  }
}
