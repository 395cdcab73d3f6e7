/**
 * The in-process worker pool. It claims runs (queued ones, and ones whose
 * holder died and whose lease lapsed), executes them up to a concurrency
 * limit, renews the leases of everything it executes in one statement per
 * heartbeat, and aborts an activation the moment its lease is found lost.
 * Idle, it polls every `pollIntervalMs`; `wake()` claims at once.
 */
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { LeaseLostError } from "../engine/errors.js";
import type { Logger } from "../logger.js";
import type { Db } from "../store/database.js";
import { claimQueuedRuns, type Fence, renewLeases, requeueExpiredLeases } from "../store/runs.js";
import type { RunRow } from "../store/schema.js";
import type { WorkflowRegistry } from "../workflows/registry.js";
import { executeRun } from "./run-executor.js";

export interface SchedulerOptions {
  db: Db;
  registry: WorkflowRegistry;
  logger: Logger;
  leaseMs: number;
  pollIntervalMs: number;
  maxConcurrentRuns: number;
  /** Unique per process; defaults to host:pid:random. */
  owner?: string;
}

interface ActiveRun {
  fence: Fence;
  controller: AbortController;
  done: Promise<void>;
}

export class ShutdownError extends Error {
  override readonly name = "ShutdownError";
}

export class Scheduler {
  readonly owner: string;
  private readonly active = new Map<string, ActiveRun>();
  private stopped = true;
  private claiming = false;
  private claimAgain = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastRenewal = Date.now();

  constructor(private readonly options: SchedulerOptions) {
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  get activeCount(): number {
    return this.active.size;
  }

  start(): void {
    this.stopped = false;
    this.lastRenewal = Date.now();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.options.leaseMs / 3)));
    this.schedulePoll(0);
  }

  /** Look for claimable runs now (a run was queued or a slot freed up). */
  wake(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    void this.claimLoop();
  }

  /** Executes a run this process claimed itself (eager start). */
  adopt(run: RunRow): void {
    if (run.leaseOwner !== this.owner) throw new Error(`run ${run.id} is not claimed by ${this.owner}`);
    this.launch(run);
  }

  /**
   * Stops claiming, lets running activations finish for up to `graceMs`, then
   * aborts the rest; their runs are released for other processes at once.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.pollTimer);
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
      void this.claimLoop().finally(() => this.schedulePoll(this.options.pollIntervalMs));
    }, delayMs);
  }

  private async claimLoop(): Promise<void> {
    if (this.claiming) return;
    this.claiming = true;
    try {
      do {
        this.claimAgain = false;
        const capacity = this.options.maxConcurrentRuns - this.active.size;
        if (capacity <= 0 || this.stopped) break;
        const claimed = await claimQueuedRuns(this.options.db, this.owner, this.options.leaseMs, capacity);
        for (const run of claimed) this.launch(run);
        // A full batch suggests more are waiting.
        if (claimed.length === capacity) this.claimAgain = true;
      } while (this.claimAgain && !this.stopped);
    } catch (error) {
      this.options.logger.warn({ err: error }, "claiming runs failed; retrying at next poll");
    } finally {
      this.claiming = false;
    }
  }

  private launch(run: RunRow): void {
    if (this.active.has(run.id)) {
      // Our own earlier activation lost the lease and is still unwinding; it can't write (stale epoch).
      this.options.logger.warn({ runId: run.id }, "run re-claimed while a stale activation is unwinding");
    }
    const fence: Fence = { runId: run.id, owner: this.owner, epoch: run.leaseEpoch };
    const controller = new AbortController();
    const entry: ActiveRun = { fence, controller, done: Promise.resolve() };
    entry.done = executeRun(this.options, run, fence, controller.signal)
      .catch((error: unknown) => {
        // The database failed under us: the lease will lapse and another activation replays the run.
        this.options.logger.error({ err: error, runId: run.id }, "activation failed; the run will be retried after its lease lapses");
      })
      .finally(() => {
        if (this.active.get(run.id) === entry) this.active.delete(run.id);
        this.wake();
      });
    this.active.set(run.id, entry);
  }

  private async heartbeat(): Promise<void> {
    try {
      const ids = [...this.active.keys()];
      const renewed = await renewLeases(this.options.db, this.owner, this.options.leaseMs, ids);
      this.lastRenewal = Date.now();
      const held = new Set(renewed.map((f) => `${f.runId}:${f.epoch}`));
      for (const [id, run] of this.active) {
        if (ids.includes(id) && !held.has(`${id}:${run.fence.epoch}`)) run.controller.abort(new LeaseLostError(id));
      }
      // Any process may return lapsed runs to the queue; the claim that follows bumps their epoch.
      const requeued = await requeueExpiredLeases(this.options.db);
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
}
