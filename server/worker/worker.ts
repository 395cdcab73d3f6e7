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
import { RunCancelRequestedError } from "../core/errors.js";
import type { JournalEntry } from "../core/journal.js";
import { onClockAlone, type PendingWait } from "../core/waits.js";
import type { ValueLimits } from "../core/json.js";
import type { RunRetention } from "../config.js";
import type { Logger } from "../logger.js";
import type { Metrics, QueueDepth } from "../metrics.js";
import type { Tracing } from "../tracing.js";
import { queueDepth } from "../store/runs/queue-depth.js";
import type { Store } from "../store/store.js";
import { loadJournals } from "../store/journal.js";
import { claimDueRuns, type Fence, nextDueAt, releaseRun } from "../store/runs/lease.js";
import type { RunRow } from "../store/schema.js";
import type { WorkflowRegistry } from "../workflows/registry.js";
import { DeadlineTimer } from "./deadline-timer.js";
import { executeRun, ShutdownError } from "./executor.js";
import { type ActivationRunner, InThreadRunner } from "./activation-runner.js";
import { ParkedJournals } from "./parked-journals.js";
import type { ActiveRun } from "./active-run.js";
import { renewHeldLeases } from "./heartbeat.js";
import { Sweeps } from "./sweeps.js";
import { RunTimeouts } from "./run-timeouts.js";
import { ScheduleFires } from "./schedule-fires.js";
import { scheduleClock } from "../runs/schedule-times.js";
import { announceProcess, removeProcess } from "../store/processes.js";
import type { TurnBoard } from "../runs/turn-board.js";

export { ShutdownError };

export interface WorkerOptions {
  store: Store;
  registry: WorkflowRegistry;
  logger: Logger;
  leaseMs: number;
  /** CAIRN_MAX_ABNORMAL_ACTIVATIONS (the poison-run breaker); absent: never pause. */
  maxAbnormalActivations?: number;
  pollIntervalMs: number;
  maxConcurrentRuns: number;
  /** Where agent workers wait for turns. */
  turnBoard: TurnBoard;
  /** Events older than this are deleted. */
  eventRetentionMs: number;
  /** Ended runs older than this (per namespace) are deleted with their journals. */
  runRetention: RunRetention;
  /** How often the retention sweeps run. */
  sweepIntervalMs: number;
  /**
   * A run executed here ended (`row`: its final row, `entries`: what its end journaled, when known) or parked: for
   * local waiters such as AwaitRun and WatchRun's tails.
   */
  onRunChanged?: (runId: string, row?: RunRow, entries?: () => readonly JournalEntry[]) => void;
  /** A run executed here journaled an entry: for local watchers (WatchRun's tails), who then read nothing for it. */
  onEntriesAppended?: (runId: string, entries: () => readonly JournalEntry[]) => void;
  /** Unique per process; defaults to host:pid:random. */
  owner?: string;
  /** Size limits on journaled values and child inputs (absent: none). */
  limits?: ValueLimits;
  /** Where activations, step attempts and claims are counted (absent: nowhere). */
  metrics?: Metrics | undefined;
  /** Traces activations and step attempts (absent: tracing off). */
  tracing?: Tracing | undefined;
  /** Where workflow code runs (absent: on this thread, uncontained). */
  runner?: ActivationRunner;
  /** The server's version, announced in the `processes` table. */
  version?: string | undefined;
}


const wakeChannel = "cairn_wake";
const cancelChannel = "cairn_cancel";
const turnChannel = "cairn_turns";
const minRearmMs = 5;
/**
 * Runs parked here on the clock alone (timers, retry backoffs) are claimed this long before they are due, and their
 * activations wait out what is left (`holdClockWaitsMs`, longer, so a claim a little early by PostgreSQL's clock
 * still holds): the claim, the journal and the replay no longer come after the deadline. Measured on the bench's W4
 * (500 timers of 2 s): see docs/benchmarks.md. A process that dies while holding one leaves it to the lease's lapse.
 */
const claimAheadMs = 20;
const holdClockWaitsMs = 50;
/**
 * Journal entries kept in memory for parked runs, over all of them: about 570 bytes of heap each (measured: an
 * entry's object, its Dates and strings), so about 6 MB, whatever the number of parked runs.
 */
