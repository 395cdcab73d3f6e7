// The pure engine core, no database: replay matching, determinism errors,
// JSON discipline and host failures, against an in-memory journal.
import assert from "node:assert/strict";
import { describe, test } from "vitest";
import { childRunId, type Handler } from "../../server/core/activation.js";
import { LeaseLostError } from "../../server/core/errors.js";
import { entryFields, type JournalEntry } from "../../server/core/journal.js";
import { sameJson, toJsonValue } from "../../server/core/json.js";
import { ChildWorkflowFailedError, NonRetryableError, type WorkflowContext } from "../../sdk/workflow.js";
import { executeActivation } from "../support/execute.js";
import { type MemoryHost, memoryHost } from "../support/memory-host.js";

const identity = { runId: "run-1", workflowName: "wf", input: { n: 2 }, createdAt: new Date(Date.now() - 60_000) };

function run(handler: (input: { n: number }, ctx: WorkflowContext) => unknown, journal: JournalEntry[] = []) {
  const host = memoryHost(journal);
  const outcome = executeActivation(identity, journal, host, handler as Handler);
  return { host, outcome };
}

describe("replay", () => {
  test("a journaled step is not executed again and returns its recorded value", async () => {
    const calls: string[] = [];
    const workflow = async (input: { n: number }, ctx: WorkflowContext) => {
      const a = await ctx.step("a", () => (calls.push("a"), { v: input.n }));
      const b = await ctx.step("b", () => (calls.push("b"), a.v * 10));
      return { a, b };
    };
    const first = run(workflow);
    assert.deepEqual(await first.outcome, { kind: "completed", output: { a: { v: 2 }, b: 20 } });
    assert.deepEqual(calls, ["a", "b"]);

    // Replay the whole journal minus the run entry: nothing executes, same output.
    const second = run(workflow, [...first.host.journal]);
    assert.deepEqual(await second.outcome, { kind: "completed", output: { a: { v: 2 }, b: 20 } });
    assert.deepEqual(calls, ["a", "b"]);
  });

  test("a crash after some steps resumes with only the missing steps", async () => {
    const calls: string[] = [];
    const workflow = async (_: { n: number }, ctx: WorkflowContext) => {
      for (let i = 0; i < 4; i++) await ctx.step(`s${i}`, () => (calls.push(`s${i}`), i));
      return "done";
    };
    const partial: JournalEntry[] = [
      { sequence: 1, kind: "step_completed", name: "s0", result: 0, attempt: 1, startedAt: new Date(), createdAt: new Date() },
      { sequence: 2, kind: "step_completed", name: "s1", result: 1, attempt: 1, startedAt: new Date(), createdAt: new Date() },
    ];
    const resumed = run(workflow, partial);
    assert.deepEqual(await resumed.outcome, { kind: "completed", output: "done" });
    assert.deepEqual(calls, ["s2", "s3"]);
    assert.deepEqual(resumed.host.journal.map((e) => e.name), ["s0", "s1", "s2", "s3"]);
  });

  test("a recorded step failure is rethrown with its name and message, and can be caught", async () => {
    const workflow = async (_: { n: number }, ctx: WorkflowContext) => {
      try {
        await ctx.step("pay", () => {
          const error = new Error("card declined");
          error.name = "PaymentDeclined";
          throw error;
        });
        return "paid";
      } catch (error) {
        return `${(error as Error).name}: ${(error as Error).message}`;
      }
    };
    const first = run(workflow);
    assert.deepEqual(await first.outcome, { kind: "completed", output: "PaymentDeclined: card declined" });
    assert.equal(first.host.journal[0]?.kind, "step_failed");
    let executed = false;
    const replay = run(async (_i, ctx) => {
      try {
        await ctx.step("pay", () => {
          executed = true;
        });
      } catch (error) {
        return (error as Error).name;
      }
    }, [...first.host.journal]);
    assert.deepEqual(await replay.outcome, { kind: "completed", output: "PaymentDeclined" });
    assert.equal(executed, false);
  });

  test("an uncaught step failure fails the run with the step's error", async () => {
    const { outcome } = run(async (_i, ctx) => ctx.step("boom", () => Promise.reject(new TypeError("bad thing"))));
    const result = await outcome;
    assert.equal(result.kind, "failed");
    assert.equal(result.kind === "failed" && result.failure.name, "TypeError");
    assert.equal(result.kind === "failed" && result.failure.message, "bad thing");
  });

  test("parallel steps run concurrently and replay by name whatever order they finished in", async () => {
    let concurrent = 0;
    let peak = 0;
    // Each step finishes when the test says so: y first, then z, then x.
    const gates = new Map<string, () => void>();
    const gatedStep = (name: string, value: number) => async () => {
      concurrent++;
      peak = Math.max(peak, concurrent);
      await new Promise<void>((resolve) => gates.set(name, resolve));
      concurrent--;
      return value;
    };
    const workflow = async (_: { n: number }, ctx: WorkflowContext) =>
      Promise.all([ctx.step("x", gatedStep("x", 1)), ctx.step("y", gatedStep("y", 2)), ctx.step("z", gatedStep("z", 3))]);
    const first = run(workflow);
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    while (gates.size < 3) await settle();
    for (const name of ["y", "z", "x"]) {
      gates.get(name)?.();
      while (!first.host.journal.some((e) => e.name === name)) await settle();
    }
    assert.deepEqual(await first.outcome, { kind: "completed", output: [1, 2, 3] });
    assert.equal(peak, 3);
    assert.deepEqual(first.host.journal.map((e) => e.name), ["y", "z", "x"]);
    const replay = run(workflow, [...first.host.journal]);
    assert.deepEqual(await replay.outcome, { kind: "completed", output: [1, 2, 3] });
    assert.equal(replay.host.journal.length, 3);
  });

  test("a step returning nothing replays as undefined, and null stays null", async () => {
    const workflow = async (_: { n: number }, ctx: WorkflowContext) => {
      const a = await ctx.step("void", () => undefined);
      const b = await ctx.step("null", () => null);
      return { aIsUndefined: a === undefined, bIsNull: b === null };
    };
    const first = run(workflow);
    const expected = { kind: "completed", output: { aIsUndefined: true, bIsNull: true } };
    assert.deepEqual(await first.outcome, expected);
    assert.equal("result" in (first.host.journal[0] ?? {}), false);
    assert.deepEqual(await run(workflow, [...first.host.journal]).outcome, expected);
  });

  test("ctx.log is silent while replaying and speaks once the run is live again", async () => {
    const workflow = async (_: { n: number }, ctx: WorkflowContext) => {
      ctx.log.info("before a");
      await ctx.step("a", () => 1);
      ctx.log.info("after a");
      await ctx.step("b", () => 2);
      ctx.log.info("after b");
    };
    const first = run(workflow);
    await first.outcome;
    assert.deepEqual(first.host.logs, ["info:before a", "info:after a", "info:after b"]);
    const replay = run(workflow, first.host.journal.slice(0, 1));
    await replay.outcome;
    assert.deepEqual(replay.host.logs, ["info:after a", "info:after b"]);
  });
});

