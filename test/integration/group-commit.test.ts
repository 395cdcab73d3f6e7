// Group commit (server/store/batcher.ts) on real PostgreSQL: journal entries,
// new runs and run endings of many runs share one statement, each keeps its
// own fence, one run's unstorable value does not fail the others, entries can ride
// on a run's end (one statement), and an entry
// is reported written only once it committed.
import { afterAll, beforeAll, test } from "vitest";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NewEntry } from "../../server/core/journal.js";
import type { JsonValue } from "../../sdk/workflow.js";
import { type Database, openDatabase } from "../../server/store/database.js";
import { Store } from "../../server/store/store.js";
import { loadJournal } from "../../server/store/journal.js";
import { JournalWriter } from "../../server/store/journal-writer.js";
import type { Fence } from "../../server/store/runs/lease.js";
import { endRun, finishRun } from "../../server/store/runs/finish.js";
import { getRun } from "../../server/store/runs/read.js";
import { insertRun } from "../../server/store/runs/create.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";

let testDb: TestDatabase;
let store: Database;
let writes: Store;

beforeAll(async () => {
  testDb = await createTestDatabase("journal_writer");
  store = await openDatabase({ url: testDb.url, dataDir: join(tmpdir(), "cairn-unused") });
  writes = new Store(store);
});

afterAll(async () => {
  await store?.close().catch(() => undefined);
  await testDb?.drop();
});

const entry = (name: string, result: unknown = name): NewEntry => ({
  kind: "step_completed",
  name,
  result: result as JsonValue,
  attempt: 1,
  startedAt: new Date(),
});

/** A run claimed by `owner` at epoch 1, as an eager start leaves it. */
async function claimedRun(owner: string): Promise<Fence> {
  const id = randomUUID();
  const { run } = await insertRun(writes, { id, namespace: "default", workflowName: "w", input: {}, metadata: {} }, { owner, leaseMs: 60_000 });
  return { runId: run.id, owner, epoch: run.leaseEpoch };
}

/** How many transactions inserted or last updated these rows (rows written together share their xmin). */
async function transactionsOf(table: "runs" | "journal_entries", column: "id" | "run_id", ids: string[]): Promise<number> {
  const result = await withClient(testDb.url, (c) =>
    c.query<{ n: number }>(`select count(distinct xmin::text)::int as n from ${table} where ${column} = any($1::uuid[])`, [ids]),
  );
  return result.rows[0]!.n;
}

const names = async (runId: string) => (await loadJournal(store.db, runId)).map((e) => `${e.sequence}:${e.name}`);

test("entries of many runs appended in one turn share a statement, and each keeps its own fence", async () => {
  const writer = new JournalWriter(store.db);
  const fences = await Promise.all(Array.from({ length: 20 }, () => claimedRun("A")));
  const stale: Fence = { ...fences[3]!, epoch: 7 };
  const foreign: Fence = { ...fences[4]!, owner: "B" };
  const answers = await Promise.all([
    ...fences.flatMap((fence) => [writer.append(fence, 1, entry("one")), writer.append(fence, 2, entry("two"))]),
    writer.append(stale, 3, entry("stale")),
    writer.append(foreign, 3, entry("foreign")),
  ]);
  assert.deepEqual(answers, [...fences.flatMap(() => [true, true]), false, false]);
  // One statement per row would give 40 transactions.
  assert.equal(await transactionsOf("journal_entries", "run_id", fences.map((f) => f.runId)), 1, "the 40 entries committed in one transaction");
  for (const fence of fences) assert.deepEqual(await names(fence.runId), ["1:one", "2:two"]);
});

