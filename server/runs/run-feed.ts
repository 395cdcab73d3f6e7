/**
 * The one push path for everything in this process that waits on runs
 * (AwaitRun, WatchRun through its shared tails, WatchRuns, and so the SDK's
 * waitForResult): one subscription per process, fanned out in memory.
 *
 * Changes arrive three ways:
 * - this process's own changes (`publishLocal`), without a round trip;
 * - the store's `cairn_runs` notices: triggers send one at commit for every
 *   run created, every status change and every journal entry, ids batched
 *   per statement with their namespace (server/store/migrations/0021), over
 *   the process's single LISTEN connection;
 * - a safety net: every `recheckMs` (and at once after the listener
 *   reconnects, when notices may have been lost) one batched read of every
 *   run somebody here waits on, handed to its waiters as a snapshot they
 *   compare with what they know. It is not the delivery path: a waiter that
 *   sees nothing new does no read of its own.
 *
 * Subscribing is an in-memory registration: no row is written, so a waiter
 * subscribes before its first read and then cannot miss a change committed
 * after that read. Waiters of one run are keyed by its id; WatchRuns streams
 * by their namespace, so a tenant's stream never hears of another's runs.
 */
import type { Metrics } from "../metrics.js";
import type { Database, Db } from "../store/database.js";
import { queryRows } from "../store/database.js";
import { type RunRow, type RunStatus } from "../store/schema.js";
import { sql } from "drizzle-orm";

const channel = "cairn_runs";

/** What a waiter is told about a run. */
export type RunChange =
  /** This process changed the run; `row` is its new state when the change came with it. */
  | { source: "local"; row?: RunRow | undefined }
  /** The store's notice: the run's status changed (or it was created), or a journal entry was appended. */
  | { source: "notice"; kind: "status" | "entry" }
  /** The safety net's snapshot (status undefined: the run is gone); compare with what you know before reading. */
  | { source: "check"; status: RunStatus | undefined; lastSequence: number };

export type RunListener = (runId: string, change: RunChange) => void;
export type NamespaceListener = (runId: string, kind: "status" | "entry") => void;

/** The safety net's period: how late a change can be seen when its notice was lost. */
export const defaultRecheckMs = 5000;
/** Runs per safety-net query. */
const checkBatch = 1000;

export class RunFeed {
  private readonly runListeners = new Map<string, Set<RunListener>>();
  private readonly namespaceListeners = new Map<string, Set<NamespaceListener>>();
  private db: Db | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private readonly recheckMs: number;
  private readonly metrics: Metrics | undefined;

  constructor(options: { recheckMs?: number | undefined; metrics?: Metrics | undefined } = {}) {
    // Never a busy loop, whatever the setting.
    this.recheckMs = Math.max(100, options.recheckMs ?? defaultRecheckMs);
    this.metrics = options.metrics;
  }

  async start(database: Database): Promise<void> {
    this.db = database.db;
    // The safety net runs even if LISTEN fails below: waiters then hear of remote changes once per period.
    this.timer = setInterval(() => void this.check(), this.recheckMs);
    this.timer.unref();
    // A reconnected listener may have missed notices: look at once rather than at the next period.
    await database.listen(channel, (payload) => this.publishNotice(payload), () => void this.check());
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Calls `listener` whenever `runId` may have changed; returns the unsubscribe function. No I/O. */
  subscribe(runId: string, listener: RunListener): () => void {
    return add(this.runListeners, runId, listener);
  }

  /** Calls `listener` for every run of `namespace` that changes (from the store's notices). No I/O. */
  subscribeNamespace(namespace: string, listener: NamespaceListener): () => void {
    return add(this.namespaceListeners, namespace, listener);
  }

  /** Waiters of one run in this process now. */
  waiters(runId: string): number {
    return this.runListeners.get(runId)?.size ?? 0;
  }

  /** A run changed in this process (it ended or parked): tell its waiters without a round trip. */
  publishLocal(runId: string, row?: RunRow): void {
    this.tell(runId, { source: "local", row });
  }

  /** Parses one notice: "<s|e> ns:id,ns:id,..." (status change or journal entry). */
  private publishNotice(payload: string): void {
    const kind = payload.startsWith("e ") ? "entry" : "status";
    const change: RunChange = { source: "notice", kind };
    for (const item of payload.slice(2).split(",")) {
      const colon = item.lastIndexOf(":");
      if (colon < 0) continue;
      const runId = item.slice(colon + 1);
      this.tell(runId, change);
      const forNamespace = this.namespaceListeners.get(item.slice(0, colon));
      if (forNamespace) for (const listener of forNamespace) listener(runId, kind);
    }
  }

  private tell(runId: string, change: RunChange): void {
    const listeners = this.runListeners.get(runId);
    if (listeners) for (const listener of listeners) listener(runId, change);
  }

  /** The safety net: one read per batch of watched runs, whatever the number of waiters on each. */
  check(): Promise<void> {
    this.checking ??= (async () => {
      const db = this.db;
      const ids = [...this.runListeners.keys()];
      for (let i = 0; db && i < ids.length; i += checkBatch) {
        const batch = ids.slice(i, i + checkBatch);
        try {
          this.metrics?.waiterReads.inc({ waiter: "safety_net" });
          const rows = await queryRows<{ id: string; status: RunStatus; last_sequence: number | string | null }>(
            db,
            sql`select r.id, r.status, (select max(j.sequence) from journal_entries j where j.run_id = r.id) as last_sequence
                from runs r where r.id = any(${`{${batch.join(",")}}`}::uuid[])`,
          );
          const found = new Set<string>();
          for (const row of rows) {
            found.add(row.id);
            this.tell(row.id, { source: "check", status: row.status, lastSequence: Number(row.last_sequence ?? 0) });
          }
          for (const id of batch) if (!found.has(id)) this.tell(id, { source: "check", status: undefined, lastSequence: 0 });
        } catch {
          // The next period tries again; waiters keep their own deadlines meanwhile.
        }
      }
    })().finally(() => (this.checking = undefined));
    return this.checking;
  }
}

function add<L>(map: Map<string, Set<L>>, key: string, listener: L): () => void {
  let listeners = map.get(key);
  if (!listeners) map.set(key, (listeners = new Set()));
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && map.get(key) === listeners) map.delete(key);
  };
}

/** Resolves at the next `notify`, after `ms`, or when `signal` aborts. */
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
