/**
 * The one push path for everything in this process that waits on runs
 * (AwaitRun, WatchRun through its shared tails, WatchRuns, and so the SDK's
 * waitForResult): one subscription per process, fanned out in memory.
 *
 * Changes arrive three ways:
 * - this process's own changes (`publishLocal`), without a round trip; a
 *   run's end comes with its final row and the entries it journaled, so its
 *   local waiters read nothing;
 * - the store's `cairn_runs` notices: triggers send one at commit for every
 *   run created, every status change and every journal entry, ids batched
 *   per statement with their namespace and what changed, the new status or
 *   the last new sequence number (server/store/migrations/0021, 0022), over
 *   the process's single LISTEN connection. A waiter that already knows what
 *   a notice says (this process's own change, told first) reads nothing;
 * - a safety net: every `recheckMs` (and at once after the listener
 *   reconnects, when notices may have been lost) one batched read of every
 *   run somebody here waits on, handed to its waiters as a snapshot they
 *   compare with what they know. It is not the delivery path: a waiter that
 *   sees nothing new does no read of its own.
 *
 * Subscribing is an in-memory registration, so a waiter subscribes before
 * its first read and then cannot miss a change committed after that read.
 * Waiters of one run are keyed by its id; WatchRuns streams by their
 * namespace, so a tenant's stream never hears of another's runs.
 *
 * The store notifies only for namespaces some process asked for (`hear`): a
 * notifying commit takes a cluster-wide lock through its WAL flush, so work
 * nobody waits on must not notify. A process registers a namespace and kind
 * once (one run_watchers row), when its first waiter there needs notices from
 * elsewhere, keeps it while it has waiters there and a minute after, and a
 * dead process's rows expire. A run awaited where it executes needs none.
 */
import type { JournalEntry } from "../core/journal.js";
import type { Metrics } from "../metrics.js";
import type { Database, Db } from "../store/database.js";
import { queryRows } from "../store/database.js";
import { randomUUID } from "node:crypto";
import { and, eq, lt, sql } from "drizzle-orm";
import { type RunRow, type RunStatus, runWatchers } from "../store/schema.js";

const channel = "cairn_runs";

/** What a waiter is told about a run. */
export type RunChange =
  /**
   * This process changed the run; `row` is its new state when the change came with it, and `entries` gives the
   * journal entries the same commit wrote (a run's end: the entries written with it and the final one), as the store
   * reads them (built when first asked for).
   */
  | { source: "local"; row?: RunRow | undefined; entries?: (() => readonly JournalEntry[]) | undefined }
  /** This process journaled entries of the run (its row unchanged): `entries` gives them as the store reads them. */
  | { source: "appended"; entries: () => readonly JournalEntry[] }
  /**
   * The store's notice: the run's status changed (or it was created) to `status`, or journal entries were appended up
   * to `lastSequence`. (Either is absent from a notice of an earlier version's format.)
   */
  | { source: "notice"; kind: "status"; status?: RunStatus | undefined }
  | { source: "notice"; kind: "entry"; lastSequence?: number | undefined }
  /** The safety net's snapshot (status undefined: the run is gone); compare with what you know before reading. */
  | { source: "check"; status: RunStatus | undefined; lastSequence: number };

export type RunListener = (runId: string, change: RunChange) => void;
export type NamespaceListener = (runId: string, kind: "status" | "entry") => void;

/** The safety net's period: how late a change can be seen when its notice was lost. */
export const defaultRecheckMs = 5000;
/**
 * Runs per safety-net query: up to this many watched runs cost one statement per period, so that the database's
 * idle load does not grow with the number of streams (10,000 ids are a 370 KB parameter, two index probes each).
 */
const checkBatch = 10_000;
/** Registrations outlive a dead process by at most this long; an unused one of a live process is dropped after it too. */
const registrationTtlMs = 60_000;
/**
 * Safety-net reads soon after a new registration: a write whose trigger ran before the registration committed sends
 * no notice, yet may commit after a waiter's first read. These cover such a write's transaction time (once per
 * registration, for every waiter at once) instead of a whole period.
 */
const settleChecksMs = [50, 250, 1000];

/** 's': runs created and status changes; 'e': journal entries. */
export type NoticeKind = "s" | "e";
type Registration = { holders: number; idleSince: number | undefined; ready: Promise<void> };

export class RunFeed {
  private readonly runListeners = new Map<string, Set<RunListener>>();
  private readonly namespaceListeners = new Map<string, Set<NamespaceListener>>();
  private db: Db | undefined;
  /** The safety net's reads: the watchers' own pool, not queued behind the main pool's writes. */
  private readDb: Db | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private readonly recheckMs: number;
  private readonly metrics: Metrics | undefined;
  private readonly registrations = new Map<string, Registration>();
  private readonly process = randomUUID();
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(options: { recheckMs?: number | undefined; metrics?: Metrics | undefined } = {}) {
    // Never a busy loop, whatever the setting.
    this.recheckMs = Math.max(100, options.recheckMs ?? defaultRecheckMs);
    this.metrics = options.metrics;
  }