test("a value PostgreSQL cannot store fails only its own entry, not the others of its batch", async () => {
  const writer = new JournalWriter(store.db);
  const [good, bad, other] = await Promise.all([claimedRun("A"), claimedRun("A"), claimedRun("A")]);
  const results = await Promise.allSettled([
    writer.append(good!, 1, entry("good")),
    // jsonb has no NUL character: the batch statement fails, then each entry is tried alone.
    writer.append(bad!, 1, entry("bad", "nul \u0000 here")),
    writer.append(other!, 1, entry("other")),
  ]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.deepEqual(await names(good!.runId), ["1:good"]);
  assert.deepEqual(await names(bad!.runId), []);
  assert.deepEqual(await names(other!.runId), ["1:other"]);
});

test("when the batch cannot commit, every entry of it fails and none is reported written", async () => {
  const own = await createTestDatabase("journal_writer_fail");
  const database = await openDatabase({ url: own.url, dataDir: join(tmpdir(), "cairn-unused") });
  const databaseWrites = new Store(database);
  try {
    const writer = new JournalWriter(database.db);
    const fences = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const { run } = await insertRun(databaseWrites, { id: randomUUID(), namespace: "default", workflowName: "w", input: {}, metadata: {} }, { owner: "A", leaseMs: 60_000 });
        return { runId: run.id, owner: "A", epoch: run.leaseEpoch } satisfies Fence;
      }),
    );
    const appends = fences.map((fence) => writer.append(fence, 1, entry("lost")));
    // The pool goes away before the batch (queued for the next turn) is sent.
    await database.close();
    const results = await Promise.allSettled(appends);
    assert.deepEqual(results.map((r) => r.status), fences.map(() => "rejected"));
    const rows = await withClient(own.url, (c) => c.query("select count(*)::int as n from journal_entries"));
    assert.equal(rows.rows[0].n, 0, "nothing of the failed batch was written");
  } finally {
    await own.drop();
  }
});

test("concurrent creates share one INSERT, and concurrent endings one statement, each with its own fence", async () => {
  const fences = await Promise.all(Array.from({ length: 20 }, () => claimedRun("C")));
  const ids = fences.map((f) => f.runId);
  assert.equal(await transactionsOf("runs", "id", ids), 1, "20 concurrent creates committed in one transaction");
  const stale: Fence = { ...fences[0]!, epoch: 9 };
  const answers = await Promise.all([
    finishRun(writes, stale, 1, { status: "completed", output: "stale" }),
    ...fences.slice(1).map((fence, i) => finishRun(writes, fence, 1, { status: "completed", output: { i } })),
  ]);
  assert.deepEqual(answers, [false, ...fences.slice(1).map(() => true)]);
  assert.equal(await transactionsOf("runs", "id", ids.slice(1)), 1, "19 endings committed in one transaction");
  assert.equal((await getRun(store.db, "default", ids[0]!))?.status, "running", "the stale finish changed nothing");
  for (const [i, fence] of fences.slice(1).entries()) {
    const run = await getRun(store.db, "default", fence.runId);
    assert.equal(run?.status, "completed");
    assert.deepEqual(run?.output, { i });
    assert.deepEqual(await names(fence.runId), ["1:"], "the run_completed entry was journaled with the ending");
  }
});

test("entries riding on a run's end commit with it in its statement, or not at all when the fence no longer holds", async () => {
  const [held, lost] = await Promise.all([claimedRun("R"), claimedRun("R")]);
  const stale: Fence = { ...lost!, epoch: 9 };
  // Keys in an order jsonb does not keep (it sorts them: shorter first, then bytewise), some beyond ASCII.
  const tricky = { text: "välue 😀", nested: [1, null, { ok: true, b: "x" }], "ä": 1, zz: { y: 2, a: 1 } };
  const [endedHeld, endedStale] = await Promise.all([
    endRun(writes, held!, 3, { status: "completed", output: "done" }, null, [
      { sequence: 1, entry: entry("last step", tricky) },
      { sequence: 2, entry: { kind: "now_recorded", name: "now-1", attempt: 1, startedAt: new Date(), result: 1234 } },
    ]),
    endRun(writes, stale, 2, { status: "completed", output: "stale" }, null, [{ sequence: 1, entry: entry("never") }]),
  ]);
  assert.ok(endedHeld, "the held fence's end was refused");
  assert.equal(endedStale, undefined, "the stale fence's end was accepted");
  const journal = await loadJournal(store.db, held!.runId);
  assert.deepEqual(journal.map((e) => `${e.sequence}:${e.kind}:${e.name}`), ["1:step_completed:last step", "2:now_recorded:now-1", "3:run_completed:"]);
  assert.deepEqual((journal[0] as { result?: unknown }).result, tricky);
  // What the end hands local waiters (run-feed.ts) is what a read gives, in jsonb's key order and with the statement's time.
  assert.deepEqual(endedHeld.entries?.(), journal);
  assert.equal(JSON.stringify(endedHeld.entries?.()), JSON.stringify(journal));
  assert.notEqual(JSON.stringify((journal[0] as { result?: unknown }).result), JSON.stringify(tricky), "the key order must differ for this to check it");
  assert.equal(await transactionsOf("journal_entries", "run_id", [held!.runId]), 1, "the entries and the end committed in one transaction");
  assert.deepEqual(await names(lost!.runId), [], "nothing rode on the refused end");
  assert.equal((await getRun(store.db, "default", lost!.runId))?.status, "running");
});
