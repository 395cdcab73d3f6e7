// The in-memory test environment for workflow authors (server/testing/environment.ts): the real engine core
// over a virtual clock; long sleeps cost no wall time; exported histories replay against changed code.
import assert from "node:assert/strict";
import { describe, test } from "vitest";
import { createTestEnvironment, type ExportedHistory, type TestRun } from "../../server/testing/environment.js";
import { defineWorkflow } from "../../sdk/workflow.js";

const trial = defineWorkflow({
  name: "trial",
  async handler(input: { user: string }, ctx) {
    await ctx.step("welcome", () => `welcome ${input.user}`);
    await ctx.sleep("trial-period", "30d");
    const upgrade = await ctx.waitForEvent("upgrade", "user.upgraded", input.user, { timeout: "7d" });
    return upgrade ? { plan: upgrade } : { plan: "free", endedAt: ctx.now().toISOString() };
  },
});

const v1 = defineWorkflow({
  name: "order_fee",
  async handler(input: { order: string }, ctx) {
    const charged = await ctx.step("charge", () => 10);
    const paid = await ctx.waitForEvent("paid", "order.paid", input.order);
    return { charged, paid, fee: 0 };
  },
});
const patched = defineWorkflow({
  name: "order_fee",
  async handler(input: { order: string }, ctx) {
    const newFee = ctx.patched("new-fee");
    const charged = await ctx.step("charge", () => 10);
    const paid = await ctx.waitForEvent("paid", "order.paid", input.order);
    return { charged, paid, fee: newFee ? await ctx.step("fee", () => 2) : 0 };
  },
});
const unpatched = defineWorkflow({
  name: "order_fee",
  async handler(input: { order: string }, ctx) {
    const charged = await ctx.step("charge", () => 10);
    const fee = await ctx.step("fee", () => {
      throw new Error("must not run during a replay check");
    });
    return { charged, fee, paid: await ctx.waitForEvent("payment", "order.paid", input.order) };
  },
});

/** The shape `cairn runs history --json` prints: the run, and every entry with ISO dates. */
function exported(run: TestRun): ExportedHistory {
  return JSON.parse(JSON.stringify({ run: { runId: run.runId, workflowName: run.workflowName, input: run.input }, entries: run.journal }));
}

describe("createTestEnvironment", () => {
  test("a workflow that sleeps 30 days and waits for an event completes in well under a second", async () => {
    const started = performance.now();
    const env = createTestEnvironment({ workflows: [trial], startTime: new Date("2026-01-01T00:00:00Z") });
    const run = await env.start(trial, { user: "ada" });
    assert.equal(run.status, "waiting");
    assert.deepEqual(run.waits.map((w) => w.name), ["trial-period"]);
    await env.advance("30d");
    assert.equal(run.status, "waiting");
    assert.deepEqual(run.waits.map((w) => w.name), ["upgrade"]);
    await env.sendEvent({ eventType: "user.upgraded", correlationId: "ada", payload: "pro" });
    assert.deepEqual(await env.result(run), { plan: "pro" });
    assert.deepEqual(run.journal.map((e) => e.kind), ["step_completed", "timer_started", "timer_fired", "event_wait_started", "event_received", "run_completed"]);
    assert.ok(performance.now() - started < 1000, `took ${performance.now() - started} ms`);
  });

  test("result() skips time to each next deadline (the 7-day timeout here), and ctx.now() reads the virtual clock", async () => {
    const env = createTestEnvironment({ workflows: [trial], startTime: new Date("2026-01-01T00:00:00Z") });
    const run = await env.start(trial, { user: "bob" });
    assert.deepEqual(await env.result(run), { plan: "free", endedAt: "2026-02-07T00:00:00.000Z" });
  });

  test("agent turns are answered by the test; a run waiting on nothing the clock can move says so", async () => {
    const summarize = defineWorkflow({
      name: "summarize",
      async handler(_input: Record<string, never>, ctx) {
        return ctx.runAgent("summary", { text: "summarize the week" });
      },
    });
    const env = createTestEnvironment({ workflows: [summarize] });
    const run = await env.start(summarize);
    await assert.rejects(env.result(run), /waits on agent summary\/result and no timer can wake it/);
    assert.deepEqual(env.pendingTurns().map((turn) => [turn.name, turn.text]), [["summary", "summarize the week"]]);
    await env.completeTurn("summary", { text: "quiet week" });
    assert.deepEqual(await env.result(run), { text: "quiet week" });
  });

  test("child workflows run in the same environment", async () => {
    const child = defineWorkflow({ name: "child", handler: async (input: { n: number }, ctx) => ctx.step("double", () => input.n * 2) });
    const parent = defineWorkflow({ name: "parent", handler: async (_input: Record<string, never>, ctx) => ctx.runWorkflow("kid", "child", { n: 21 }) });
    const env = createTestEnvironment({ workflows: [parent, child] });
    assert.equal(await env.result(await env.start(parent)), 42);
  });

  test("replay: an exported history checks against changed code without running a step", async () => {
    const env = createTestEnvironment({ workflows: [v1] });
    const run = await env.start(v1, { order: "o-1" });
    const waiting = exported(run);
    await env.sendEvent({ eventType: "order.paid", correlationId: "o-1", payload: { ok: true } });
    await env.result(run);
    const completed = exported(run);

    assert.deepEqual(await env.replay(waiting, v1), { ok: true, replayed: 2 });
    assert.deepEqual(await env.replay(completed, v1), { ok: true, replayed: 3 });
    // The patched version keeps old journals on the old branch.
    assert.equal((await env.replay(waiting, patched)).ok, true);
    assert.equal((await env.replay(completed, patched)).ok, true);
    const diverged = await env.replay(waiting, unpatched);
    assert.equal(diverged.ok, false);
    assert.match(diverged.ok ? "" : diverged.error.message, /records "paid" \(event_wait_started\) next, .*it started "fee" \(step\) instead/);
  });
});