describe("determinism", () => {
  test("reusing a step name fails the run naming the step, even if the handler catches it", async () => {
    const { outcome, host } = run(async (_i, ctx) => {
      await ctx.step("charge", () => 1);
      try {
        await ctx.step("charge", () => 2);
      } catch {
        // swallowing must not hide a determinism error
      }
      return "swallowed";
    });
    const result = await outcome;
    assert.equal(result.kind, "failed");
    if (result.kind !== "failed") return;
    assert.equal(result.failure.name, "DeterminismError");
    assert.match(result.failure.message, /"charge" is used twice/);
    assert.equal(host.journal.length, 1);
  });

  test("a journal entry of another kind under the same name is a determinism error", async () => {
    const journal: JournalEntry[] = [
      { sequence: 1, kind: "timer_started", name: "wait", fireAt: new Date(), attempt: 1, startedAt: new Date(), createdAt: new Date() },
    ];
    const result = await run(async (_i, ctx) => ctx.step("wait", () => 1), journal).outcome;
    // Found while replaying recorded entries: the run pauses (the host's job) instead of failing.
    assert.equal(result.kind, "diverged");
    assert.match(result.kind === "diverged" ? result.failure.message : "", /"wait".*ctx\.step now but the journal recorded it as timer_started/);
  });

  test("an empty operation name is refused", async () => {
    const result = await run(async (_i, ctx) => ctx.step("", () => 1)).outcome;
    assert.equal(result.kind === "failed" && result.failure.name, "DeterminismError");
  });
});

