/**
 * The pure halves of RetryRun and ForkRun: which entries a retry supersedes (and replay then skips), and
 * which prefix a fork copies, over hand-written journals.
 */
import assert from "node:assert/strict";
import { test } from "vitest";
import { forkPrefix } from "../../server/core/fork.js";
import type { JournalEntry, NewEntry } from "../../server/core/journal.js";
import { Replay } from "../../server/core/replay.js";
import { retrySupersedes, supersededSequences } from "../../server/core/superseded.js";

const at = new Date("2026-12-06T00:00:00Z");
const boom = { name: "Error", message: "boom" };

function journal(...entries: NewEntry[]): JournalEntry[] {
  return entries.map((entry, i) => ({ ...entry, sequence: i + 1, createdAt: at }) as JournalEntry);
}
const base = (name: string, attempt = 1) => ({ name, attempt, startedAt: at });
const done = (name: string): NewEntry => ({ kind: "step_completed", ...base(name), result: name });
const retrying = (name: string, attempt: number): NewEntry => ({ kind: "step_attempt_failed", ...base(name, attempt), error: boom, fireAt: at });
const failedStep = (name: string, attempt: number, error = boom): NewEntry => ({ kind: "step_failed", ...base(name, attempt), error });
const runFailed = (error = boom): NewEntry => ({ kind: "run_failed", ...base(""), error });
const retried = (supersedes: number[]): NewEntry => ({ kind: "run_retried", ...base(""), result: { supersedes } });

test("a step's failure that failed the run: the step's every entry and run_failed are superseded", () => {
  const entries = journal(done("a"), retrying("b", 1), failedStep("b", 2), runFailed());
  assert.deepEqual(retrySupersedes(entries, boom), [2, 3, 4]);
});

test("Promise.all: a sibling that completed after the failure stays; the failure is found by its error", () => {
  const entries = journal(done("a"), failedStep("b", 1), done("c"), runFailed());
  assert.deepEqual(retrySupersedes(entries, boom), [2, 4]);
});

test("a wrapped error: the last operation entry, a failure, is the culprit; a caught one long before is not", () => {
  const wrapped = { name: "Error", message: "charge failed: boom" };
  assert.deepEqual(retrySupersedes(journal(done("a"), failedStep("b", 1), runFailed(wrapped)), wrapped), [2, 3]);
  // The handler caught b's failure, went on, then threw on its own: only run_failed goes.
  assert.deepEqual(retrySupersedes(journal(failedStep("b", 1), done("c"), runFailed(wrapped)), wrapped), [3]);
});

test("a second retry looks only at live entries; replay skips what every retry superseded", () => {
  const entries = journal(done("a"), failedStep("b", 1), runFailed(), retried([2, 3]), failedStep("b", 1), runFailed());
  assert.deepEqual([...supersededSequences(entries)], [2, 3]);
  assert.deepEqual(retrySupersedes(entries, boom), [5, 6]);
  const replay = new Replay({ runId: "r", workflowName: "w", input: {}, createdAt: at }, [...entries, ...journal(retried([5, 6])).map((e) => ({ ...e, sequence: 7 }))]);
  assert.deepEqual(replay.recordedFor("b"), []);
  assert.equal(replay.recordedFor("a").length, 1);
});

test("no run_failed entry (a failure journaled otherwise): the run row's error finds the operation", () => {
  assert.deepEqual(retrySupersedes(journal(done("a"), failedStep("b", 1)), boom), [2]);
});

test("a fork copies live operation entries before the operation's first entry, nothing run-level", () => {
  const entries = journal(done("a"), failedStep("b", 1), runFailed(), retried([2, 3]), done("b"), done("c"));
  const prefix = forkPrefix(entries, "c");
  assert.deepEqual(
    prefix?.entries.map((e) => e.sequence),
    [1, 5],
  );
  assert.equal(prefix?.fromSequence, 6);
  assert.deepEqual(forkPrefix(entries, "b")?.entries.map((e) => e.sequence), [1]);
  assert.equal(forkPrefix(entries, "a")?.entries.length, 0);
  assert.equal(forkPrefix(entries, "never"), undefined);
});
