/**
 * The in-process worker pool. It claims due runs (queued, or parked runs whose
 * timer or event has come, or whose holder died), executes them up to a
 * concurrency limit, renews the leases of everything it executes in one
 * statement per heartbeat, and aborts an activation the moment its lease is
 * lost or its run cancelled.
 *
 * It wakes on: NOTIFY from any process (new queued run, event delivered,
 * cancel), a single timer armed for the earliest known deadline, and a slow
 * poll that covers a dropped listener connection and deadlines set by
 * processes that died. Parked runs cost it nothing: no timer or memory per run.
 */
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { LeaseLostError, RunCancelledError } from "../core/errors.js";
import type { JournalEntry, PendingWait } from "../core/journal.js";
import type { ValueLimits } from "../core/json.js";
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { deleteExpiredEvents } from "../store/events.js";
import { loadJournals } from "../store/journal.js";
import { JournalWriter } from "../store/journal-writer.js";
import { claimDueRuns, type Fence, nextDueAt, releaseRun, renewLeases, requeueExpiredLeases } from "../store/runs.js";
import type { RunRow } from "../store/schema.js";
import type { WorkflowRegistry } from "../workflows/registry.js";
import { executeRun, ShutdownError } from "./executor.js";
import type { TurnBoard } from "../runs/turn-board.js";

export { ShutdownError };

export interface WorkerOptions {
  database: Database;
  registry: WorkflowRegistry;
  logger: Logger;
  leaseMs: number;
  pollIntervalMs: number;
  maxConcurrentRuns: number;
  /** Where agent workers wait for turns. */
  turnBoard: TurnBoard;
  /** Events older than this are deleted. */
  eventRetentionMs: number;
  /** A run executed here ended (`row`: its final row, when known) or parked: for local waiters such as AwaitRun. */
  onRunChanged?: (runId: string, row?: RunRow) => void;
  /** Unique per process; defaults to host:pid:random. */
  owner?: string;
  /** Size limits on journaled values and child inputs (absent: none). */
  limits?: ValueLimits;
}

interface ActiveRun {
  fence: Fence;
  /** The run's row as claimed. */
  run: RunRow;
  controller: AbortController;
  done: Promise<void>;
  /** The lease is certainly ours until then (epoch ms): the claim or last renewal was sent before it began. */
  validUntil: number;
}

const wakeChannel = "cairn_wake";
const cancelChannel = "cairn_cancel";
const turnChannel = "cairn_turns";
const retentionSweepMs = 60_000;
const minRearmMs = 5;
/** Deadlines remembered for the deadline timer (8 bytes each); beyond this, new ones are left to the store's next-due read. */
const maxRememberedDeadlines = 100_000;
/**
 * Journal entries kept in memory for parked runs, over all of them: about 570 bytes of heap each (measured: an
 * entry's object, its Dates and strings), so about 6 MB, whatever the number of parked runs.
 */
const parkedJournalEntries = 10_000;
/** setTimeout's ceiling; a later deadline is re-armed by the poll. */
const maxTimerMs = 2 ** 31 - 1;

export class Worker {
  readonly owner: string;
  private readonly active = new Map<string, ActiveRun>();
  private stopped = true;
  private claiming: Promise<void> | undefined;
  private claimAgain = false;
  /** Slots promised to eager starts whose runs are being inserted. */
  private reserved = 0;
  /** The deadline timer is not armed for the earliest parked run (it fired, or re-arming waited for a free slot). */
  private nextDeadlineUnknown = false;
  /** The last claim stopped at the concurrency limit: a freed slot should claim again. */
  private starved = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineAt: number | undefined;
  /** Deadlines of runs parked by this process (and the store's next one), earliest first; stale ones cost one empty claim. */
  private readonly deadlines = new DeadlineHeap(maxRememberedDeadlines);
  private lastRenewal = Date.now();
  private readonly journalWriter: JournalWriter;
  /** Journals of runs this process parked, so that waking them here skips the journal read. */
  private readonly parkedJournals = new ParkedJournals(parkedJournalEntries);

