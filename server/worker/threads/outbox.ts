/**
 * A thread's messages to the main thread. Each message wakes the main thread and costs a structured clone on both
 * sides, so they leave together, once the thread is idle: no immediate is left to run, so every activation the main
 * thread's last batches resumed has run up to its next host call or real wait. The message ends with how many of the
 * main thread's batches the thread has handled, which the main thread's group commits wait for (workflow-threads.ts,
 * `gather`). Code that never idles (a loop of immediates) holds messages at most `maxHoldMs`. Only what the watchdog
 * must see before the code goes on (a step with a timeout about to run) goes at once, with everything before it.
 */
import type { MessagePort } from "node:worker_threads";
import { packFromThread } from "./packed-messages.js";
import type { FromThread } from "./protocol.js";

const maxHoldMs = 2;

export class Outbox {
  private queued: FromThread[] = [];
  /** Ended attempts tallied since the last batch: (activation id, outcome index, elapsed ms) each. */
  private tallied: number[] = [];
  private scheduled = false;
  /** Batches received from the main thread, and the count last reported. */
  private received = 0;
  private reported = 0;
  private heldSince = 0;
  /** Called at the next idle point, before the messages go (the thread's journal sends its statement there). */
  private idleCallbacks: (() => void)[] = [];

  constructor(
    private readonly port: MessagePort,
    /** Whether the thread's code has more to do in its next turn (immediates not yet run). */
    private readonly busy: () => boolean,
    /** The thread's own setImmediate, before any wrapping. */
    private readonly later: (callback: () => void) => void,
  ) {}

  /** A batch from the main thread arrived: it is answered, at the latest, when the thread next goes idle. */
  batchReceived(): void {
    this.received++;
    this.schedule();
  }

  /** Sends `message`, with everything queued before it, now. */
  sendNow(message: FromThread): void {
    this.queued.push(message);
    this.flush();
  }

  /** Calls `callback` once the thread is next idle (as `send` would send a message then), before the messages go. */
  whenIdle(callback: () => void): void {
    this.idleCallbacks.push(callback);
    this.schedule();
  }

  /** Tallies an ended step attempt of an activation the main thread only counts: they go as one `tally`. */
  tally(activation: number, outcome: number, elapsedMs: number): void {
    this.tallied.push(activation, outcome, elapsedMs);
    this.schedule();
  }

  /** Queues `message` until the thread is idle. */
  send(message: FromThread): void {
    this.queued.push(message);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.heldSince = performance.now();
    this.later(this.check);
  }

  private readonly check = (): void => {
    if (this.busy() && performance.now() - this.heldSince < maxHoldMs) {
      // Resumed code goes on in the next turn: what it does may still add to this message.
      this.later(this.check);
      return;
    }
    this.scheduled = false;
    if (this.idleCallbacks.length > 0) for (const callback of this.idleCallbacks.splice(0)) callback();
    this.flush();
  };

  private flush(): void {
    if (this.received !== this.reported) {
      this.reported = this.received;
      this.queued.push({ t: "answered", n: this.received });
    }
    if (this.tallied.length > 0) {
      // First: the attempts ended before any activation's end that this batch carries.
      this.queued.unshift({ t: "tally", attempts: this.tallied });
      this.tallied = [];
    }
    if (this.queued.length === 0) return;
    const batch = this.queued;
    this.queued = [];
    this.port.postMessage(packFromThread(batch));
  }
}
