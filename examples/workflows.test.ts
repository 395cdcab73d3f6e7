// The example workflows (workflows/) tested in memory with @cairnjs/sdk/testing: no server, no database, and
// days of workflow time in milliseconds. README.md shows this file; CI runs it (the `examples` vitest project).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "vitest";
import { createTestEnvironment, type ExportedHistory } from "@cairnjs/sdk/testing";
import { defineWorkflow } from "@cairnjs/sdk/workflow";
import * as expenseApproval from "../workflows/expense-approval.js";
import * as nightlyReport from "../workflows/nightly-report.js";
import * as orderFulfillment from "../workflows/order-fulfillment.js";

// alwaysReplay: every run is also replayed from the top after each journal entry, as a crash there would
// force, so a handler that reads a clock or randomness outside a step fails here with a DeterminismError.
const newEnvironment = () => createTestEnvironment({ workflows: [expenseApproval, nightlyReport, orderFulfillment], alwaysReplay: true });

test("an order is reserved, charged and shipped", async () => {
  const env = newEnvironment();
  const run = await env.start(orderFulfillment, { orderId: "A-1", items: [{ sku: "tea", quantity: 12 }], amountCents: 1200 });
  const output = await env.result<{ status: string; shipment: { carrier: string } }>(run);
  assert.equal(output.status, "fulfilled");
  assert.equal(output.shipment.carrier, "freight");
});

test("an expense nobody decides on escalates after two days", async () => {
  const env = newEnvironment();
  const run = await env.start(expenseApproval, { expenseId: "E-1", amountCents: 4200 });
  await env.advance("47h");
  assert.equal(run.status, "waiting");
  await env.advance("1h");
  assert.deepEqual(run.output, { expenseId: "E-1", outcome: "escalated" });
});

test("an approved expense is paid out", async () => {
  const env = newEnvironment();
  const run = await env.start(expenseApproval, { expenseId: "E-2", amountCents: 4200 });
  await env.sendEvent({ eventType: "expense.decided", correlationId: "E-2", payload: { approved: true, by: "ada" } });
  assert.deepEqual(await env.result(run), { expenseId: "E-2", outcome: "approved", by: "ada" });
  assert.ok(run.journal.some((entry) => entry.name === "pay-out"));
});

test("the nightly report settles, then waits for its agent's answer", async () => {
  const env = newEnvironment();
  const run = await env.start(nightlyReport, { channel: "#ops", topic: "queues", settle: "1h" });
  await env.advance("1h");
  assert.deepEqual(env.pendingTurns().map((turn) => turn.text), ["Write a short report about queues"]);
  await env.completeTurn("summarize", { text: "All quiet." });
  assert.deepEqual(await env.result(run), { channel: "#ops", report: { text: "All quiet." } });
});

// A run in flight on a server, exported with `cairn runs history <run-id> --json`: an expense waiting for its
// decision. Before deploying a change, replay it against the new code.
const inFlight = JSON.parse(readFileSync(new URL("histories/expense-waiting.json", import.meta.url), "utf8")) as ExportedHistory;

/** The change under review: a budget check before the manager is notified, with or without a patch. */
const withBudgetCheck = (patch: boolean) =>
  defineWorkflow({
    name: "expense_approval",
    input: expenseApproval.Input,
    async handler(input, ctx) {
      if (!patch || ctx.patched("budget-check")) await ctx.step("check-budget", () => ({ withinBudget: input.amountCents < 100_000 }));
      return expenseApproval.handler(input, ctx);
    },
  });

test("an exported history replays on the current code, and reports where changed code would diverge", async () => {
  const env = newEnvironment();
  assert.deepEqual(await env.replay(inFlight, expenseApproval), { ok: true, replayed: 3 });

  const report = await env.replay(inFlight, withBudgetCheck(false));
  assert.equal(report.ok, false);
  assert.match(report.ok ? "" : report.error.message, /records "notify-manager" \(step_completed\) next, but .* started "check-budget" \(step\) instead/);

  // Behind ctx.patched, runs recorded before the change keep the old path.
  assert.deepEqual(await env.replay(inFlight, withBudgetCheck(true)), { ok: true, replayed: 3 });
});