describe("JSON discipline", () => {
  test("a step result that JSON can't carry fails the step with the offending path", async () => {
    const { outcome, host } = run(async (_i, ctx) => ctx.step("when", () => ({ at: new Date(0) })));
    const result = await outcome;
    assert.equal(result.kind, "failed");
    assert.match(result.kind === "failed" ? result.failure.message : "", /step "when" result cannot be stored as JSON: \$\.at is a Date/);
    assert.equal(host.journal[0]?.kind, "step_failed");
  });

  test("toJsonValue names the first bad part of a value", () => {
    assert.throws(() => toJsonValue({ a: [1, Number.NaN] }, "x"), /\$\.a\[1\] is NaN/);
    assert.throws(() => toJsonValue({ m: new Map() }, "x"), /\$\.m is a Map/);
    assert.throws(() => toJsonValue({ f: () => 1 }, "x"), /\$\.f is a function/);
    assert.throws(() => toJsonValue(10n, "x"), /\$ is a bigint/);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.throws(() => toJsonValue(circular, "x"), /circular/);
    assert.deepEqual(toJsonValue({ a: [1, "two", null, { b: true }] }, "x"), { a: [1, "two", null, { b: true }] });
  });

  test("a non-JSON workflow output fails the run", async () => {
    const result = await run(async () => ({ big: 1n })).outcome;
    assert.equal(result.kind, "failed");
    assert.match(result.kind === "failed" ? result.failure.message : "", /return value cannot be stored as JSON: \$\.big is a bigint/);
  });

  test("sameJson ignores key order", () => {
    assert.equal(sameJson({ a: 1, b: [1, { c: 2, d: 3 }] }, { b: [1, { d: 3, c: 2 }], a: 1 }), true);
    assert.equal(sameJson({ a: 1 }, { a: 1, b: 2 }), false);
    assert.equal(sameJson([1, 2], [2, 1]), false);
  });
});

describe("host failures", () => {
  test("a refused journal write aborts the activation and records nothing more", async () => {
    const journal: JournalEntry[] = [];
    const host = memoryHost(journal);
    host.failAppendsWith = new LeaseLostError("run-1");
    let secondRan = false;
    const outcome = await executeActivation(identity, journal, host, (async (_i: unknown, ctx: WorkflowContext) => {
      try {
        await ctx.step("a", () => 1);
      } catch {
        // even if the handler swallows it, the activation is over
      }
      await ctx.step("b", () => {
        secondRan = true;
      });
      return "unreachable";
    }) as Handler);
    assert.equal(outcome.kind, "aborted");
    assert.ok(outcome.kind === "aborted" && outcome.reason instanceof LeaseLostError);
    assert.equal(secondRan, false);
    assert.equal(journal.length, 0);
  });

  test("a holder that may have lost the run starts no further step (it slept past its lease)", async () => {
    // Found by the chaos run (--pauses): a server SIGSTOPped past its lease woke up, read the commit of step
    // s1, and ran step s2, which the new holder had already run and journaled meanwhile.
    const journal: JournalEntry[] = [];
    const host = memoryHost(journal);
    const ran: string[] = [];
    let lost: Error | undefined;
    const guarded = Object.assign(host, { leaseLost: () => lost });
    const outcome = await executeActivation(identity, journal, guarded, (async (_i: unknown, ctx: WorkflowContext) => {
      await ctx.step("s1", () => {
        ran.push("s1");
        lost = new LeaseLostError("run-1"); // the pause: by the time s1's commit is seen, the lease may be gone
      });
      await ctx.step("s2", () => ran.push("s2"));
      return "unreachable";
    }) as Handler);
    assert.equal(outcome.kind, "aborted");
    assert.ok(outcome.kind === "aborted" && outcome.reason instanceof LeaseLostError);
    assert.deepEqual(ran, ["s1"], "s2 never started");
    assert.deepEqual(journal.map((e) => e.name), ["s1"]);
  });
});

