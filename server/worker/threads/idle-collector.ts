/**
 * A workflow thread's heap after a burst. Activations leave garbage, and V8 collects an old generation lazily: after
 * 100,000 runs parked in a burst, two threads held about 140 MiB more resident memory than the same work done on the
 * main thread (where the process's own collections reach it), and did so until the next burst. So a thread that
 * has had no activation for `idleMs` runs one full collection, which gives the pages back. It costs a few
 * milliseconds per quiet period, never while activations run; a thread that stays busy never does it. (The young
 * generation is not given back by any collection: the pool replaces a thread whose young generation grew, once it has
 * stayed idle, see workflow-threads.ts.)
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

const defaultIdleMs = 1000;

/** V8's full collection; `--expose-gc` takes effect for contexts created after it is set, so a fresh one lends it. */
export function fullCollection(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

export class IdleCollector {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private dirty = false;

  constructor(
    /** Timers as the thread had them before its activations' timers were wrapped (this one belongs to no run). */
    private readonly schedule: typeof setTimeout,
    private readonly cancel: typeof clearTimeout,
    private readonly idleMs = defaultIdleMs,
    private readonly collect: () => void = fullCollection(),
  ) {}

  /** An activation started: no collection while any runs. */
  busy(): void {
    this.dirty = true;
    if (this.timer !== undefined) this.cancel(this.timer);
    this.timer = undefined;
  }

  /** The last running activation ended: collect once if nothing starts for a while. */
  idle(): void {
    if (!this.dirty || this.timer !== undefined) return;
    this.timer = this.schedule(() => {
      this.timer = undefined;
      this.dirty = false;
      this.collect();
    }, this.idleMs);
    // The thread's port keeps it alive; this timer must not.
    (this.timer as { unref?: () => void }).unref?.();
  }
}
