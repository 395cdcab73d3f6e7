/** Durations and instants as workflow authors write them, turned into milliseconds and Dates. */
import type { Duration } from "../../sdk/workflow.js";

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

export class InvalidDurationError extends Error {
  override readonly name = "InvalidDurationError";
}

/** `"30s"`, `"1h30m"`, `"250ms"`, a number of ms, or `{ minutes: 5 }` → ms. Throws InvalidDurationError (negative, NaN, unparseable). */
export function parseDuration(duration: Duration): number {
  if (typeof duration === "number") return checked(duration, duration);
  if (typeof duration === "string") {
    const text = duration.trim();
    let total = 0;
    part.lastIndex = 0;
    let consumed = 0;
    for (let match = part.exec(text); match; match = part.exec(text)) {
      total += Number(match[1]) * (unitMs[match[2] ?? ""] ?? Number.NaN);
      consumed = part.lastIndex;
    }
    if (text.length === 0 || consumed !== text.length) {
      throw new InvalidDurationError(`${JSON.stringify(duration)} is not a duration; write e.g. "250ms", "30s", "5m", "1h30m", "2d", a number of milliseconds, or { minutes: 5 }`);
    }
    return checked(total, duration);
  }
  if (typeof duration === "object" && duration !== null) {
    const { days = 0, hours = 0, minutes = 0, seconds = 0, milliseconds = 0, ...rest } = duration;
    const unknown = Object.keys(rest);
    if (unknown.length > 0) throw new InvalidDurationError(`unknown duration field ${unknown.join(", ")}; use days, hours, minutes, seconds, milliseconds`);
    return checked(days * unitMs.d! + hours * unitMs.h! + minutes * unitMs.m! + seconds * 1000 + milliseconds, duration);
  }
  throw new InvalidDurationError(`${String(duration)} is not a duration`);
}

function checked(ms: number, original: unknown): number {
  if (!Number.isFinite(ms)) throw new InvalidDurationError(`${JSON.stringify(original)} is not a finite duration`);
  if (ms < 0) throw new InvalidDurationError(`${JSON.stringify(original)} is negative; durations must be zero or more`);
  return Math.round(ms);
}

/** A Date, an ISO-8601 string or epoch milliseconds → Date. */
export function parseInstant(when: Date | string | number): Date {
  const date = when instanceof Date ? new Date(when.getTime()) : typeof when === "string" || typeof when === "number" ? new Date(when) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime())) {
    throw new InvalidDurationError(`${JSON.stringify(when)} is not a point in time; pass a Date, an ISO-8601 string or epoch milliseconds`);
  }
  return date;
}