describe("durable waits", () => {
  /** Runs `handler` against `host` as one activation. */
  const activate = (host: MemoryHost, handler: (input: { n: number }, ctx: WorkflowContext) => unknown) =>
    executeActivation(identity, [...host.journal], host, handler as Handler);
  const later = (host: MemoryHost, ms: number) => (host.clock = new Date(host.clock.getTime() + ms));

  test("sleep suspends on a timer, never fires early, and fires once due", async () => {
    const host = memoryHost();
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => {
      await ctx.sleep("settle", "30s");
      return ctx.step("after", () => "woke");
    };
    const first = await activate(host, workflow);
    assert.equal(first.kind, "suspended");
    const fireAt = host.clock.getTime() + 30_000;
    assert.deepEqual(host.suspendedOn, [{ kind: "timer", name: "settle", fireAt: new Date(fireAt) }]);
    later(host, 29_999);
    assert.equal((await activate(host, workflow)).kind, "suspended", "one millisecond early is still early");
    later(host, 1);
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: "woke" });
    assert.deepEqual(host.journal.map((e) => e.kind), ["timer_started", "timer_fired", "step_completed"]);
  });

  /** A host on the real clock that waits out clock waits due within `holdMs` (a server's host does, executor.ts). */
  const holding = (holdMs: number): MemoryHost => {
    const host = memoryHost();
    host.now = () => new Date();
    (host as { holdClockWaitsMs?: number }).holdClockWaitsMs = holdMs;
    return host;
  };

  test("a timer due within the host's hold is waited out in place, never fired early; a later one still parks", async () => {
    const host = holding(500);
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => {
      await ctx.sleep("blink", 40);
      return ctx.step("after", () => "woke");
    };
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: "woke" });
    assert.equal(host.suspendedOn, undefined, "never parked");
    assert.deepEqual(host.journal.map((e) => e.kind), ["timer_started", "timer_fired", "step_completed"]);
    const [started, fired] = host.journal;
    assert.ok(started?.kind === "timer_started" && fired?.kind === "timer_fired");
    assert.ok(fired.createdAt.getTime() >= started.fireAt.getTime(), `fired at ${fired.createdAt.toISOString()}, due ${started.fireAt.toISOString()}`);

    const later = holding(500);
    assert.equal((await activate(later, async (_i, ctx) => ctx.sleep("nap", "2s"))).kind, "suspended");
    assert.deepEqual(later.suspendedOn?.map((w) => w.kind), ["timer"]);
  });

  test("only waits on the clock alone are held: a near event timeout parks, and an abort ends a hold at once", async () => {
    const host = holding(500);
    const outcome = await activate(host, async (_i, ctx) => ctx.waitForEvent("reply", "answer", "q-1", { timeout: "40ms" }));
    assert.equal(outcome.kind, "suspended", "an event may come first: the run parks where a sender can wake it");

    const aborted = holding(5_000);
    const dueAt = Date.now() + 3_000;
    setTimeout(() => aborted.controller.abort(new Error("cancelled")), 30);
    const ended = await activate(aborted, async (_i, ctx) => ctx.sleep("nap", "3s"));
    assert.equal(ended.kind, "aborted");
    assert.ok(Date.now() < dueAt, "the hold ended with the abort, not at the timer");
    assert.deepEqual(aborted.journal.map((e) => e.kind), ["timer_started"]);
  });

  test("an event stored before the wait starts is delivered; each event is consumed once", async () => {
    const host = memoryHost();
    host.events.push({ id: "e1", eventType: "approval", correlationId: "order-7", payload: { by: "ann" }, createdAt: new Date() });
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => {
      const first = await ctx.waitForEvent("first", "approval", "order-7");
      const second = await ctx.waitForEvent("second", "approval", "order-7");
      return [first, second];
    };
    assert.equal((await activate(host, workflow)).kind, "suspended");
    assert.equal(host.suspendedOn?.[0]?.name, "second");
    host.events.push({ id: "e2", eventType: "approval", correlationId: "order-7", payload: { by: "bob" }, createdAt: new Date() });
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: [{ by: "ann" }, { by: "bob" }] });
    assert.deepEqual(host.journal.filter((e) => e.kind === "event_received").map((e) => e.eventId), ["e1", "e2"]);
  });

  test("lookback: by default events from before the run are not matched; 'all' matches them", async () => {
    const old = { id: "old", eventType: "t", correlationId: "k", payload: 1, createdAt: new Date(Date.now() - 3_600_000) };
    const byDefault = memoryHost([], [old]);
    assert.equal((await activate(byDefault, async (_i, ctx) => ctx.waitForEvent("w", "t", "k"))).kind, "suspended");
    const withAll = memoryHost([], [old]);
    assert.deepEqual(await activate(withAll, async (_i, ctx) => ctx.waitForEvent("w", "t", "k", { lookback: "all" })), { kind: "completed", output: 1 });
    const withDuration = memoryHost([], [old]);
    assert.deepEqual(await activate(withDuration, async (_i, ctx) => ctx.waitForEvent("w", "t", "k", { lookback: "2h" })), { kind: "completed", output: 1 });
  });

  test("a wait with a timeout resolves null once the timeout passes", async () => {
    const host = memoryHost();
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => ({ got: await ctx.waitForEvent("reply", "reply", "x", { timeout: "5m" }) });
    const first = await activate(host, workflow);
    assert.equal(first.kind, "suspended");
    assert.equal(first.kind === "suspended" && first.waits[0]?.kind === "event" && first.waits[0].timeoutAt?.getTime(), host.clock.getTime() + 300_000);
    later(host, 300_000);
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: { got: null } });
    assert.equal(host.journal.at(-1)?.kind, "event_wait_timed_out");
  });

  test("Promise.race of an event and a deadline replays the same winner even after the event arrives", async () => {
    const host = memoryHost();
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => {
      const winner = await Promise.race([
        ctx.waitForEvent("approval", "approval", "doc-1").then((payload) => ({ approved: payload })),
        ctx.sleep("deadline", "1h").then(() => ({ approved: "timed out" })),
      ]);
      await ctx.sleep("cool-down", "1m");
      return winner;
    };
    assert.equal((await activate(host, workflow)).kind, "suspended");
    later(host, 3_600_000);
    // The deadline wins; the run parks on the cool-down (and the abandoned event wait).
    assert.equal((await activate(host, workflow)).kind, "suspended");
    assert.ok(host.journal.some((e) => e.kind === "timer_fired" && e.name === "deadline"));
    // The event arrives late: replay must still see the deadline win.
    host.events.push({ id: "late", eventType: "approval", correlationId: "doc-1", payload: "yes", createdAt: new Date() });
    later(host, 60_000);
    const outcome = await activate(host, workflow);
    assert.deepEqual(outcome, { kind: "completed", output: { approved: "timed out" } });
  });

  test("Promise.all over events resumes only when every event has arrived", async () => {
    const host = memoryHost();
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) =>
      Promise.all(["a", "b", "c"].map((k) => ctx.waitForEvent(`wait-${k}`, "done", k)));
    assert.equal((await activate(host, workflow)).kind, "suspended");
    host.events.push({ id: "1", eventType: "done", correlationId: "b", payload: "B", createdAt: new Date() });
    assert.equal((await activate(host, workflow)).kind, "suspended");
    assert.deepEqual(host.suspendedOn?.map((w) => w.name), ["wait-a", "wait-c"]);
    host.events.push({ id: "2", eventType: "done", correlationId: "a", payload: "A", createdAt: new Date() });
    host.events.push({ id: "3", eventType: "done", correlationId: "c", payload: "C", createdAt: new Date() });
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: ["A", "B", "C"] });
  });

  test("bad durations and event arguments fail the run naming the operation", async () => {
    const cases: [string, (ctx: WorkflowContext) => Promise<unknown>, RegExp][] = [
      ["negative", (ctx) => ctx.sleep("nap", -5), /ctx\.sleep\("nap"\): -5 is negative/],
      ["unparseable", (ctx) => ctx.sleep("nap", "soon"), /ctx\.sleep\("nap"\): "soon" is not a duration/],
      ["bad instant", (ctx) => ctx.sleepUntil("until", "next tuesday"), /ctx\.sleep\("until"\): "next tuesday" is not a point in time/],
      ["bad timeout", (ctx) => ctx.waitForEvent("w", "t", "k", { timeout: "-1s" }), /ctx\.waitForEvent\("w"\): "-1s" is not a duration/],
      ["empty type", (ctx) => ctx.waitForEvent("w", "", "k"), /ctx\.waitForEvent\("w"\): eventType must be a non-empty string/],
    ];
    for (const [label, call, message] of cases) {
      const outcome = await activate(memoryHost(), async (_i, ctx) => {
        try {
          await call(ctx);
        } catch {
          // catching does not save the run
        }
        return "ran on";
      });
      assert.equal(outcome.kind, "failed", label);
      assert.match(outcome.kind === "failed" ? outcome.failure.message : "", message, label);
    }
  });

  test("sleepUntil a past instant fires at once; replay keeps the recorded fire time", async () => {
    const host = memoryHost();
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => {
      await ctx.sleepUntil("past", new Date(0));
      return "done";
    };
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: "done" });
    assert.deepEqual(host.journal.map(entryFields).map((e) => [e.kind, e.fireAt?.getTime()]), [["timer_started", 0], ["timer_fired", 0]]);
  });

  test("a journal entry the code no longer produces is a determinism error", async () => {
    const host = memoryHost();
    await activate(host, async (_i, ctx) => {
      await ctx.step("old", () => 1);
      await ctx.sleep("nap", "1h");
    });
    const outcome = await activate(host, async (_i, ctx) => ctx.sleep("nap", "1h"));
    assert.equal(outcome.kind, "diverged");
    assert.match(outcome.kind === "diverged" ? outcome.failure.message : "", /records "old" \(step_completed\) next, .* \(it started "nap" \(timer\) instead\); usually the workflow code changed/);
  });
});

