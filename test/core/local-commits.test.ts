// LocalCommits: a watcher that heard the store's notice of a run waits for the commits to that run open here at that
// moment (their tellings follow), not for later ones, and never longer than its cap.
import assert from "node:assert/strict";
import { test } from "vitest";
import { LocalCommits } from "../../server/store/local-commits.js";

const state = async (promise: Promise<void>): Promise<"settled" | "open"> =>
  Promise.race([promise.then(() => "settled" as const), new Promise<"open">((resolve) => setTimeout(() => resolve("open"), 20))]);

test("settled waits for the commits open when asked, and only those", async () => {
  const commits = new LocalCommits();
  assert.equal(commits.settled("a"), undefined, "nothing open: no wait");
  const endFirst = commits.begin(["a", "b"]);
  const endSecond = commits.begin(["a"]);
  const both = commits.settled("a")!;
  const onlyB = commits.settled("b")!;
  endFirst();
  assert.equal(await state(onlyB), "settled");
  assert.equal(await state(both), "open", "the second commit to a is still open");
  // A commit begun after the question is not waited for.
  const endThird = commits.begin(["a"]);
  endSecond();
  assert.equal(await state(both), "settled");
  endThird();
  endThird(); // a second end does nothing
  assert.equal(commits.settled("a"), undefined);
  assert.equal(commits.size, 0);
});

test("around keeps the mark until the callbacks its answer resumed have run, and through a failure", async () => {
  const commits = new LocalCommits();
  let seenOpen: boolean | undefined;
  await commits.around(["r"], async () => "done").then(() => {
    // The caller's telling runs here: the mark must still be on.
    seenOpen = commits.settled("r") !== undefined;
  });
  assert.equal(seenOpen, true);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(commits.settled("r"), undefined);
  await assert.rejects(commits.around(["r"], async () => Promise.reject(new Error("refused"))), /refused/);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(commits.size, 0, "a failed statement leaves no mark");
});

test("a commit that never settles holds a watcher at most a second", async () => {
  const commits = new LocalCommits();
  commits.begin(["stuck"]);
  const started = Date.now();
  await commits.settled("stuck");
  const waited = Date.now() - started;
  assert.ok(waited >= 900 && waited < 3000, `waited ${waited} ms`);
});