const parkedJournalEntries = 10_000;

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
  /** Deadlines of runs parked by this process (and the store's next one), earliest first; stale ones cost one empty claim. */
  private readonly deadlineTimer = new DeadlineTimer(() => {
    this.wake();
    // Deadlines set by other processes are not remembered here: once this claim is done, ask the store for the next.
    this.nextDeadlineUnknown = true;
    if (!this.claiming) void this.armForNextDue();
  });
  private lastRenewal = Date.now();
  /** Journals of runs this process parked, so that waking them here skips the journal read. */
  private readonly sweeps: Sweeps;
  private readonly parkedJournals = new ParkedJournals(parkedJournalEntries);
  /** Run-level timeouts: their own timer, fired here for any run (run-timeouts.ts). */
  private readonly timeouts: RunTimeouts;
  /** Schedules: their own timer, armed for the earliest due fire of any schedule (schedule-fires.ts). */
  private readonly schedules: ScheduleFires;

  private readonly runner: ActivationRunner;

  constructor(private readonly options: WorkerOptions) {
    this.runner = options.runner ?? new InThreadRunner();
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.sweeps = new Sweeps(options.store.db, options.logger, {
      eventRetentionMs: options.eventRetentionMs,
      runRetention: options.runRetention,
      everyMs: options.sweepIntervalMs,
    });
    this.timeouts = new RunTimeouts({
      db: options.store.db,
      logger: options.logger,
      metrics: options.metrics,
      announceCancel: (runId) => this.announceCancel(runId),
      onEnded: (runId) => options.onRunChanged?.(runId),
    });
    this.schedules = new ScheduleFires({
      database: options.store.database,
      logger: options.logger,
      clock: scheduleClock((name) => options.registry.find(name)?.timeoutMs),
      announceRuns: () => this.announce(),
      noteTimeout: (at) => this.noteTimeout(at),
      announceCancel: (runId) => this.announceCancel(runId),
      onEnded: (runId) => options.onRunChanged?.(runId),
    });
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** Runs queued and waiting in the store (every process), for the metrics scrape. */
  queueDepth(): Promise<QueueDepth> {
    return queueDepth(this.options.store.db);
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
      await this.options.store.database.listen(wakeChannel, () => this.wake());
      await this.options.store.database.listen(cancelChannel, (runId) => this.abortCancelled(runId));
      await this.options.store.database.listen(turnChannel, (agent) => this.options.turnBoard.announce(agent));
    } catch (error) {
      this.options.logger.warn({ err: error }, "LISTEN failed; relying on polling until it reconnects");
    }
    // Announced before the first claim, so ExplainRun sees who loaded what; a failure only delays that to the next heartbeat.
    await this.announceSelf().catch((error: unknown) => this.options.logger.warn({ err: error }, "announcing this process failed; retrying at the next heartbeat"));
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.options.leaseMs / 3)));
    this.sweeps.start();
    await this.schedules.start();
    this.schedulePoll(0);
  }

  /** A run with a run-level timeout was created here: fire it at `at` (other processes find it at their poll). */
  noteTimeout(at: Date): void {
    if (this.stopped) return;
    this.timeouts.note(at);
  }

  private announceSelf(): Promise<void> {
    return announceProcess(this.options.store.db, {
      id: this.owner,
      host: hostname(),
      pid: process.pid,
      workflows: this.options.registry.list().map((w) => w.name),
      version: this.options.version ?? "",
      leaseMs: this.options.leaseMs,
    });
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
    await this.options.store.db.execute(sql`select pg_notify(${wakeChannel}, '')`);
  }

  /** Stops the run's activation wherever it executes (its next durable operation would stop it anyway). */
  async announceCancel(runId: string): Promise<void> {
    this.abortCancelled(runId);
    await this.options.store.db.execute(sql`select pg_notify(${cancelChannel}, ${runId})`);
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
   * Wakes this worker at `at` (a run parked here has a timer, a backoff or a wait's timeout due then); a little before
   * it when the run waits on the clock alone, to claim it ahead.
   */
  noteDeadline(at: Date, clockOnly = false): void {
    if (this.stopped) return;
    this.deadlineTimer.note(at, clockOnly ? claimAheadMs : 0);
  }

  /**
   * Stops claiming, lets running activations finish for up to `graceMs`, then
   * aborts the rest; their runs are released for other processes at once.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    this.deadlineTimer.stop();
    this.timeouts.stop();
    this.schedules.stop();
    this.sweeps.stop();
    // A claim under way may still launch runs: wait for it so they are included below.
    await this.claiming;
    const all = Promise.allSettled([...this.active.values()].map((a) => a.done));
    const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([all, timer]);
    for (const run of this.active.values()) run.controller.abort(new ShutdownError("server shutting down"));
    await Promise.allSettled([...this.active.values()].map((a) => a.done));
    clearInterval(this.heartbeatTimer);
    // Nothing of ours is claimed any more: ExplainRun stops counting this process at once, not after its lease.
    await removeProcess(this.options.store.db, this.owner).catch((error: unknown) => this.options.logger.warn({ err: error }, "removing this process's row failed; it stops counting as live after its lease"));
  }

  private schedulePoll(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => {
      this.wake();
      void Promise.all([this.armForNextDue(), this.timeouts.armForNext(), this.schedules.armForNext()]).finally(() => this.schedulePoll(this.options.pollIntervalMs));
    }, delayMs);
  }

  /** Deadlines set by other (or dead) processes: sleep exactly until the earliest. */
  private async armForNextDue(): Promise<void> {
    try {
      const due = await nextDueAt(this.options.store.db, this.options.registry.list().map((w) => w.name));
      // At the concurrency limit a freed slot claims again by itself. Otherwise a run already due is being
      // claimed right now (or PostgreSQL's clock is a hair behind ours): look again a moment later, never in a spin.
      if (this.starved) return;
      this.nextDeadlineUnknown = false;
      if (due) {
        // Fired no sooner than minRearmMs from now, the claim ahead counted: its claim may find nothing (PostgreSQL's
        // clock a hair behind ours), and each try would otherwise read the same deadline and fire again at once.
        const aheadMs = due.clockOnly ? claimAheadMs : 0;
        const firesAt = Math.max(due.at.getTime() - aheadMs, Date.now() + minRearmMs);
        this.deadlineTimer.note(new Date(firesAt + aheadMs), aheadMs);
      }
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
        const claimed = await claimDueRuns(this.options.store.db, this.owner, this.options.leaseMs, capacity, names, claimAheadMs);
        // One read for the whole batch's journals instead of one per run.
        const unknown = claimed.filter((r) => !this.parkedJournals.has(r.id, r.leaseEpoch - 1));
        const journals =
          unknown.length > 1
            ? await loadJournals(this.options.store.db, unknown.map((r) => r.id)).catch(() => undefined) // each then reads its own
            : undefined;
        const metrics = this.options.metrics;
        if (metrics) for (const run of claimed) if (run.availableAt) metrics.claimLatency.observe(Math.max(0, sentAt - run.availableAt.getTime()) / 1000);
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
      void releaseRun(this.options.store.db, fence).catch(() => undefined);
      return;
    }
    if (this.active.has(run.id)) {
      // Our own earlier activation lost the lease and is still unwinding; it can't write (stale epoch).
      this.options.logger.warn({ runId: run.id }, "run re-claimed while a stale activation is unwinding");
    }
    const controller = new AbortController();
    const entry: ActiveRun = { fence, run, controller, done: Promise.resolve(), validUntil };
    const deps = {
      store: this.options.store,
      registry: this.options.registry,
      logger: this.options.logger,
      limits: this.options.limits,
      metrics: this.options.metrics,
      tracing: this.options.tracing,
      onChildCreated: (timeoutMs: number | undefined) => {
        // About when the child's timeout_at falls: a firing a hair early finds nothing due and re-arms from the store.
        if (timeoutMs !== undefined) this.noteTimeout(new Date(Date.now() + timeoutMs));
        void this.announce().catch(() => undefined);
      },
      onTurnCreated: (agent: string) => {
        this.options.turnBoard.announce(agent);
        void this.options.store.db.execute(sql`select pg_notify(${turnChannel}, ${agent})`).catch(() => undefined);
      },
      onEnded: (runId: string, row: RunRow | undefined, entries?: () => readonly JournalEntry[]) => this.options.onRunChanged?.(runId, row, entries),
      onAppended: (runId: string, entries: () => readonly JournalEntry[]) => this.options.onEntriesAppended?.(runId, entries),
      onSuspended: (suspended: RunRow, waits: readonly PendingWait[], deadline: Date | undefined, known: JournalEntry[] | undefined) => {
        if (known) this.parkedJournals.remember(suspended.id, fence.epoch, known);
        if (deadline) this.noteDeadline(deadline, onClockAlone(waits));
        this.options.onRunChanged?.(suspended.id);
      },
      runner: this.runner,
      holdClockWaitsMs,
      maxAbnormalActivations: this.options.maxAbnormalActivations,
      onRequeued: () => this.wake(),
      leaseValidUntil: (held: Fence) => (this.active.get(held.runId) === entry ? entry.validUntil : 0),
    };
    // Registered before the activation starts: its lease horizon (leaseValidUntil) is looked up here from its first
    // synchronous step on.
    this.active.set(run.id, entry);
    entry.done = executeRun(deps, run, fence, controller.signal, journal)
      .catch((error: unknown) => {
        // The database failed under us: the lease will lapse and another activation replays the run.
        this.options.logger.error({ err: error, runId: run.id }, "activation failed; the run will be retried after its lease lapses");
      })
      .finally(() => {
        if (this.active.get(run.id) === entry) this.active.delete(run.id);
        if (this.starved && this.active.size + this.reserved < this.options.maxConcurrentRuns) this.wake();
      });
  }

  private abortCancelled(runId: string): void {
    this.active.get(runId)?.controller.abort(new RunCancelRequestedError(runId, "cancelled"));
  }

  private async heartbeat(): Promise<void> {
    const { store, leaseMs, logger } = this.options;
    if (await renewHeldLeases({ db: store.database.leaseDb, owner: this.owner, leaseMs, maxAbnormalActivations: this.options.maxAbnormalActivations ?? Number.POSITIVE_INFINITY, logger, active: this.active, lastRenewal: this.lastRenewal, onRequeued: () => this.wake() })) {
      this.lastRenewal = Date.now();
    }
    // Refreshes last_seen_at (and brings the row back if a sweep dropped it during a long stall).
    if (!this.stopped) await this.announceSelf().catch((error: unknown) => logger.warn({ err: error }, "refreshing this process's row failed"));
  }

}