  constructor(private readonly options: WorkerOptions) {
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.journalWriter = new JournalWriter(options.database.db);
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** The run is executing in this process right now. */
  isActive(runId: string): boolean {
    return this.active.has(runId);
  }

  /** The row (as claimed) of a run executing in this process right now. */
  activeRun(runId: string): RunRow | undefined {
    return this.active.get(runId)?.run;
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.lastRenewal = Date.now();
    try {
      await this.options.database.listen(wakeChannel, () => this.wake());
      await this.options.database.listen(cancelChannel, (runId) => this.abortCancelled(runId));
      await this.options.database.listen(turnChannel, (agent) => this.options.turnBoard.announce(agent));
    } catch (error) {
      this.options.logger.warn({ err: error }, "LISTEN failed; relying on polling until it reconnects");
    }
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.options.leaseMs / 3)));
    this.sweepTimer = setInterval(() => void this.sweepEvents(), retentionSweepMs);
    this.sweepTimer.unref();
    this.schedulePoll(0);
  }

  /** Look for claimable runs now (a run was queued, an event woke one, a slot freed up). */
  wake(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = this.claimLoop().finally(() => (this.claiming = undefined));
  }

  /** Tells every server process (this one included) to look for claimable runs. */
  async announce(): Promise<void> {
    this.wake();
    await this.options.database.db.execute(sql`select pg_notify(${wakeChannel}, '')`);
  }

  /** Stops the run's activation wherever it executes (its next durable operation would stop it anyway). */
  async announceCancel(runId: string): Promise<void> {
    this.abortCancelled(runId);
    await this.options.database.db.execute(sql`select pg_notify(${cancelChannel}, ${runId})`);
  }

  /**
   * Reserves a slot for an eager start, synchronously, so concurrent creates
   * cannot overshoot the concurrency limit and starve due wake-ups. Pair with
   * `adopt` or `releaseSlot`.
   */
  reserveSlot(): boolean {
    return this.reserveSlots(1) === 1;
  }

  releaseSlot(): void {
    this.releaseSlots(1);
  }

  /** Reserves up to `wanted` slots at once, as `reserveSlot` does; answers how many. Pair each with `adopt*` or `releaseSlots`. */
  reserveSlots(wanted: number): number {
    if (this.stopped) return 0;
    const granted = Math.max(0, Math.min(wanted, this.options.maxConcurrentRuns - this.active.size - this.reserved));
    this.reserved += granted;
    return granted;
  }

  releaseSlots(count: number): void {
    if (count <= 0) return;
    this.reserved -= count;
    if (this.starved) this.wake();
  }

  /**
   * Executes, in a reserved slot, a run that SendEvent claimed for this process while delivering it `received`
   * (its newest entry). If this process parked the run and nobody held it since, the kept journal plus that
   * entry is the whole journal; otherwise the executor reads it.
   */
  adoptDelivered(run: RunRow, received: JournalEntry, claimedBefore: number): void {
    if (run.leaseOwner !== this.owner) throw new Error(`run ${run.id} is not claimed by ${this.owner}`);
    this.reserved--;
    const kept = this.parkedJournals.take(run.id, run.leaseEpoch - 1);
    const journal = kept && (kept.at(-1)?.sequence ?? 0) === received.sequence - 1 ? [...kept, received] : undefined;
    this.launch(run, journal, claimedBefore + this.options.leaseMs);
  }

  /** Executes a run this process claimed itself (eager start) in a reserved slot; `journal` is known to be empty. */
  adopt(run: RunRow, journal: JournalEntry[] = []): void {
    if (run.leaseOwner !== this.owner) throw new Error(`run ${run.id} is not claimed by ${this.owner}`);
    this.reserved--;
    // The INSERT set the expiry with the database's clock (kept in sync, see Known limits).
    this.launch(run, journal, run.leaseExpiresAt?.getTime() ?? Date.now() + this.options.leaseMs);
  }

  /**
   * Arms the wake-up timer for `at` if it is earlier than the one armed, and
   * remembers `at`: when the timer fires, the next remembered deadline is armed
   * at once, so timers parked here fire on time one after another without a
   * round trip to find the next one.
   */
  noteDeadline(at: Date): void {
    const time = at.getTime();
    if (this.stopped) return;
    this.deadlines.push(time);
    this.armTimer();
  }

  private armTimer(): void {
    const next = this.deadlines.peek();
    if (next === undefined || (this.deadlineAt !== undefined && this.deadlineAt <= next)) return;
    clearTimeout(this.deadlineTimer);
    this.deadlineAt = next;
    this.deadlineTimer = setTimeout(() => {
      this.deadlineAt = undefined;
      const now = Date.now();
      while ((this.deadlines.peek() ?? Infinity) <= now) this.deadlines.pop();
      this.wake();
      this.armTimer();
      // Deadlines set by other processes are not remembered here: once this claim is done, ask the store for the next.
      this.nextDeadlineUnknown = true;
      if (!this.claiming) void this.armForNextDue();
    }, Math.min(Math.max(0, next - Date.now()), maxTimerMs));
  }

  /**
   * Stops claiming, lets running activations finish for up to `graceMs`, then
   * aborts the rest; their runs are released for other processes at once.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    clearTimeout(this.deadlineTimer);
    clearInterval(this.sweepTimer);
    // A claim under way may still launch runs: wait for it so they are included below.
    await this.claiming;
    const all = Promise.allSettled([...this.active.values()].map((a) => a.done));
    const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([all, timer]);
    for (const run of this.active.values()) run.controller.abort(new ShutdownError("server shutting down"));
    await Promise.allSettled([...this.active.values()].map((a) => a.done));
    clearInterval(this.heartbeatTimer);
  }

  private schedulePoll(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => {
      this.wake();
      void this.armForNextDue().finally(() => this.schedulePoll(this.options.pollIntervalMs));
    }, delayMs);
  }

  /** Deadlines set by other (or dead) processes: sleep exactly until the earliest. */
  private async armForNextDue(): Promise<void> {
    try {
      const due = await nextDueAt(this.options.database.db, this.options.registry.list().map((w) => w.name));
      // At the concurrency limit a freed slot claims again by itself. Otherwise a run already due is being
      // claimed right now (or PostgreSQL's clock is a hair behind ours): look again a moment later, never in a spin.
      if (this.starved) return;
      this.nextDeadlineUnknown = false;
      if (due) this.noteDeadline(new Date(Math.max(due.getTime(), Date.now() + minRearmMs)));
    } catch (error) {
      this.options.logger.warn({ err: error }, "reading the next deadline failed; retrying at next poll");
    }
  }

  private async claimLoop(): Promise<void> {
    try {
      do {
        this.claimAgain = false;
        const capacity = this.options.maxConcurrentRuns - this.active.size - this.reserved;
        this.starved = capacity <= 0;
        if (capacity <= 0 || this.stopped) break;
        const names = this.options.registry.list().map((w) => w.name);
        const sentAt = Date.now();
        const claimed = await claimDueRuns(this.options.database.db, this.owner, this.options.leaseMs, capacity, names);
        // One read for the whole batch's journals instead of one per run.
        const unknown = claimed.filter((r) => !this.parkedJournals.has(r.id, r.leaseEpoch - 1));
        const journals =
          unknown.length > 1
            ? await loadJournals(this.options.database.db, unknown.map((r) => r.id)).catch(() => undefined) // each then reads its own
            : undefined;
        for (const run of claimed) this.launch(run, journals?.get(run.id), sentAt + this.options.leaseMs);
        // A full batch suggests more are waiting.
        if (claimed.length === capacity) {
          this.claimAgain = true;
          this.starved = true;
        }
      } while (this.claimAgain && !this.stopped);
    } catch (error) {
      this.options.logger.warn({ err: error }, "claiming runs failed; retrying at next poll");
    }
    // A deadline fired (or starvation skipped re-arming) since the timer was last armed: arm it for the next one.
    if (this.nextDeadlineUnknown && !this.starved && !this.stopped) await this.armForNextDue();
  }

  private launch(run: RunRow, loaded: JournalEntry[] | undefined, validUntil: number): void {
    const fence: Fence = { runId: run.id, owner: this.owner, epoch: run.leaseEpoch };
    // Parked here and claimed by nobody else since (the epoch moved by exactly this claim): the journal is the one we kept.
    const journal = loaded ?? this.parkedJournals.take(run.id, run.leaseEpoch - 1);
    if (this.stopped) {
      // Claimed while shutting down: hand it straight back.
      void releaseRun(this.options.database.db, fence).catch(() => undefined);
      return;
    }
    if (this.active.has(run.id)) {
      // Our own earlier activation lost the lease and is still unwinding; it can't write (stale epoch).
      this.options.logger.warn({ runId: run.id }, "run re-claimed while a stale activation is unwinding");
    }
    const controller = new AbortController();
    const entry: ActiveRun = { fence, run, controller, done: Promise.resolve(), validUntil };
    const deps = {
      db: this.options.database.db,
      journalWriter: this.journalWriter,
      registry: this.options.registry,
      logger: this.options.logger,
      limits: this.options.limits,
      onChildCreated: () => void this.announce().catch(() => undefined),
      onTurnCreated: (agent: string) => {
        this.options.turnBoard.announce(agent);
        void this.options.database.db.execute(sql`select pg_notify(${turnChannel}, ${agent})`).catch(() => undefined);
      },
      onEnded: (runId: string, row: RunRow | undefined) => this.options.onRunChanged?.(runId, row),
      onSuspended: (suspended: RunRow, _waits: readonly PendingWait[], deadline: Date | undefined, known: JournalEntry[] | undefined) => {
        if (known) this.parkedJournals.remember(suspended.id, fence.epoch, known);
        if (deadline) this.noteDeadline(deadline);
        this.options.onRunChanged?.(suspended.id);
      },
      leaseValidUntil: (held: Fence) => (this.active.get(held.runId) === entry ? entry.validUntil : 0),
    };
    entry.done = executeRun(deps, run, fence, controller.signal, journal)
      .catch((error: unknown) => {
        // The database failed under us: the lease will lapse and another activation replays the run.
        this.options.logger.error({ err: error, runId: run.id }, "activation failed; the run will be retried after its lease lapses");
      })
      .finally(() => {
        if (this.active.get(run.id) === entry) this.active.delete(run.id);
        if (this.starved && this.active.size + this.reserved < this.options.maxConcurrentRuns) this.wake();
      });
    this.active.set(run.id, entry);
  }

  private abortCancelled(runId: string): void {
    this.active.get(runId)?.controller.abort(new RunCancelledError(runId, "cancelled"));
  }

  private async heartbeat(): Promise<void> {
    try {
      const held = new Map([...this.active].map(([id, run]) => [id, run.fence.epoch]));
      const sentAt = Date.now();
      const renewed = await renewLeases(this.options.database.db, this.owner, this.options.leaseMs, [...held.keys()]);
      this.lastRenewal = Date.now();
      const renewedEpochs = new Map(renewed.map((lease) => [lease.runId, lease]));
      for (const [id, epoch] of held) {
        const lease = renewedEpochs.get(id);
        const run = this.active.get(id);
        if (!run || run.fence.epoch !== epoch) continue;
        if (!lease || lease.epoch !== epoch) run.controller.abort(new LeaseLostError(id));
        else if (lease.cancelRequested) run.controller.abort(new RunCancelledError(id, "cancelled"));
        else run.validUntil = sentAt + this.options.leaseMs;
      }
      // Any process may return lapsed runs to the queue; the claim that follows bumps their epoch.
      const requeued = await requeueExpiredLeases(this.options.database.db);
      if (requeued.length > 0) {
        this.options.logger.info({ runs: requeued.length }, "requeued runs whose lease lapsed");
        this.wake();
      }
    } catch (error) {
      this.options.logger.warn({ err: error }, "lease heartbeat failed");
      // Past the lease, others may own our runs: stop executing rather than run steps nobody can journal.
      if (Date.now() - this.lastRenewal > this.options.leaseMs) {
        for (const [id, run] of this.active) run.controller.abort(new LeaseLostError(id));
      }
    }
  }

  private async sweepEvents(): Promise<void> {
    try {
      const deleted = await deleteExpiredEvents(this.options.database.db, this.options.eventRetentionMs);
      if (deleted > 0) this.options.logger.info({ deleted }, "deleted events past retention");
    } catch (error) {
      this.options.logger.warn({ err: error }, "event retention sweep failed");
    }
  }
}

