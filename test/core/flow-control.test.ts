// defineWorkflow's flow-control options as the loader checks them, and what a run stores from them (pure).
import { test } from "vitest";
import assert from "node:assert/strict";
import { FlowControlError, mayStartEagerly, parseFlowControl, runFlowControl } from "../../server/core/flow-control.js";

test("limits and periods must be more than zero; unknown options are named", () => {
  const bad: [unknown, RegExp][] = [
    [{ concurrency: { limit: 0 } }, /concurrency\.limit must be a whole number more than zero, got 0/],
    [{ concurrency: { limit: -3 } }, /concurrency\.limit must be a whole number more than zero, got -3/],
    [{ concurrency: { limit: 1.5 } }, /concurrency\.limit must be a whole number/],
    [{ rateLimit: { limit: 10, period: 0 } }, /rateLimit\.period must be more than zero/],
    [{ rateLimit: { limit: 10, period: "soon" } }, /rateLimit\.period is not valid/],
    [{ rateLimit: { limit: 0, period: "1s" } }, /rateLimit\.limit must be a whole number more than zero/],
    [{ debounce: { period: "-1s" } }, /debounce\.period/],
    [{ concurrency: { limit: 1, keys: () => "" } }, /concurrency has an unknown option "keys"/],
    [{ concurrency: { limit: 1, key: "accountId" } }, /concurrency\.key must be a function/],
    [{ priority: 1001 }, /priority must be an integer from -1000 to 1000, got 1001/],
  ];
  for (const [options, message] of bad) assert.throws(() => parseFlowControl(options as never), (error: Error) => error instanceof FlowControlError && message.test(error.message));
});

test("keys are evaluated once over the input; no key function is one shared key", () => {
  let calls = 0;
  const flow = parseFlowControl({
    concurrency: { limit: 2, key: (input: any) => { calls++; return input.account; } },
    rateLimit: { limit: 10, period: "1s" },
    priority: 5,
  });
  const run = runFlowControl(flow, { account: "a-1" }, { namespaceMaxRunning: 7 });
  assert.deepEqual(run, {
    priority: 5, concurrencyKey: "a-1", concurrencyLimit: 2, rateKey: "", rateLimit: 10, ratePeriodMs: 1000,
    debounceKey: null, delayMs: null, namespaceMaxRunning: 7,
  });
  assert.equal(calls, 1);
  assert.equal(runFlowControl(flow, { account: "a-1" }, { priority: -3 }).priority, -3, "CreateRun's priority overrides");
  assert.ok(mayStartEagerly(run));
  const debounced = runFlowControl(parseFlowControl({ debounce: { period: "2s", key: (i: any) => i.k } }), { k: "x" }, {});
  assert.deepEqual([debounced.debounceKey, debounced.delayMs], ["x", 2000]);
  assert.ok(!mayStartEagerly(debounced), "a debounced run is due a period later");
  assert.throws(() => runFlowControl(flow, { account: 42 }, {}), /concurrency\.key must return a string, got number/);
});