describe("step retries and timeouts", () => {
  const activate = (host: MemoryHost, handler: (input: { n: number }, ctx: WorkflowContext) => unknown) =>
    executeActivation(identity, [...host.journal], host, handler as Handler);

  test("a step failing twice then succeeding completes with every attempt recorded", async () => {
    const host = memoryHost();
    let calls = 0;
    const outcome = await activate(host, async (_i, ctx) =>
      ctx.step(
        "flaky",
        ({ attempt }) => {
          calls++;
          if (attempt < 3) throw new Error(`flake ${attempt}`);
          return { attempt };
        },
        { retry: { maxAttempts: 5, initialInterval: 0 } },
      ),
    );
    assert.deepEqual(outcome, { kind: "completed", output: { attempt: 3 } });
    assert.equal(calls, 3);
    assert.deepEqual(
      host.journal.map(entryFields).map((e) => [e.kind, e.attempt, e.error?.message]),
      [["step_attempt_failed", 1, "flake 1"], ["step_attempt_failed", 2, "flake 2"], ["step_completed", 3, undefined]],
    );
  });

  test("a non-retryable error fails at once; exhausted attempts fail with the last error", async () => {
    const nonRetryable = memoryHost();
    const first = await activate(nonRetryable, async (_i, ctx) =>
      ctx.step("charge", () => Promise.reject(new NonRetryableError("card stolen")), { retry: { maxAttempts: 5, initialInterval: 0 } }),
    );
    assert.equal(first.kind === "failed" && first.failure.message, "card stolen");
    assert.deepEqual(nonRetryable.journal.map((e) => e.kind), ["step_failed"]);

    const byName = memoryHost();
    const second = await activate(byName, async (_i, ctx) =>
      ctx.step("charge", () => {
        const error = new Error("declined");
        error.name = "CardDeclined";
        throw error;
      }, { retry: { maxAttempts: 5, initialInterval: 0, nonRetryableErrors: ["CardDeclined"] } }),
    );
    assert.equal(second.kind, "failed");
    assert.equal(byName.journal.length, 1);

    const exhausted = memoryHost();
    const third = await activate(exhausted, async (_i, ctx) =>
      ctx.step("always", ({ attempt }) => Promise.reject(new Error(`no ${attempt}`)), { retry: { maxAttempts: 2, initialInterval: 0 } }),
    );
    assert.equal(third.kind === "failed" && third.failure.message, "no 2");
    assert.deepEqual(exhausted.journal.map((e) => e.kind), ["step_attempt_failed", "step_failed"]);
  });

  test("a backoff is durable: the run suspends on it and the next attempt runs once it has passed", async () => {
    const host = memoryHost();
    const attempts: number[] = [];
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) =>
      ctx.step("sync", ({ attempt }) => {
        attempts.push(attempt);
        if (attempt === 1) throw new Error("down");
        return "synced";
      }, { retry: { initialInterval: "10m", maxInterval: "1h" } });
    const first = await activate(host, workflow);
    assert.equal(first.kind, "suspended");
    assert.deepEqual(first.kind === "suspended" && first.waits.map((w) => [w.kind, w.name]), [["retry", "sync"]]);
    assert.equal((host.journal[0] && entryFields(host.journal[0]).fireAt)?.getTime(), host.clock.getTime() + 600_000);
    host.clock = new Date(host.clock.getTime() + 599_999);
    assert.equal((await activate(host, workflow)).kind, "suspended");
    assert.deepEqual(attempts, [1]);
    host.clock = new Date(host.clock.getTime() + 1);
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: "synced" });
    assert.deepEqual(attempts, [1, 2]);
  });

  test("a step timeout aborts the attempt's signal and fails the attempt even if the function ignores it", async () => {
    const host = memoryHost();
    let aborted: unknown;
    const outcome = await activate(host, async (_i, ctx) =>
      ctx.step("slow", ({ signal }) => {
        signal.addEventListener("abort", () => (aborted = signal.reason));
        return new Promise(() => undefined);
      }, { timeout: "50ms" }),
    );
    assert.equal(outcome.kind, "failed");
    assert.equal(outcome.kind === "failed" && outcome.failure.name, "StepTimeoutError");
    assert.match(outcome.kind === "failed" ? outcome.failure.message : "", /step "slow" attempt 1 timed out after 50 ms/);
    assert.ok(aborted instanceof Error);
  });

  test("a step that burns CPU past its timeout without yielding and then returns is a timed-out failure, not a result", async () => {
    const host = memoryHost();
    const outcome = await activate(host, async (_i, ctx) =>
      ctx.step("burn", () => {
        const until = Date.now() + 120;
        while (Date.now() < until) {
          // The attempt's timer cannot fire while this runs.
        }
        return "burnt";
      }, { timeout: "30ms", retry: { maxAttempts: 1 } }),
    );
    assert.equal(outcome.kind, "failed");
    assert.equal(outcome.kind === "failed" && outcome.failure.name, "StepTimeoutError");
    assert.match(outcome.kind === "failed" ? outcome.failure.message : "", /step "burn" attempt 1 timed out after 30 ms/);
  });

  test("invalid retry options fail the run naming the step", async () => {
    const outcome = await activate(memoryHost(), async (_i, ctx) => ctx.step("x", () => 1, { retry: { maxAttempts: 0 } }));
    assert.match(outcome.kind === "failed" ? outcome.failure.message : "", /ctx\.step\("x"\): retry\.maxAttempts must be an integer of at least 1/);
  });
});