/**
 * Journals of runs parked by this process, each tagged with the epoch it was
 * written under. Another process's claim bumps the epoch, so a journal is used
 * only by the claim that directly follows its parking. Bounded by total
 * entries, oldest dropped first; a miss costs one journal read.
 */
class ParkedJournals {
  private readonly journals = new Map<string, { epoch: number; entries: JournalEntry[] }>();
  private size = 0;

  constructor(private readonly maxEntries: number) {}

  remember(runId: string, epoch: number, entries: JournalEntry[]): void {
    this.drop(runId);
    if (entries.length > this.maxEntries / 10) return;
    this.journals.set(runId, { epoch, entries });
    this.size += entries.length;
    for (const [oldest, kept] of this.journals) {
      if (this.size <= this.maxEntries) break;
      this.journals.delete(oldest);
      this.size -= kept.entries.length;
    }
  }

  has(runId: string, epoch: number): boolean {
    return this.journals.get(runId)?.epoch === epoch;
  }

  take(runId: string, epoch: number): JournalEntry[] | undefined {
    const kept = this.journals.get(runId);
    this.drop(runId);
    return kept?.epoch === epoch ? kept.entries : undefined;
  }

  private drop(runId: string): void {
    const kept = this.journals.get(runId);
    if (!kept) return;
    this.journals.delete(runId);
    this.size -= kept.entries.length;
  }
}

/** A binary min-heap of instants (ms), bounded: when full, new instants are not kept. */
class DeadlineHeap {
  private readonly items: number[] = [];

  constructor(private readonly max: number) {}

  peek(): number | undefined {
    return this.items[0];
  }

  push(time: number): void {
    // Full: not remembered; after each firing the store's next deadline is read, which finds it in time.
    if (this.items.length >= this.max) return;
    const items = this.items;
    items.push(time);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= items[i]!) break;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
  }

  pop(): number | undefined {
    const top = this.items[0];
    if (top !== undefined) this.removeAt(0);
    return top;
  }

  private removeAt(index: number): void {
    const items = this.items;
    const last = items.pop()!;
    if (index === items.length) return;
    items[index] = last;
    // Restore the heap around `index`: up, then down.
    let i = index;
    while (i > 0 && items[(i - 1) >> 1]! > items[i]!) {
      const parent = (i - 1) >> 1;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < items.length && items[left]! < items[smallest]!) smallest = left;
      if (right < items.length && items[right]! < items[smallest]!) smallest = right;
      if (smallest === i) break;
      [items[smallest], items[i]] = [items[i]!, items[smallest]!];
      i = smallest;
    }
  }
}