describe("createTestEnvironment({ alwaysReplay: true })", () => {
  /** Picks a step name outside any step: different on every replay, and it ends in one activation. */
  const randomName = defineWorkflow({
    name: "random_name",
    async handler(_input: Record<string, never>, ctx) {
      const id = Math.random().toString(36).slice(2);
      await ctx.step(`charge-${id}`, () => 1);
      await ctx.step("receipt", () => 2);
      return "done";
    },
  });
  /** Names are fine, but the output is computed outside the journal. */
  const randomOutput = defineWorkflow({
    name: "random_output",
    async handler(_input: Record<string, never>, ctx) {
      await ctx.step("only", () => 1);
      return { lucky: Math.random() };
    },
  });

  test("a step name that changes on every replay pauses the run with a DeterminismError naming the entry", async () => {
    // Without the mode the run completes: its one activation never replays, so the bug stays hidden.
    const plain = createTestEnvironment({ workflows: [randomName] });
    assert.equal(await plain.result(await plain.start(randomName)), "done");

    const env = createTestEnvironment({ workflows: [randomName], alwaysReplay: true });
    const run = await env.start(randomName);
    assert.equal(run.status, "paused");
    assert.equal(run.output, undefined);
    assert.equal(run.error?.name, "DeterminismError");
    assert.match(run.error?.message ?? "", /^always-replay: replaying 1 of 3 journal entries \(step_completed:charge-\w+\) hit a determinism error/);
    assert.match(run.error?.message ?? "", /records "charge-\w+" \(step_completed\) next, but workflow "random_name" did not start that operation/);
    await assert.rejects(env.result(run), /run test-run-1 paused: DeterminismError: always-replay/);
  });

  test("an output computed outside the journal is caught by the full replay ending differently", async () => {
    const env = createTestEnvironment({ workflows: [randomOutput], alwaysReplay: true });
    const run = await env.start(randomOutput);
    assert.equal(run.status, "paused");
    assert.match(run.error?.message ?? "", /^always-replay: replaying 2 of 2 journal entries .* ended completed with \{"lucky":[\d.e-]+\}, the activation completed with \{"lucky":/);
  });

  test("deterministic workflows pass: timers, events, ctx.now/random/uuid, agent turns, children, patches", async () => {
    const child = defineWorkflow({ name: "child", handler: async (input: { n: number }, ctx) => ctx.step("double", () => input.n * 2) });
    let receiptAttempts = 0;
    const everything = defineWorkflow({
      name: "everything",
      async handler(input: { user: string }, ctx) {
        const fresh = ctx.patched("fresh");
        const id = ctx.uuid();
        const lucky = ctx.random();
        await ctx.step("welcome", () => `welcome ${input.user}`);
        await ctx.sleep("trial-period", "30d");
        const [plan, doubled] = await Promise.all([
          ctx.waitForEvent("upgrade", "user.upgraded", input.user, { timeout: "7d" }),
          ctx.runWorkflow("kid", "child", { n: 21 }),
        ]);
        const summary = await ctx.runAgent("summary", { text: `summarize ${input.user}` });
        // Fails once, then succeeds after its backoff: the retry's entries replay too.
        const receipt = await ctx.step("receipt", () => (++receiptAttempts === 1 ? Promise.reject(new Error("mail server down")) : "sent"), { retry: { initialInterval: "1m" } });
        return { fresh, id, lucky, plan, doubled, summary, receipt, at: ctx.now().toISOString() };
      },
    });
    const env = createTestEnvironment({ workflows: [everything, child], alwaysReplay: true, startTime: new Date("2026-01-01T00:00:00Z") });
    const run = await env.start(everything, { user: "ada" });
    await env.advance("30d");
    await env.sendEvent({ eventType: "user.upgraded", correlationId: "ada", payload: "pro" });
    await env.completeTurn("summary", { text: "a good month" });
    const output = await env.result<{ fresh: boolean; id: string; lucky: number; plan: string; doubled: number; summary: unknown; receipt: string; at: string }>(run);
    assert.equal(run.error, undefined);
    assert.deepEqual(
      { ...output, id: typeof output.id, lucky: typeof output.lucky },
      { fresh: true, id: "string", lucky: "number", plan: "pro", doubled: 42, summary: { text: "a good month" }, receipt: "sent", at: "2026-01-31T00:01:00.000Z" },
    );
    assert.equal(receiptAttempts, 2, "replays never run a step again");
  });
});
