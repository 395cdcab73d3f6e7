/**
 * Tells watchers in this process which runs changed, from the `cairn_runs`
 * notifications that triggers send at commit for every journal entry and
 * status change of a watched run (server/store/migrations/0003, 0004). The
 * feed registers what this process watches in run_watchers, so unwatched runs
 * cost no NOTIFY. One listener connection per process serves every watcher;
 * watchers read the store themselves, so a slow watcher only falls behind.
 */
import { randomUUID } from "node:crypto";
import { and, eq, lt, sql } from "drizzle-orm";
import type { Database, Db } from "../store/database.js";
import { type RunRow, runWatchers } from "../store/schema.js";

const channel = "cairn_runs";
type Listener = (runId: string) => void;
/** Local listeners may also get the run's new row, when the change came with it. */
type LocalListener = (runId: string, row?: RunRow) => void;

/** Registrations outlive a dead process by at most this long. */
const registrationTtlMs = 60_000;

export class RunFeed {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly localListeners = new Map<string, Set<LocalListener>>();
  private readonly process = randomUUID();
  private refreshTimer: NodeJS.Timeout | undefined;
  private db: Db | undefined;

  async start(database: Database): Promise<void> {
    this.db = database.db;
    await database.listen(channel, (runId) => this.publish(runId));
    this.refreshTimer = setInterval(() => void this.refresh(), registrationTtlMs / 3);
    this.refreshTimer.unref();
  }

  stop(): void {
    clearInterval(this.refreshTimer);
  }

  /**
   * Calls `listener` whenever `target` (a run id, or "*" for any run) changes.
   * Resolves once the store knows this process watches it; returns the unsubscribe function.
   */
  async subscribe(target: string, listener: Listener): Promise<() => void> {
    let listeners = this.listeners.get(target);
    if (!listeners) {
      this.listeners.set(target, (listeners = new Set()));
      await this.register(target);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.listeners.get(target) === listeners) {
        this.listeners.delete(target);
        void this.unregister(target);
      }
    };
  }

  /**
   * Like `subscribe`, but only for changes this process makes itself (see
   * `publish`): nothing is registered in the store, so it costs no write.
   */
  subscribeLocal(target: string, listener: LocalListener): () => void {
    let listeners = this.localListeners.get(target);
    if (!listeners) this.localListeners.set(target, (listeners = new Set()));
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.localListeners.get(target) === listeners) this.localListeners.delete(target);
    };
  }

  /** A run changed in this process (it ended or parked): tell local listeners without a round trip. */
  publishLocal(runId: string, row?: RunRow): void {
    for (const listener of this.localListeners.get(runId) ?? []) listener(runId, row);
  }

  private publish(runId: string): void {
    this.publishLocal(runId);
    for (const listener of this.listeners.get(runId) ?? []) listener(runId);
    for (const listener of this.listeners.get("*") ?? []) listener(runId);
  }

  private async register(target: string): Promise<void> {
    await this.db
      ?.insert(runWatchers)
      .values({ process: this.process, target, expiresAt: sql`now() + ${registrationTtlMs} * interval '1 millisecond'` })
      .onConflictDoUpdate({ target: [runWatchers.process, runWatchers.target], set: { expiresAt: sql`excluded.expires_at` } });
  }

  private async unregister(target: string): Promise<void> {
    await this.db
      ?.delete(runWatchers)
      .where(and(eq(runWatchers.process, this.process), eq(runWatchers.target, target)))
      .catch(() => undefined);
  }

  /** Keeps this process's registrations alive and drops those of processes that died. */
  private async refresh(): Promise<void> {
    if (!this.db) return;
    try {
      await this.db
        .update(runWatchers)
        .set({ expiresAt: sql`now() + ${registrationTtlMs} * interval '1 millisecond'` })
        .where(eq(runWatchers.process, this.process));
      await this.db.delete(runWatchers).where(lt(runWatchers.expiresAt, sql`now()`));
    } catch {
      // The next refresh tries again; an expired row of ours only costs a missed notice until then (watchers re-check every second).
    }
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
