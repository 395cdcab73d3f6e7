/**
 * Tells watchers in this process which runs changed, from the `cairn_runs`
 * notifications that triggers send at commit for every journal entry and
 * status change (server/store/migrations/0003). One listener connection per
 * process serves every watcher; watchers read the store themselves, so a
 * slow watcher only falls behind, it never holds anything up.
 */
import type { Database } from "../store/database.js";

const channel = "cairn_runs";
type Listener = (runId: string) => void;

export class RunFeed {
  private readonly byRun = new Map<string, Set<Listener>>();
  private readonly everyRun = new Set<Listener>();

  async start(database: Database): Promise<void> {
    await database.listen(channel, (runId) => this.publish(runId));
  }

  /** Calls `listener` whenever `runId` (or, with "*", any run) changes; returns the unsubscribe function. */
  subscribe(runId: string | "*", listener: Listener): () => void {
    if (runId === "*") {
      this.everyRun.add(listener);
      return () => this.everyRun.delete(listener);
    }
    let listeners = this.byRun.get(runId);
    if (!listeners) this.byRun.set(runId, (listeners = new Set()));
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) this.byRun.delete(runId);
    };
  }

  private publish(runId: string): void {
    for (const listener of this.byRun.get(runId) ?? []) listener(runId);
    for (const listener of this.everyRun) listener(runId);
  }
}

/** Resolves at the next change `subscribe` reports, after `ms`, or when `signal` aborts. */
export class ChangeSignal {
  private pending = false;
  private wake: (() => void) | undefined;

  notify = (): void => {
    this.pending = true;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  };

  async next(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done);
      this.wake = done;
    });
    this.pending = false;
  }
}
