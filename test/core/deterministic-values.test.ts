// ctx.now(), ctx.random(), ctx.uuid() and ctx.patched / ctx.deprecatePatch in the pure core: recorded values
// come back on replay, they ride on the next write (no append of their own before it), and patches branch
// old journals onto the old path.
import assert from "node:assert/strict";
import { describe, test } from "vitest";
import type { Handler } from "../../server/core/activation.js";
import type { JournalEntry, NewEntry } from "../../server/core/journal.js";
import type { WorkflowContext } from "../../sdk/workflow.js";
import { executeActivation } from "../support/execute.js";
import { memoryHost } from "../support/memory-host.js";

const identity = { runId: "run-1", workflowName: "wf", input: {}, createdAt: new Date(Date.now() - 60_000) };

function activate(handler: (input: unknown, ctx: WorkflowContext) => unknown, journal: JournalEntry[] = [], options = {}) {
  const host = memoryHost(journal);
  // Appends made in one turn of the event loop: the host's group commit writes them in one statement.
  const turns: string[][] = [];
  let current: string[] | undefined;
  const append = host.append.bind(host);
  host.append = (entry: NewEntry) => {
    if (!current) {
      current = [];
      turns.push(current);
      setImmediate(() => (current = undefined));
    }
    current.push(`${entry.kind}:${entry.name}`);
    return append(entry);
  };
  return { host, turns, outcome: executeActivation(identity, journal, host, handler as Handler, options) };
}

