/**
 * Fires schedules: one `DeadlineTimer` per process, armed for the earliest `fire_due_at` of all schedules (read
 * at start, after every firing, at each poll, and whenever a `cairn_schedules` notice says a schedule was
 * created or changed). When it fires, due schedules are read and fired by one statement that advances each one
 * still at the version read (store/schedules/fire.ts), so several servers firing at once make each fire once.
 * No per-schedule polling: one indexed read of the minimum per arming. If this process dies mid-firing, that
 * statement never committed and the fire is still due for the next timer (its or another server's).
 */
import type { Logger } from "../logger.js";
import { type FireClock, type FireOutcome, fireDueSchedules, nextScheduleDue } from "../store/schedules/fire.js";
import { scheduleChannel } from "../store/schedules/rows.js";
import type { Database } from "../store/database.js";
import { cancelDescendants } from "../store/runs/cancel.js";
import { CoalescedTask } from "./coalesced-task.js";
import { DeadlineTimer } from "./deadline-timer.js";

/** Schedules fired per transaction; more due ones are fired in further rounds at once. */
const batch = 100;
/** A buffered fire (OVERLAP_BUFFER_ONE) waits for a run to end: look again this often while one is kept. */
const bufferedRecheckMs = 200;
/** Still due right after firing (locked by another server): look again this much later, never in a spin. */
const minRearmMs = 20;

export interface ScheduleFiresOptions {
  database: Database;
  logger: Logger;
  clock: FireClock;
  /** Runs were queued: tell the claimers (this process and the others). */
  announceRuns(): Promise<void>;
  /** A run with this timeout was created: fire it on time. */
  noteTimeout(at: Date): void;
  announceCancel(runId: string): Promise<void>;
  onEnded(runId: string): void;
  onFired?(outcome: FireOutcome): void;
}

export class ScheduleFires {
  private readonly timer = new DeadlineTimer(() => void this.fire());
  private readonly firing = new CoalescedTask(() => this.fireDue());
  private stopped = false;

  constructor(private readonly options: ScheduleFiresOptions) {}

  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.options.database.listen(scheduleChannel, () => void this.armForNext(), () => void this.armForNext());
    } catch (error) {
      this.options.logger.warn({ err: error }, "LISTEN for schedule changes failed; schedules re-arm at each poll");
    }
    await this.armForNext();
  }

  stop(): void {
    this.stopped = true;
    this.timer.stop();
  }

  /** Reads the earliest due schedule and arms for it (also at each poll: a lost notice only delays to then). */
  async armForNext(): Promise<void> {
    if (this.stopped) return;
    try {
      const { dueAt, buffered } = await nextScheduleDue(this.options.database.db);
      this.arm(dueAt, buffered);
    } catch (error) {
      this.options.logger.warn({ err: error }, "reading the next schedule fire failed; retrying at next poll");
    }
  }

  private fire(): void {
    if (!this.stopped) this.firing.request();
  }

  private async fireDue(): Promise<void> {
    const { database, logger, clock } = this.options;
    try {
      for (;;) {
        const outcome = await fireDueSchedules(database.db, batch, clock);
        await this.after(outcome);
        if (this.stopped) return;
        // A full batch read: more may be due (or other servers fired these first and the next ones wait).
        if (outcome.read === batch) continue;
        // The firing saw every due schedule and when the next one is due: arm for it without another round trip.
        // That due time was after the read's now(): if it is already past, fire at once (it is really due). Nothing
        // read tells nothing of what is next: read it.
        if (outcome.read > 0) this.arm(outcome.nextDue, outcome.buffered, 0);
        else await this.armForNext();
        return;
      }
    } catch (error) {
      logger.warn({ err: error }, "firing schedules failed; retrying at next poll");
    }
  }

  /** `pastDueDelayMs`: how long to wait for a due time already past (a row another server may be firing). */
  private arm(dueAt: Date | undefined, buffered: boolean, pastDueDelayMs = this.firing.busy ? minRearmMs : 0): void {
    const now = Date.now();
    if (dueAt) this.timer.note(new Date(Math.max(dueAt.getTime(), now + pastDueDelayMs)));
    if (buffered) this.timer.note(new Date(now + bufferedRecheckMs));
  }

  /** After the commit: announce the runs, stop cancelled ones, log skipped fires. */
  private async after(outcome: FireOutcome): Promise<void> {
    const { logger, database } = this.options;
    const created = outcome.started.filter((run) => run.created);
    for (const run of created) {
      if (run.timeoutAt) this.options.noteTimeout(run.timeoutAt);
      logger.info({ scheduleId: run.scheduleId, runId: run.runId, nominal: run.nominal.toISOString() }, "schedule fired");
    }
    // Not awaited: the next due fire need not wait for this notice's round trip (claimers also poll).
    if (created.length > 0) void this.options.announceRuns().catch(() => undefined);
    for (const skipped of outcome.skipped) {
      logger.warn(
        { namespace: skipped.namespace, scheduleId: skipped.scheduleId, count: skipped.count, from: skipped.from?.toISOString(), to: skipped.to?.toISOString() },
        `schedule fires skipped: ${skipped.reason}`,
      );
    }
    for (const cancelled of outcome.cancelled) {
      if (cancelled.outcome === "requested") await this.options.announceCancel(cancelled.run.id).catch(() => undefined);
      else this.options.onEnded(cancelled.run.id);
      const reason = `parent run ${cancelled.run.id} was cancelled by its schedule (OVERLAP_CANCEL_OTHER)`;
      for (const child of await cancelDescendants(database.db, cancelled.run.namespace, cancelled.run.id, reason).catch(() => [])) {
        if (child.outcome === "requested") await this.options.announceCancel(child.run.id).catch(() => undefined);
      }
    }
    this.options.onFired?.(outcome);
  }
}
