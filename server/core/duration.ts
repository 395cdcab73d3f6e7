/** Durations and instants as workflow authors write them, turned into milliseconds and Dates. */

// Parsing lives with the Duration type in the SDK (a client gives CreateRun's timeout the same way); one implementation.
import { InvalidDurationError } from "../../sdk/workflow.js";
export { InvalidDurationError, parseDuration } from "../../sdk/workflow.js";

/** A Date, an ISO-8601 string or epoch milliseconds → Date. */
export function parseInstant(when: Date | string | number): Date {
  const date = when instanceof Date ? new Date(when.getTime()) : typeof when === "string" || typeof when === "number" ? new Date(when) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime())) {
    throw new InvalidDurationError(`${JSON.stringify(when)} is not a point in time; pass a Date, an ISO-8601 string or epoch milliseconds`);
  }
  return date;
}
