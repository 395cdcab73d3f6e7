/**
 * A thread's messages to the main thread. Each message wakes the main thread and costs a structured clone on both
 * sides, so messages go out together: everything posted in one turn of the thread's event loop (the host calls of
 * every activation that a batch of replies resumed, their step attempts and log records) leaves as one array at the
 * end of that turn. Only what the watchdog must see before the code goes on (a step with a timeout about to run)
 * goes at once, with everything queued before it.
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

  /** Sends `message`, with everything queued before it, now. */
  sendNow(message: FromThread): void {
    this.queued.push(message);
    this.flush();
  }

  /** Queues `message` for the end of this turn. */
  send(message: FromThread): void {
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
