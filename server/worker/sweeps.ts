/**
 * Periodic housekeeping any process may do: today, deleting events past
 * retention and the rows of dead processes. Each sweep is one bounded statement; two processes sweeping at
 * once delete disjoint rows or nothing. Later sweeps (run retention,
 * schedules) plug in here.
 */
import type { Logger } from "../logger.js";
import type { Db } from "../store/database.js";
import { deleteExpiredEvents } from "../store/events.js";
import { deleteDeadProcesses } from "../store/processes.js";

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
    options: { eventRetentionMs: number },
  ) {
    this.sweeps = [
      { name: "deleted events past retention", everyMs: 60_000, run: () => deleteExpiredEvents(db, options.eventRetentionMs) },
      // Rows of processes that died without a clean shutdown (they stopped counting as live long before).
      { name: "deleted rows of processes not seen for an hour", everyMs: 60_000, run: () => deleteDeadProcesses(db) },
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
