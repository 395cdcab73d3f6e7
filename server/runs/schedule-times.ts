/**
 * A schedule's fire times: cron expressions read in an IANA time zone (croner: DST-correct, a wall-clock time that
 * does not exist is skipped, one that occurs twice fires once) or fixed intervals counted from an anchor. Pure
 * computation; every server computes the same nominal times, which is what makes the idempotency key
 * "schedule:<id>:<nominal>" agree across replicas. Jitter is derived from the schedule id and the nominal time for
 * the same reason.
 */
import { createHash } from "node:crypto";
import { Cron } from "croner";
import { InvalidInputError } from "../core/errors.js";
import type { FireClock } from "../store/schedules/fire.js";

export interface ScheduleTiming {
  cron: string | null;
  timezone: string;
  everyMs: number | null;
  anchorAt: Date;
}

const ranges: Record<string, string> = {
  second: "0-59",
  minute: "0-59",
  hour: "0-23",
  "day of month": "1-31",
  month: "1-12 or JAN-DEC",
  "day of week": "0-7 or SUN-SAT",
};
const fieldNames5 = ["minute", "hour", "day of month", "month", "day of week"];
const fieldNames6 = ["second", ...fieldNames5];

/** Throws InvalidInputError naming the field (position and name) and the problem. */
export function checkCron(expression: string): void {
  const fields = expression.trim().split(/\s+/).filter(Boolean);
  if (fields.length < 5 || fields.length > 6) {
    throw new InvalidInputError(
      `invalid cron "${expression}": expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got ${fields.length}`,
    );
  }
  const names = fields.length === 6 ? fieldNames6 : fieldNames5;
  try {
    new Cron(fields.join(" "), { paused: true, mode: fields.length === 6 ? "6-part" : "5-part" });
  } catch (error) {
    const message = error instanceof Error ? error.message.replace(/^CronPattern: /, "") : String(error);
    const index = failingField(message, names);
    // croner's value in "Invalid value for month: 12" is its internal (0-based) one: show the field as written.
    const problem = index >= 0 ? message.replace(/^Invalid value for [A-Za-z]+: .*$/, `out of range (${ranges[names[index]!]})`).replace(/^configuration entry \d+ \(.*?\) /, "") : message;
    const where = index >= 0 ? `field ${index + 1} (${names[index]}) "${fields[index]}"` : "the expression";
    throw new InvalidInputError(`invalid cron "${expression}": ${where}: ${problem}`);
  }
}

/** Which field croner's message is about: "Invalid value for dayOfWeek: 8", "configuration entry 1 (a) ...". */
function failingField(message: string, names: readonly string[]): number {
  const entry = /configuration entry (\d+)/.exec(message);
  if (entry) return Number(entry[1]) - 1;
  const named = /for (second|minute|hour|day|month|dayOfWeek)\b/.exec(message)?.[1];
  const name = { second: "second", minute: "minute", hour: "hour", day: "day of month", month: "month", dayOfWeek: "day of week" }[named ?? ""];
  return name ? names.indexOf(name) : -1;
}

/** Throws InvalidInputError for a name that is not an IANA time zone. */
export function checkTimeZone(timezone: string): void {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch {
    throw new InvalidInputError(`unknown time zone "${timezone}": use an IANA name such as "Europe/Berlin" or "UTC"`);
  }
}

function cronOf(timing: ScheduleTiming): Cron {
  const fields = timing.cron!.trim().split(/\s+/);
  return new Cron(fields.join(" "), { paused: true, timezone: timing.timezone, mode: fields.length === 6 ? "6-part" : "5-part" });
}

/** The first nominal fire time strictly after `after`. */
export function nextFireAfter(timing: ScheduleTiming, after: Date): Date | undefined {
  if (timing.everyMs !== null) {
    const anchor = timing.anchorAt.getTime();
    // k may be negative: a backfill before the schedule's creation gets the same grid of fire times.
    const k = Math.floor((after.getTime() - anchor) / timing.everyMs) + 1;
    return new Date(anchor + k * timing.everyMs);
  }
  return cronOf(timing).nextRun(after) ?? undefined;
}

/** The first nominal fire time at or after `from`. */
export function firstFireFrom(timing: ScheduleTiming, from: Date): Date | undefined {
  return nextFireAfter(timing, new Date(from.getTime() - 1));
}

/** Every nominal fire time in [start, end], at most `limit` (more: undefined). */
export function fireTimesBetween(timing: ScheduleTiming, start: Date, end: Date, limit: number): Date[] | undefined {
  const times: Date[] = [];
  let at = firstFireFrom(timing, start);
  while (at && at.getTime() <= end.getTime()) {
    if (times.length >= limit) return undefined;
    times.push(at);
    at = nextFireAfter(timing, at);
  }
  return times;
}

/** The fire's delay in [0, jitterMs], the same on every server. */
export function jitterFor(scheduleId: string, nominal: Date, jitterMs: number): number {
  if (jitterMs <= 0) return 0;
  const hash = createHash("sha256").update(`${scheduleId}\n${nominal.toISOString()}`).digest();
  return hash.readUInt32BE(0) % (jitterMs + 1);
}

/** The idempotency key of a fire: one run per schedule and nominal time, whichever server fires it. */
export function fireKey(scheduleId: string, nominal: Date): string {
  return `schedule:${scheduleId}:${nominal.toISOString()}`;
}

/** The arithmetic the store's firing applies (store/schedules/fire.ts), with the workflows' run timeouts. */
export function scheduleClock(timeoutMsOf: (workflowName: string) => number | undefined): FireClock {
  return {
    nextFireAfter: (row, after) => nextFireAfter(row, after),
    firstFireFrom: (row, from) => firstFireFrom(row, from),
    jitterFor: (row, nominal) => jitterFor(row.scheduleId, nominal, row.jitterMs),
    fireKey,
    timeoutMsOf,
  };
}
