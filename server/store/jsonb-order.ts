/**
 * A JSON value as PostgreSQL's jsonb gives it back: jsonb keeps an object's keys sorted, shorter keys first (in
 * UTF-8 bytes) and then bytewise, whatever order they were written in. An entry the process wrote and hands to its
 * waiters without reading it back (run-feed.ts, `publishLocal`) must look exactly as a read would show it.
 */
import type { JsonValue } from "../../sdk/workflow.js";

const ascii = /^[\x00-\x7f]*$/;

export function inJsonbOrder<T extends JsonValue | object>(value: T): T {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item: JsonValue) => inJsonbOrder(item)) as T;
  const keys = Object.keys(value).sort(jsonbKeyOrder);
  const ordered: Record<string, unknown> = {};
  for (const key of keys) {
    const item = (value as Record<string, unknown>)[key];
    // jsonb never holds undefined: JSON.stringify dropped such a key before the write.
    if (item !== undefined) ordered[key] = inJsonbOrder(item as JsonValue);
  }
  return ordered as T;
}

/** jsonb's key order: by length in UTF-8 bytes, then by bytes. */
export function jsonbKeyOrder(a: string, b: string): number {
  if (ascii.test(a) && ascii.test(b)) return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length !== y.length ? x.length - y.length : Buffer.compare(x, y);
}