describe("ctx.now / ctx.random / ctx.uuid", () => {
  const workflow = async (_: unknown, ctx: WorkflowContext) => {
    const at = ctx.now();
    const r = ctx.random();
    const id = ctx.uuid();
    await ctx.step("use", () => ({ at: at.getTime(), r, id }));
    return { at: at.toISOString(), r, id, again: ctx.uuid() };
  };

  test("are journaled with the next write, in the same turn, and replay returns the recorded values", async () => {
    const first = activate(workflow);
    const outcome = await first.outcome;
    assert.equal(outcome.kind, "completed");
    assert.deepEqual(
      first.host.journal.map((e) => `${e.sequence}:${e.kind}:${e.name}`),
      ["1:now_recorded:$now#1", "2:random_recorded:$random#1", "3:uuid_recorded:$uuid#1", "4:step_completed:use"],
    );
    // The three values went out in the same turn as the step's entry: no write of their own.
    assert.deepEqual(first.turns[0], ["now_recorded:$now#1", "random_recorded:$random#1", "uuid_recorded:$uuid#1", "step_completed:use"]);
    // The uuid drawn after the last write is handed to the host's final write.
    assert.equal(outcome.kind === "completed" && outcome.deferred?.map((e) => `${e.kind}:${e.name}`).join(), "uuid_recorded:$uuid#2");
    const output = outcome.kind === "completed" ? (outcome.output as { r: number; id: string; at: string; again: string }) : undefined;
    assert.ok(output && output.r >= 0 && output.r < 1);
    assert.match(output?.id ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    // Replay of the recorded journal plus the final deferred value: the same values, nothing written.
    const deferred = outcome.kind === "completed" ? (outcome.deferred ?? []) : [];
    const journal = [...first.host.journal, ...deferred.map((e, i) => ({ ...e, sequence: 5 + i, createdAt: new Date() }))];
    const replay = activate(workflow, journal);
    const replayed = await replay.outcome;
    assert.deepEqual(replayed.kind === "completed" && replayed.output, output);
    assert.equal(replay.host.journal.length, journal.length);
    assert.equal(replayed.kind === "completed" && replayed.deferred, undefined);
  });

  test("a recorded value the code no longer asks for is a divergence, with the recorded entry named", async () => {
    const first = activate(workflow);
    await first.outcome;
    const changed = activate(async (_: unknown, ctx: WorkflowContext) => ctx.step("use", () => 1), [...first.host.journal], { alwaysReplay: false });
    const outcome = await changed.outcome;
    assert.equal(outcome.kind, "diverged");
    assert.match(outcome.kind === "diverged" ? outcome.failure.message : "", /records "\$now#1" \(now_recorded\) next/);
  });

  test("values drawn before a wait that writes nothing of its own are written before the run parks", async () => {
    const first = activate(async (_: unknown, ctx: WorkflowContext) => ctx.waitForWorkflow(`child-${ctx.uuid()}`, "other-run"));
    const outcome = await first.outcome;
    assert.equal(outcome.kind, "suspended");
    assert.deepEqual(first.host.journal.map((e) => e.kind), ["uuid_recorded"]);
  });
});

describe("ctx.patched / ctx.deprecatePatch", () => {
  const v1 = async (_: unknown, ctx: WorkflowContext) => {
    await ctx.step("charge", () => 10);
    const paid = await ctx.waitForEvent("paid", "order.paid", "o-1");
    return { paid, fee: 0 };
  };
  const v2 = async (_: unknown, ctx: WorkflowContext) => {
    const newFee = ctx.patched("new-fee");
    await ctx.step("charge", () => 10);
    const paid = await ctx.waitForEvent("paid", "order.paid", "o-1");
    const fee = newFee ? await ctx.step("fee", () => 2) : 0;
    return { paid, fee };
  };
  const v3 = async (_: unknown, ctx: WorkflowContext) => {
    ctx.deprecatePatch("new-fee");
    await ctx.step("charge", () => 10);
    const paid = await ctx.waitForEvent("paid", "order.paid", "o-1");
    return { paid, fee: await ctx.step("fee", () => 2) };
  };
  const paidEvent = { id: "e-1", eventType: "order.paid", correlationId: "o-1", payload: { ok: true }, createdAt: new Date() };

  test("a run recorded on v1 takes the old branch under v2; a new run journals the marker and takes the new one", async () => {
    const old = activate(v1);
    assert.equal((await old.outcome).kind, "suspended");
    const oldJournal = [...old.host.journal];

    const resumed = memoryHost(oldJournal, [paidEvent]);
    const oldOnV2 = await executeActivation(identity, [...oldJournal], resumed, v2 as Handler);
    assert.deepEqual(oldOnV2, { kind: "completed", output: { paid: { ok: true }, fee: 0 } });
    assert.ok(!resumed.journal.some((e) => e.kind === "patch_marked" || e.name === "fee"));

    const fresh = activate(v2);
    assert.equal((await fresh.outcome).kind, "suspended");
    assert.deepEqual(fresh.host.journal.map((e) => `${e.kind}:${e.name}`), ["patch_marked:$patch:new-fee", "step_completed:charge", "event_wait_started:paid"]);
    assert.deepEqual(fresh.turns[0], ["patch_marked:$patch:new-fee", "step_completed:charge"]);
    const freshJournal = [...fresh.host.journal];
    const newOnV2 = await executeActivation(identity, [...freshJournal], memoryHost(freshJournal, [paidEvent]), v2 as Handler);
    assert.deepEqual(newOnV2, { kind: "completed", output: { paid: { ok: true }, fee: 2 } });

    // v3 deprecates the patch: it replays journals with the marker, and new runs journal none.
    const withMarker = await executeActivation(identity, [...freshJournal], memoryHost([...freshJournal], [paidEvent]), v3 as Handler);
    assert.deepEqual(withMarker, { kind: "completed", output: { paid: { ok: true }, fee: 2 } });
    const newOnV3 = activate(v3);
    await newOnV3.outcome;
    assert.deepEqual(newOnV3.host.journal.map((e) => e.kind), ["step_completed", "event_wait_started"]);
  });

  test("without the patch, v2's change diverges on a v1 journal", async () => {
    const old = activate(v1);
    await old.outcome;
    const oldJournal = [...old.host.journal];
    const unpatched = async (_: unknown, ctx: WorkflowContext) => {
      await ctx.step("fee-first", () => 2);
      await ctx.step("charge", () => 10);
      return ctx.waitForEvent("paid", "order.paid", "o-1");
    };
    const outcome = await executeActivation(identity, [...oldJournal], memoryHost(oldJournal, [paidEvent]), unpatched as Handler, { alwaysReplay: false });
    assert.equal(outcome.kind, "diverged");
  });
});

describe("option checking and pending operations", () => {
  const cases: [string, (ctx: WorkflowContext) => Promise<unknown>, RegExp][] = [
    ["step", (ctx) => ctx.step("pay", () => 1, { maxAttempt: 3 } as never), /^ctx\.step\("pay"\): unknown option maxAttempt in step options; known: retry, timeout$/],
    [
      "retry policy",
      (ctx) => ctx.step("pay", () => 1, { retry: { intialInterval: "1s" } as never }),
      /unknown option intialInterval in retry policy; known: maxAttempts, initialInterval, backoffCoefficient, maxInterval, jitter, nonRetryableErrors$/,
    ],
    ["wait", (ctx) => ctx.waitForEvent("w", "t", "k", { timout: "1s" } as never), /ctx\.waitForEvent\("w"\): unknown option timout in waitForEvent options; known: timeout, lookback/],
    ["child", (ctx) => ctx.startWorkflow("c", "child_wf", {}, { detach: true } as never), /ctx\.startWorkflow\("c"\): unknown option detach in startWorkflow options; known: detached/],
    ["agent", (ctx) => ctx.runAgent("a", { text: "hi" }, { timeOut: "1s" } as never), /ctx\.runAgent\("a"\): unknown option timeOut in runAgent options; known: timeout/],
  ];
  for (const [what, call, message] of cases) {
    test(`an unknown key in ${what} options fails the run with InvalidOperationError naming it and the known ones`, async () => {
      const { host, outcome } = activate(async (_: unknown, ctx: WorkflowContext) => call(ctx));
      const result = await outcome;
      assert.equal(result.kind, "failed");
      assert.equal(result.kind === "failed" && result.failure.name, "InvalidOperationError");
      assert.match(result.kind === "failed" ? result.failure.message : "", message);
      // Nothing ran or was journaled for the misconfigured operation.
      assert.deepEqual(host.journal, []);
      assert.equal(host.childRequests.length + host.turns.size, 0);
    });
  }

  test("defineWorkflow refuses an unknown key", async () => {
    const { defineWorkflow } = await import("../../sdk/workflow.js");
    assert.throws(
      () => defineWorkflow({ name: "typo", timeOut: "1h", handler: () => 1 } as never),
      (error: Error) => error.name === "InvalidOperationError" && /unknown option timeOut in defineWorkflow options of "typo"; known: name, input, timeout, handler/.test(error.message),
    );
  });

  test("operations still pending when the handler returns are logged at warn level with their names", async () => {
    const { host, outcome } = activate(async (_: unknown, ctx: WorkflowContext) => {
      void ctx.sleep("forgotten-nap", "1h");
      void ctx.waitForEvent("forgotten-wait", "t", "k");
      await ctx.step("awaited", () => 1);
      return "done";
    });
    assert.equal((await outcome).kind, "completed");
    const warnings = host.logs.filter((line) => line.startsWith("warn:"));
    assert.deepEqual(warnings, ["warn:workflow returned with operations still pending: forgotten-nap, forgotten-wait (a missing await?)"]);
  });
});
