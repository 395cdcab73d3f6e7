/**
 * Fires run-level timeouts: a `DeadlineTimer` of its own, armed for the earliest `timeout_at` this process
 * knows (runs it created, the store's next one, read at start and at every poll). When it fires, every run
 * past its timeout fails (queued, waiting, paused) or is asked to stop (running: its holder fails it with
 * RunTimeoutError at its next durable operation, sooner when the cancel notice reaches it), and the children
 * that end with it are cancelled as CancelRun would. Any process may fire any run's timeout: each run is
 * decided under its row lock, so two processes firing at once fail it once. If this process dies mid-way,
 * the runs left are still due and the next process's timer (or poll) fires them.
 */
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { Db } from "../store/database.js";
import { cancelDescendants } from "../store/runs/cancel.js";
import { dueTimeouts, nextTimeoutAt, timeOutRun } from "../store/runs/timeout.js";
import { CoalescedTask } from "./coalesced-task.js";
import { DeadlineTimer } from "./deadline-timer.js";

/** Runs failed per statement round; more are handled in further rounds. */
const batch = 100;
/** A run still due right after firing (locked elsewhere, or the clocks differ by a hair): look again this much later, never in a spin. */
const minRearmMs = 20;

export interface RunTimeoutsOptions {
  db: Db;
  logger: Logger;
  metrics?: Metrics | undefined;
  /** Tell the holder of a running run (wherever it executes) to stop now. */
  announceCancel(runId: string): Promise<void>;
  /** A run ended here (failed by its timeout, or a child cancelled): for local waiters such as AwaitRun. */
  onEnded(runId: string): void;
}

export class RunTimeouts {
  private readonly timer = new DeadlineTimer(() => void this.fire());
  private readonly firing = new CoalescedTask(() => this.fireDue());
  private stopped = false;

  constructor(private readonly options: RunTimeoutsOptions) {}

  /** A run with this timeout was created here: fire at `at` without waiting for the poll to find it. */
  note(at: Date): void {
    if (!this.stopped) this.timer.note(at);
  }

  /** Reads the store's earliest pending timeout and arms for it (at start and at each poll: runs created elsewhere). */
  async armForNext(): Promise<void> {
    if (this.stopped) return;
    try {
      const at = await nextTimeoutAt(this.options.db);
      if (at) this.timer.note(new Date(Math.max(at.getTime(), Date.now() + (at.getTime() <= Date.now() ? minRearmMs : 0))));
    } catch (error) {
      this.options.logger.warn({ err: error }, "reading the next run timeout failed; retrying at next poll");
    }
  }

  stop(): void {
    this.stopped = true;
    this.timer.stop();
  }

  private fire(): void {
    if (!this.stopped) this.firing.request();
  }

  private async fireDue(): Promise<void> {
    const { db, logger } = this.options;
    try {
      for (;;) {
        const due = await dueTimeouts(db, batch);
        for (const run of due) await this.timeOut(run.namespace, run.id);
        if (due.length < batch || this.stopped) break;
      }
    } catch (error) {
      logger.warn({ err: error }, "firing run timeouts failed; retrying at next poll");
      return;
    }
    await this.armForNext();
  }

  private async timeOut(namespace: string, runId: string): Promise<void> {
    const { db, logger, metrics } = this.options;
    const result = await timeOutRun(db, namespace, runId);
    if (!result) return;
    const message = result.run.error?.message ?? result.run.cancelReason ?? "timed out";
    if (result.outcome === "failed") {
      metrics?.runsEnded.inc({ workflow: result.run.workflowName, status: "failed" });
      this.options.onEnded(runId);
      logger.warn({ runId, workflow: result.run.workflowName }, "run timed out: failed");
    } else {
      await this.options.announceCancel(runId).catch(() => undefined);
      logger.warn({ runId, workflow: result.run.workflowName }, "run timed out: its holder was asked to stop");
    }
    for (const child of await cancelDescendants(db, namespace, runId, `parent run ${runId} timed out: ${message}`)) {
      if (child.outcome === "cancelled") {
        metrics?.runsEnded.inc({ workflow: child.run.workflowName, status: "cancelled" });
        this.options.onEnded(child.run.id);
      }
      if (child.outcome === "requested") await this.options.announceCancel(child.run.id).catch(() => undefined);
    }
  }
}
