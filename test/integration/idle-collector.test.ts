// A workflow thread's collection when it falls idle (server/worker/threads/idle-collector.ts): once per quiet
// period after work, never while an activation runs, and V8's real full collection is what it calls.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "vitest";
import { IdleCollector } from "../../server/worker/threads/idle-collector.js";

describe("IdleCollector", () => {
  test("collects once per quiet period after work, never while an activation runs", async () => {
    let collections = 0;
    const collector = new IdleCollector(setTimeout, clearTimeout, 30, () => collections++);
    /** Falls idle and stays quiet past the period: `expected` collections so far. */
    const quietPeriod = async (expected: number) => {
      collector.idle();
      await sleep(80);
      assert.equal(collections, expected);
    };
    // Idle without having worked: nothing to give back.
    await quietPeriod(0);
    // Work, idle, and work again before the period ends: no collection.
    collector.busy();
    collector.idle();
    await sleep(10);
    collector.busy();
    await sleep(80);
    assert.equal(collections, 0);
    // Idle for the period: one collection, and only one however long the quiet lasts.
    collector.idle();
    await quietPeriod(1);
    await quietPeriod(1);
    // The next quiet period after more work: one more.
    collector.busy();
    await quietPeriod(2);
  });

  test("the default collection is V8's full collection: garbage that only a full collection frees is gone after it", async () => {
    const collector = new IdleCollector(setTimeout, clearTimeout, 1);
    let held: object | undefined = { payload: new Array(1000).fill("x") };
    const ref = new WeakRef(held);
    // Old enough for the old generation: survive a few young collections.
    for (let i = 0; i < 5; i++) new Array(100_000).fill(i);
    held = undefined;
    collector.busy();
    collector.idle();
    await sleep(50);
    assert.equal(ref.deref(), undefined);
  });
});