  async start(database: Database): Promise<void> {
    this.db = database.db;
    this.readDb = database.watchDb;
    // The safety net runs even if LISTEN fails below: waiters then hear of remote changes once per period.
    this.timer = setInterval(() => void this.check(), this.recheckMs);
    this.timer.unref();
    this.refreshTimer = setInterval(() => void this.refresh(), registrationTtlMs / 3);
    this.refreshTimer.unref();
    // A reconnected listener may have missed notices: look at once rather than at the next period.
    await database.listen(channel, (payload) => this.publishNotice(payload), () => void this.check());
  }

  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.refreshTimer);
  }

  /**
   * Makes the store notify this process of `kinds` of change in `namespace` until the returned release is called;
   * resolves once registered. The first holder of a namespace and kind writes one row; later ones write nothing.
   */
  async hear(namespace: string, kinds: readonly NoticeKind[]): Promise<() => void> {
    const targets = kinds.map((kind) => `${kind}:${namespace}`);
    const held = targets.map((target) => this.hold(target));
    const release = () => {
      for (const registration of held) if (--registration.holders === 0) registration.idleSince = Date.now();
    };
    try {
      await Promise.all(held.map((registration) => registration.ready));
    } catch (error) {
      release();
      throw error;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
    };
  }

  private hold(target: string): Registration {
    let registration = this.registrations.get(target);
    if (!registration) {
      const created: Registration = { holders: 0, idleSince: undefined, ready: this.register(target) };
      // A registration that failed is not kept: the next waiter tries again.
      created.ready.catch(() => this.registrations.get(target) === created && this.registrations.delete(target));
      this.registrations.set(target, (registration = created));
    }
    registration.holders++;
    registration.idleSince = undefined;
    return registration;
  }

  private async register(target: string): Promise<void> {
    if (!this.db) return;
    await this.db
      .insert(runWatchers)
      .values({ process: this.process, target, expiresAt: sql`now() + ${registrationTtlMs} * interval '1 millisecond'` })
      .onConflictDoUpdate({ target: [runWatchers.process, runWatchers.target], set: { expiresAt: sql`excluded.expires_at` } });
    for (const ms of settleChecksMs) setTimeout(() => void this.check(), ms).unref();
  }

  /** Keeps this process's registrations alive, drops those unused for a while, and those of processes that died. */
  private async refresh(): Promise<void> {
    const db = this.db;
    if (!db) return;
    try {
      const now = Date.now();
      for (const [target, registration] of this.registrations) {
        if (registration.holders > 0 || registration.idleSince === undefined || now - registration.idleSince < registrationTtlMs) continue;
        this.registrations.delete(target);
        await db.delete(runWatchers).where(and(eq(runWatchers.process, this.process), eq(runWatchers.target, target)));
        // A waiter came back while the delete was in flight: its insert may have landed first, so write it again.
        if (this.registrations.has(target)) await this.register(target);
      }
      await db
        .update(runWatchers)
        .set({ expiresAt: sql`now() + ${registrationTtlMs} * interval '1 millisecond'` })
        .where(eq(runWatchers.process, this.process));
      await db.delete(runWatchers).where(lt(runWatchers.expiresAt, sql`now()`));
    } catch {
      // The next refresh tries again; an expired row of ours only costs notices until then (the safety net covers them).
    }
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

  /**
   * A run changed in this process (it ended or parked): tell its waiters without a round trip, with its new row and
   * the entries its commit wrote when the change came with them.
   */
  publishLocal(runId: string, row?: RunRow, entries?: () => readonly JournalEntry[]): void {
    this.tell(runId, { source: "local", row, entries });
  }

  /** This process journaled entries of a run it executes: tell the run's waiters here, if it has any, without a read. */
  publishAppended(runId: string, entries: () => readonly JournalEntry[]): void {
    this.tell(runId, { source: "appended", entries });
  }

  /**
   * Parses one notice: "s ns:id:status,..." (runs created or whose status changed, with the new status) or
   * "e ns:id:sequence,..." (journal entries, with the run's last new sequence number). Namespaces hold no ':'; an
   * item without its third part (an earlier version's trigger) says only that something changed.
   */
  private publishNotice(payload: string): void {
    const kind = payload.startsWith("e ") ? "entry" : "status";
    for (const item of payload.slice(2).split(",")) {
      const first = item.indexOf(":");
      if (first < 0) continue;
      const second = item.indexOf(":", first + 1);
      const namespace = item.slice(0, first);
      const runId = second < 0 ? item.slice(first + 1) : item.slice(first + 1, second);
      const what = second < 0 ? undefined : item.slice(second + 1);
      this.tell(
        runId,
        kind === "entry"
          ? { source: "notice", kind, lastSequence: what === undefined ? undefined : Number(what) }
          : { source: "notice", kind, status: what as RunStatus | undefined },
      );
      const forNamespace = this.namespaceListeners.get(namespace);
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
      const db = this.readDb;
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
