/**
 * Periodic housekeeping any process may do: deleting events and ended runs
 * past retention, and the rows of dead processes. Each statement is bounded;
 * two processes sweeping at once delete disjoint rows or nothing. Later
 * sweeps (schedules) plug in here.
 */
import type { Logger } from "../logger.js";
import type { Db } from "../store/database.js";
import type { RunRetention } from "../config.js";
import { deleteExpiredEvents } from "../store/events.js";
import { deleteDeadProcesses } from "../store/processes.js";
import { deleteRunsPastRetention } from "../store/runs/retention.js";

/** Runs deleted per statement, and statements per sweep: at most 10,000 runs a sweep, each statement short. */
const runsPerStatement = 500;
const statementsPerSweep = 20;

interface Sweep {
  name: string;
  everyMs: number;
  /** How many rows it handled. */
  run(): Promise<number>;
}

export class Sweeps {
  private readonly sweeps: Sweep[];
  private timers: ReturnType<typeof setInterval>[] = [];

  constructor(
    db: Db,
    private readonly logger: Logger,
    options: { eventRetentionMs: number; runRetention: RunRetention; everyMs: number },
  ) {
    this.sweeps = [
      { name: "deleted events past retention", everyMs: options.everyMs, run: () => deleteExpiredEvents(db, options.eventRetentionMs) },
      { name: "deleted ended runs past retention", everyMs: options.everyMs, run: () => deleteEndedRuns(db, options.runRetention) },
      // Rows of processes that died without a clean shutdown (they stopped counting as live long before).
      { name: "deleted rows of processes not seen for an hour", everyMs: options.everyMs, run: () => deleteDeadProcesses(db) },
    ];
  }

  start(): void {
    for (const sweep of this.sweeps) {
      const timer = setInterval(() => void this.once(sweep), sweep.everyMs);
      timer.unref();
      this.timers.push(timer);
    }
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  private async once(sweep: Sweep): Promise<void> {
    try {
      const count = await sweep.run();
      if (count > 0) this.logger.info({ count }, sweep.name);
    } catch (error) {
      this.logger.warn({ err: error }, `sweep failed: ${sweep.name}`);
    }
  }
}

/** Bounded statements until one comes back short: a backlog drains over a few sweeps, never in one long transaction. */
async function deleteEndedRuns(db: Db, retention: RunRetention): Promise<number> {
  let total = 0;
  for (let statement = 0; statement < statementsPerSweep; statement++) {
    const deleted = await deleteRunsPastRetention(db, retention, runsPerStatement);
    total += deleted;
    if (deleted < runsPerStatement) break;
  }
  return total;
}
