// A batch's chunk applies at most 50 runs that have waiters in this process, so that the last of a chunk's watchers
// hears soon after its commit; a batch over runs nobody here waits on keeps the configured chunk size.
import assert from "node:assert/strict";
import { test } from "vitest";
import { runsToTake } from "../../server/worker/batch-runner.js";

const ids = (n: number) => Array.from({ length: n }, (_, i) => `r${i}`);
const index = (runId: string) => Number(runId.slice(1));

test("a chunk takes its runs up to the 50th that someone here waits on", () => {
  assert.equal(runsToTake(ids(200), () => 0), 200, "nobody waits: the whole chunk");
  assert.equal(runsToTake([], () => 1), 0);
  assert.equal(runsToTake(ids(200), () => 1), 50, "all watched: 50");
  assert.equal(runsToTake(ids(40), () => 1), 40, "fewer than 50 watched: all of them");
  assert.equal(runsToTake(ids(200), (runId) => (index(runId) % 2 === 0 ? 3 : 0)), 99, "every other one watched: up to the 50th of those");
  assert.equal(runsToTake(ids(200), (runId) => (index(runId) >= 150 ? 1 : 0)), 200, "the watched ones at the end, fewer than 50: all");
  assert.equal(runsToTake(ids(200), (runId) => (index(runId) >= 100 ? 1 : 0)), 150, "the unwatched ones first, then 50 watched");
});