describe("child workflows", () => {
  const activate = (host: MemoryHost, handler: (input: { n: number }, ctx: WorkflowContext) => unknown) =>
    executeActivation(identity, [...host.journal], host, handler as Handler);

  test("a child is created exactly once even if the parent crashes before journaling it", async () => {
    const host = memoryHost();
    host.failAppendsWith = new LeaseLostError("run-1");
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => ctx.startWorkflow("kid", "child_wf", { x: 1 });
    assert.equal((await activate(host, workflow)).kind, "aborted");
    assert.equal(host.children.size, 1, "the child exists though the parent never journaled it");
    host.failAppendsWith = undefined;
    const outcome = await activate(host, workflow);
    assert.equal(outcome.kind, "completed");
    assert.equal(host.childRequests.length, 2, "the replay asked again...");
    assert.equal(host.children.size, 1, "...and found the same child");
    assert.equal(outcome.kind === "completed" && outcome.output, [...host.children.keys()][0]);
    assert.equal(childRunId("run-1", "kid"), [...host.children.keys()][0]);
    assert.notEqual(childRunId("run-1", "kid"), childRunId("run-2", "kid"));
  });

  test("runWorkflow waits for the child and returns its output", async () => {
    const host = memoryHost();
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => ctx.runWorkflow("kid", "child_wf", { x: 1 });
    const first = await activate(host, workflow);
    assert.equal(first.kind, "suspended");
    const id = childRunId("run-1", "kid");
    assert.deepEqual(first.kind === "suspended" && first.waits, [{ kind: "child", name: "kid/result", childRunId: id }]);
    host.childOutcomes.set(id, { childRunId: id, workflowName: "child_wf", status: "completed", output: { done: true } });
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: { done: true } });
  });

  test("a failed child surfaces as a catchable ChildWorkflowFailedError, live and on replay", async () => {
    const host = memoryHost();
    const id = childRunId("run-1", "kid");
    host.childOutcomes.set(id, { childRunId: id, workflowName: "child_wf", status: "failed", error: { name: "TypeError", message: "boom" } });
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => {
      try {
        await ctx.runWorkflow("kid", "child_wf", {});
        return "no error";
      } catch (error) {
        assert.ok(error instanceof ChildWorkflowFailedError);
        return { childRunId: error.childRunId, status: error.status, failure: error.failure };
      }
    };
    const expected = { kind: "completed", output: { childRunId: id, status: "failed", failure: { name: "TypeError", message: "boom" } } };
    assert.deepEqual(await activate(host, workflow), expected);
    host.journal.pop();
    assert.deepEqual(await activate(host, workflow), expected);
  });

  test("a child of an unknown workflow fails the parent's operation with the host's error", async () => {
    const outcome = await activate(memoryHost(), async (_i, ctx) => {
      try {
        await ctx.startWorkflow("kid", "missing", {});
      } catch (error) {
        return (error as Error).message;
      }
    });
    assert.deepEqual(outcome, { kind: "completed", output: 'unknown workflow "missing"; known workflows: child_wf (loaded from WORKFLOW_DIRS=./workflows)' });
  });

  test("a store failure while creating a child stops the activation; it is not the child's failure", async () => {
    // Found by the chaos run: a connection cut during insertChildRun was journaled as the child's creation
    // error, and the parent failed for good.
    const host = memoryHost();
    host.failChildStartsWith = new Error("Connection terminated unexpectedly");
    const workflow = async (_i: { n: number }, ctx: WorkflowContext) => ctx.startWorkflow("kid", "child_wf", { x: 1 });
    const first = await activate(host, workflow);
    assert.equal(first.kind, "aborted");
    assert.equal(first.kind === "aborted" && (first.reason as Error).message, "Connection terminated unexpectedly");
    assert.deepEqual(host.journal, [], "nothing journaled: the next activation tries again");
    host.failChildStartsWith = undefined;
    assert.deepEqual(await activate(host, workflow), { kind: "completed", output: childRunId("run-1", "kid") });
  });
});
