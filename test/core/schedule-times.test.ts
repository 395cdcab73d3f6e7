// Fire-time arithmetic (server/runs/schedule-times.ts): cron in Europe/Berlin across both DST changes of 2026,
// intervals on their anchor grid, deterministic jitter, and cron errors that name the field and the problem.
import assert from "node:assert/strict";
import { test } from "vitest";
import { checkCron, fireTimesBetween, jitterFor, nextFireAfter } from "../../server/runs/schedule-times.js";

const berlin = (cron: string) => ({ cron, timezone: "Europe/Berlin", everyMs: null, anchorAt: new Date(0) });
const iso = (dates: (Date | undefined)[]) => dates.map((d) => d?.toISOString());

function next(timing: ReturnType<typeof berlin>, from: string, n: number): Date[] {
  const out: Date[] = [];
  let at = new Date(from);
  for (let i = 0; i < n; i++) out.push((at = nextFireAfter(timing, at)!));
  return out;
}

test("09:00 in Berlin stays 09:00 wall-clock across the spring and autumn DST changes", () => {
  // 2026-03-29: CET (UTC+1) → CEST (UTC+2). 2026-10-25: back to CET.
  assert.deepEqual(iso(next(berlin("0 9 * * *"), "2026-03-27T12:00:00Z", 4)), [
    "2026-03-28T08:00:00.000Z",
    "2026-03-29T07:00:00.000Z",
    "2026-03-30T07:00:00.000Z",
    "2026-03-31T07:00:00.000Z",
  ]);
  assert.deepEqual(iso(next(berlin("0 9 * * *"), "2026-10-24T00:00:00Z", 3)), ["2026-10-24T07:00:00.000Z", "2026-10-25T08:00:00.000Z", "2026-10-26T08:00:00.000Z"]);
});

test("a wall-clock time that does not exist (02:30 on the spring change) fires once that day; one that occurs twice fires once", () => {
  const spring = next(berlin("30 2 * * *"), "2026-03-28T00:00:00Z", 3);
  assert.equal(spring[0]!.toISOString(), "2026-03-28T01:30:00.000Z");
  // 02:30 is skipped by the clocks on 2026-03-29: exactly one fire that day, not before 03:00 CEST (01:00Z).
  assert.ok(spring[1]!.getTime() >= Date.parse("2026-03-29T01:00:00Z") && spring[1]!.getTime() < Date.parse("2026-03-30T00:00:00Z"), spring[1]!.toISOString());
  assert.equal(spring[2]!.toISOString(), "2026-03-30T00:30:00.000Z");
  // 02:30 happens twice on 2026-10-25 (CEST then CET): one fire.
  const autumn = fireTimesBetween(berlin("30 2 * * *"), new Date("2026-10-25T00:00:00Z"), new Date("2026-10-25T23:59:59Z"), 10)!;
  assert.equal(autumn.length, 1, iso(autumn).join(", "));
});

test("hourly in Berlin on the autumn change: 25 fires that day, on the spring change 23", () => {
  assert.equal(fireTimesBetween(berlin("0 * * * *"), new Date("2026-10-24T22:00:00Z"), new Date("2026-10-25T22:59:59Z"), 100)!.length, 25);
  assert.equal(fireTimesBetween(berlin("0 * * * *"), new Date("2026-03-28T23:00:00Z"), new Date("2026-03-29T21:59:59Z"), 100)!.length, 23);
});

test("every: fire times on the anchor's grid, also before the anchor (backfill)", () => {
  const timing = { cron: null, timezone: "UTC", everyMs: 10_000, anchorAt: new Date("2026-01-01T00:00:03Z") };
  assert.equal(nextFireAfter(timing, timing.anchorAt)!.toISOString(), "2026-01-01T00:00:13.000Z");
  assert.deepEqual(iso(fireTimesBetween(timing, new Date("2025-12-31T23:59:40Z"), new Date("2026-01-01T00:00:05Z"), 10)!), [
    "2025-12-31T23:59:43.000Z",
    "2025-12-31T23:59:53.000Z",
    "2026-01-01T00:00:03.000Z",
  ]);
  assert.equal(fireTimesBetween(timing, new Date(0), new Date("2026-01-01T00:00:00Z"), 10), undefined, "too many fire times");
});

test("jitter is within [0, jitter] and the same for every server", () => {
  const at = new Date("2026-01-01T00:00:00Z");
  const values = Array.from({ length: 50 }, (_, i) => jitterFor(`s${i}`, at, 1000));
  assert.ok(values.every((v) => v >= 0 && v <= 1000));
  assert.ok(new Set(values).size > 10);
  assert.equal(jitterFor("s1", at, 1000), jitterFor("s1", at, 1000));
  assert.equal(jitterFor("s1", at, 0), 0);
});

test("an invalid cron names the field's position and the problem", () => {
  const cases: [string, RegExp][] = [
    ["61 * * * *", /field 1 \(minute\) "61": out of range \(0-59\)/],
    ["0 24 * * *", /field 2 \(hour\) "24": out of range \(0-23\)/],
    ["0 0 32 * *", /field 3 \(day of month\) "32": out of range \(1-31\)/],
    ["0 0 1 13 *", /field 4 \(month\) "13": out of range/],
    ["0 0 * * 9", /field 5 \(day of week\) "9": out of range/],
    ["0 x * * *", /field 2 \(hour\) "x": contains illegal characters/],
    ["* * * *", /expected 5 fields .* got 4/],
    ["70 * * * * *", /field 1 \(second\) "70"/],
  ];
  for (const [cron, message] of cases) assert.throws(() => checkCron(cron), message, cron);
  assert.doesNotThrow(() => checkCron("*/5 9-17 * * MON-FRI"));
});
