// Crash recovery, fencing and graceful shutdown with real server processes on
// one PostgreSQL database (DESIGN §3, §4.2): a SIGKILLed process's run resumes
// on another process after its lease lapses without re-running journaled
// steps; two processes share a queue without executing a run twice; a writer
// that lost its lease can't commit; SIGTERM hands running runs over at once.
import { afterAll, beforeAll, describe, test } from "vitest";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { NewEntry } from "../../server/core/journal.js";
import { type Database, openDatabase } from "../../server/store/database.js";
import { Store } from "../../server/store/store.js";
import { loadJournal } from "../../server/store/journal.js";
import { JournalWriter } from "../../server/store/journal-writer.js";
import { claimDueRuns, type Fence, releaseRun, renewLeases, requeueExpiredLeases } from "../../server/store/runs/lease.js";
import { finishRun } from "../../server/store/runs/finish.js";
import { getRun } from "../../server/store/runs/read.js";
import { insertRun } from "../../server/store/runs/create.js";
import { expectedOutput } from "../fixtures/workflows/counted-steps.js";
import { diagnostic } from "../support/diagnostic.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import {
  createWorkflowClient,
  describeExit,
  type ServerProcess,
  sleep,
  startServerProcess,
  stopAllServerProcesses,
  waitFor,
  waitForRun,
  type WorkflowClient,
} from "../support/server-process.js";

const fixtureDirs = ["test/fixtures/workflows"];

const databases: TestDatabase[] = [];
const stores: Database[] = [];

afterAll(async () => {
  await stopAllServerProcesses();
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  for (const db of databases.splice(0)) await db.drop();
});

/** A fresh database with the fixture's side table; Cairn's own tables come from the first server's migrations. */
async function freshDatabase(label: string): Promise<TestDatabase> {
  const db = await createTestDatabase(label);
  databases.push(db);
  await withClient(db.url, (c) =>
    c.query("create table step_effects (run_id text not null, step text not null, executed_at timestamptz not null)"),
  );
  return db;
}

/** One after another: two first starts on an empty database would race each other's migrations. */
async function startServers(db: TestDatabase, names: string[], env: Record<string, string> = {}): Promise<ServerProcess[]> {
  const started: ServerProcess[] = [];
  for (const name of names) started.push(await startServerProcess({ databaseUrl: db.url, workflowDirs: fixtureDirs, name, env }));
  return started;
}

async function query<T>(db: TestDatabase, text: string, values: unknown[] = []): Promise<T[]> {
  return withClient(db.url, async (c) => (await c.query(text, values)).rows as T[]);
}

async function journaledSteps(db: TestDatabase, runId: string): Promise<string[]> {
  const rows = await query<{ name: string }>(
    db,
    "select name from journal_entries where run_id = $1 and kind = 'step_completed' order by sequence",
    [runId],
  );
  return rows.map((r) => r.name);
}

async function effectCounts(db: TestDatabase, runId: string): Promise<Map<string, number>> {
  const rows = await query<{ step: string; n: number }>(
    db,
    "select step, count(*)::int as n from step_effects where run_id = $1 group by step",
    [runId],
  );
  return new Map(rows.map((r) => [r.step, r.n]));
}

const stepNames = (n: number) => Array.from({ length: n }, (_, i) => `step-${i}`);

/** Journaled before the interruption → ran exactly once; every step ran; only the one in flight may have run twice. */
function assertEffects(counts: Map<string, number>, steps: number, journaledBefore: readonly string[]): void {
  for (const step of journaledBefore) {
    assert.equal(counts.get(step), 1, `${step} was journaled before the interruption, so it must have run exactly once`);
  }
  const doubled: string[] = [];
  for (const step of stepNames(steps)) {
    const n = counts.get(step) ?? 0;
    assert.ok(n >= 1, `${step} never ran`);
    assert.ok(n <= 2, `${step} ran ${n} times`);
    if (n === 2) doubled.push(step);
  }
  // Steps run one after another, so only the first step not yet journaled can have been in flight.
  assert.ok(doubled.length <= 1, `more than one step ran twice: ${doubled.join(", ")}`);
  for (const step of doubled) assert.equal(step, `step-${journaledBefore.length}`, `${step} ran twice but was not the step in flight`);
  assert.deepEqual([...counts.keys()].filter((k) => !stepNames(steps).includes(k)), [], "effects of unknown steps");
}

/** The whole journal of a finished run: every step once, in order, then exactly one run_completed. */
async function assertCompleteJournal(db: TestDatabase, runId: string, steps: number): Promise<void> {
  const rows = await query<{ sequence: number; kind: string; name: string }>(
    db,
    "select sequence, kind, name from journal_entries where run_id = $1 order by sequence",
    [runId],
  );
  assert.deepEqual(
    rows.map((r) => r.sequence),
    rows.map((_, i) => i + 1),
    "journal sequence numbers are 1..n without gaps",
  );
  assert.deepEqual(
    rows.map((r) => `${r.kind}:${r.name}`),
    [...stepNames(steps).map((s) => `step_completed:${s}`), "run_completed:"],
  );
}

function createInput(input: { steps: number; stepDelayMs: number; tag: string }) {
  return fromJson(ValueSchema, input);
}

function outputOf(run: { output?: Value | undefined }): unknown {
  assert.ok(run.output, "run has an output");
  return toJson(ValueSchema, run.output);
}

function finishedRunIds(server: ServerProcess): string[] {
  return server
    .logRecords()
    .filter((r) => r.msg === "run finished" && typeof r.runId === "string")
    .map((r) => r.runId as string);
}

function logged(server: ServerProcess, runId: string, msg: string): boolean {
  return server.logRecords().some((r) => r.runId === runId && r.msg === msg);
}

async function createCountedRun(
  client: WorkflowClient,
  input: { steps: number; stepDelayMs: number; tag: string },
  eagerStart: boolean,
): Promise<string> {
  const { run } = await client.createRun({ workflowName: "counted_steps", input: createInput(input), eagerStart });
  assert.ok(run);
  return run.runId;
}

test("SIGKILL mid-run: another process resumes after the lease lapses; journaled steps never run again", async () => {
  const db = await freshDatabase("crash_kill");
  const [a, b] = await startServers(db, ["A", "B"]);
  assert.ok(a && b);
  const input = { steps: 12, stepDelayMs: 150, tag: "sigkill" };
  const runId = await createCountedRun(createWorkflowClient(a.url), input, true);

  await waitFor(
    async () => ((await journaledSteps(db, runId)).length >= 3 ? true : undefined),
    10_000,
    () => `run ${runId} did not journal 3 steps on A; A's output:\n${a.logs()}`,
  );
  a.kill("SIGKILL");
  const exit = await a.exited;
  assert.equal(exit.signal, "SIGKILL", describeExit(exit));
  const killedAt = Date.now();
  // A statement A had already sent may still commit; B can't write before the lease lapses (≥ 1 s from now).
  await sleep(100);
  const journaledBefore = await journaledSteps(db, runId);
  assert.ok(journaledBefore.length >= 3 && journaledBefore.length < input.steps, `journaled before kill: ${journaledBefore.join(", ")}`);
  assert.deepEqual(journaledBefore, stepNames(journaledBefore.length));

  const run = await waitForRun(createWorkflowClient(b.url), runId, [RunStatus.COMPLETED, RunStatus.FAILED], 20_000);
  assert.equal(run.status, RunStatus.COMPLETED, `run failed: ${run.error?.message}; B's output:\n${b.logs()}`);
  assert.deepEqual(outputOf(run), expectedOutput(input));
  assert.ok(run.activationCount >= 2, `activation_count ${run.activationCount}`);
  assert.ok(Date.now() - killedAt >= 900, "B cannot have taken over before A's lease lapsed");
  diagnostic(`killed after ${journaledBefore.length} journaled steps; completed on B ${Date.now() - killedAt} ms after the kill`);

  assertEffects(await effectCounts(db, runId), input.steps, journaledBefore);
  await assertCompleteJournal(db, runId, input.steps);
  await waitFor(async () => (logged(b, runId, "run finished") ? true : undefined), 5000, () => `B never logged the run's end:\n${b.logs()}`);
  assert.ok(!logged(a, runId, "run finished"), "A did not finish the run");
});

test("two processes share 200 queued runs: each runs once, each step's effect happens once", async () => {
  const db = await freshDatabase("crash_share");
  const servers = await startServers(db, ["C", "D"]);
  const clients = servers.map((s) => createWorkflowClient(s.url));
  const input = { steps: 3, stepDelayMs: 0, tag: "shared" };
  const total = 200;

  // Created through both processes, 20 at a time, so both get woken and both poll.
  const runIds: string[] = [];
  for (let batch = 0; batch < total; batch += 20) {
    const ids = await Promise.all(
      Array.from({ length: 20 }, (_, i) => createCountedRun(clients[(batch + i) % 2]!, input, false)),
    );
    runIds.push(...ids);
  }
  assert.equal(new Set(runIds).size, total);

  await waitFor(
    async () => {
      const [row] = await query<{ done: number }>(db, "select count(*)::int as done from runs where status in ('completed', 'failed')");
      return row && row.done === total ? true : undefined;
    },
    45_000,
    () => `not all ${total} runs finished`,
    100,
  );

  const statuses = await query<{ status: string; n: number }>(db, "select status, count(*)::int as n from runs group by status");
  assert.deepEqual(statuses, [{ status: "completed", n: total }]);
  const outputs = await query<{ n: number }>(db, "select count(*)::int as n from runs where output = $1::jsonb", [
    JSON.stringify(expectedOutput(input)),
  ]);
  assert.equal(outputs[0]?.n, total, "every run has the right output");

  const effects = await query<{ run_id: string; step: string; n: number }>(
    db,
    "select run_id, step, count(*)::int as n from step_effects group by run_id, step",
  );
  assert.equal(effects.length, total * input.steps, "one (run, step) group per step of every run");
  assert.deepEqual(effects.filter((e) => e.n !== 1), [], "no step's effect happened twice");
  assert.deepEqual(new Set(effects.map((e) => e.run_id)), new Set(runIds));

  const completions = await query<{ run_id: string; n: number }>(
    db,
    "select run_id, count(*)::int as n from journal_entries where kind = 'run_completed' group by run_id",
  );
  assert.equal(completions.length, total);
  assert.deepEqual(completions.filter((c) => c.n !== 1), [], "each run has exactly one run_completed entry");
  const [steps] = await query<{ n: number }>(db, "select count(*)::int as n from journal_entries where kind = 'step_completed'");
  assert.equal(steps?.n, total * input.steps);
  const [single] = await query<{ n: number }>(db, "select count(*)::int as n from runs where activation_count <> 1");
  assert.equal(single?.n, 0, "no run needed a second activation");

  // Who finished what, from each process's "run finished" log lines (stdout may lag behind the database a little).
  const [c, d] = servers as [ServerProcess, ServerProcess];
  await waitFor(
    () => (finishedRunIds(c).length + finishedRunIds(d).length >= total ? true : undefined),
    5_000,
    () => `only ${finishedRunIds(c).length} + ${finishedRunIds(d).length} "run finished" lines`,
  );
  const byC = new Set(finishedRunIds(c));
  const byD = new Set(finishedRunIds(d));
  assert.equal(byC.size + byD.size, total, "each run finished once, by one process");
  assert.deepEqual([...byC].filter((id) => byD.has(id)), [], "no run finished on both processes");
  diagnostic(`runs finished by C: ${byC.size}, by D: ${byD.size}`);
  assert.ok(byC.size > 0 && byD.size > 0, `both processes executed runs (C: ${byC.size}, D: ${byD.size})`);
  for (const server of servers) {
    assert.ok(!server.logs().includes("lease lost"), `${server.name} lost a lease:\n${server.logs()}`);
  }
});

test("a process that sleeps past its lease wakes up without running a step its successor already journaled", async () => {
  // Found by the chaos run (--pauses): SIGSTOPped with a journal write in flight, a server woke up, read that
  // the write had committed, and started the next step, which the process that took the run over had already
  // run and journaled. A step may run twice only while its result is not journaled yet.
  const db = await freshDatabase("crash_pause");
  const [a, b] = await startServers(db, ["P", "Q"]);
  assert.ok(a && b);
  const input = { steps: 8, stepDelayMs: 100, tag: "pause" };
  const runId = await createCountedRun(createWorkflowClient(a.url), input, true);
  await waitFor(
    async () => ((await journaledSteps(db, runId)).length >= 2 ? true : undefined),
    10_000,
    () => `run ${runId} did not journal 2 steps on P; P's output:\n${a.logs()}`,
  );
  // Hold P's next journal write inside PostgreSQL, freeze P, then let the write commit: P sleeps with a committed
  // write it has not heard of yet, while its lease runs out and Q takes the run over.
  const blocker = new pg.Client({ connectionString: db.url });
  await blocker.connect();
  try {
    await blocker.query("begin");
    await blocker.query("lock table journal_entries in share mode");
    await waitFor(
      async () => ((await query(db, "select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%insert into journal_entries%'")).length > 0 ? true : undefined),
      10_000,
      () => "P's journal write to wait for the lock",
    );
    process.kill(a.pid, "SIGSTOP");
  } finally {
    await blocker.query("rollback");
    await blocker.end();
  }
  try {
    const done = await waitForRun(createWorkflowClient(b.url), runId, [RunStatus.COMPLETED, RunStatus.FAILED], 20_000);
    assert.equal(done.status, RunStatus.COMPLETED, `Q's output:\n${b.logs()}`);
  } finally {
    process.kill(a.pid, "SIGCONT");
  }
  // P runs on for a moment: whatever it does now, no step may start after its result was journaled.
  await sleep(1500);
  const late = await query<{ step: string; executed_at: Date; journaled_at: Date }>(
    db,
    `select e.step, e.executed_at, j.created_at as journaled_at
     from step_effects e join journal_entries j on j.run_id::text = e.run_id and j.name = e.step and j.kind = 'step_completed'
     where e.run_id = $1 and e.executed_at > j.created_at`,
    [runId],
  );
  assert.deepEqual(late, [], `steps that ran after their result was journaled; P's output:\n${a.logs()}`);
  const counts = await effectCounts(db, runId);
  diagnostic(`effects per step: ${JSON.stringify(Object.fromEntries(counts))}`);
  assert.ok(a.logs().includes("starts no more steps") || [...counts.values()].every((n) => n === 1), "P either stopped itself or never got the chance");
});

describe("fencing: a writer whose lease was taken over can no longer write", () => {
  let testDb: TestDatabase;
  let db: Database["db"];
  let writes: Store;
  let writer: JournalWriter;
  beforeAll(async () => {
    testDb = await createTestDatabase("crash_fence");
    databases.push(testDb);
    const store = await openDatabase({ url: testDb.url, dataDir: join(tmpdir(), "cairn-unused") });
    stores.push(store);
    db = store.db;
    writes = new Store(store);
    writer = new JournalWriter(store.db);
  });
  // The production append path: the group-commit writer (a batch of one here).
  const appendEntry = (_db: unknown, fence: Fence, sequence: number, e: NewEntry) => writer.append(fence, sequence, e);
  const entry = (name: string): NewEntry => ({ kind: "step_completed", name, result: name, attempt: 1, startedAt: new Date() });
  const newRun = () => ({ id: randomUUID(), namespace: "default", workflowName: "counted_steps", input: {}, metadata: {} });
  const expire = (runId: string) =>
    withClient(testDb.url, (c) => c.query("update runs set lease_expires_at = now() - interval '1 second' where id = $1", [runId]));
  const journalNames = async (runId: string) => (await loadJournal(db, runId)).map((e) => `${e.sequence}:${e.name}`);

  test("stale owner and stale epoch are refused; the new holder writes", async () => {
    const { run } = await insertRun(writes, newRun());
    const [claimedA] = await claimDueRuns(db, "A", 60_000, 10, ["counted_steps"]);
    assert.equal(claimedA?.id, run.id);
    const fenceA: Fence = { runId: run.id, owner: "A", epoch: claimedA.leaseEpoch };
    assert.equal(fenceA.epoch, 1);
    assert.equal(await appendEntry(db, fenceA, 1, entry("a-1")), true);

    // A stops heartbeating: its lease lapses, any process requeues the run, B claims it.
    await expire(run.id);
    assert.deepEqual((await requeueExpiredLeases(db)).requeued, [run.id]);
    assert.equal(await appendEntry(db, fenceA, 2, entry("a-2")), false, "A can't write to a requeued run");
    const [claimedB] = await claimDueRuns(db, "B", 60_000, 10, ["counted_steps"]);
    assert.equal(claimedB?.id, run.id);
    assert.equal(claimedB.leaseEpoch, 2, "the claim bumps the epoch");
    assert.equal(claimedB.activationCount, 2);
    const fenceB: Fence = { runId: run.id, owner: "B", epoch: 2 };

    assert.equal(await appendEntry(db, fenceA, 2, entry("a-2")), false, "A's append is refused");
    assert.equal(await finishRun(writes, fenceA, 2, { status: "completed", output: "from A" }), false, "A's finish is refused");
    await releaseRun(db, fenceA);
    assert.deepEqual(await renewLeases(db, "A", 60_000, [run.id]), [], "A can't renew B's lease");
    assert.deepEqual(await journalNames(run.id), ["1:a-1"], "nothing of A's was written");
    let row = await getRun(db, "default", run.id);
    assert.equal(row?.status, "running");
    assert.equal(row?.leaseOwner, "B", "A's release did not touch B's claim");

    assert.deepEqual(await renewLeases(db, "B", 60_000, [run.id]), [{ ...fenceB, cancelRequested: false }]);
    assert.equal(await appendEntry(db, fenceB, 2, entry("b-2")), true);
    assert.equal(await finishRun(writes, fenceB, 3, { status: "completed", output: "from B" }), true);
    assert.deepEqual(await journalNames(run.id), ["1:a-1", "2:b-2", "3:"]);
    row = await getRun(db, "default", run.id);
    assert.equal(row?.status, "completed");
    assert.equal(row?.output, "from B");
    assert.equal(row?.leaseOwner, null);
    assert.equal(await appendEntry(db, fenceB, 4, entry("b-late")), false, "nobody writes to a finished run");
    assert.equal(await finishRun(writes, fenceB, 4, { status: "failed", error: { name: "Error", message: "late" } }), false);
  });

  test("the same owner's earlier claim (stale epoch) is refused too", async () => {
    const { run } = await insertRun(writes, newRun());
    const [first] = await claimDueRuns(db, "A", 60_000, 10, ["counted_steps"]);
    assert.equal(first?.id, run.id);
    await expire(run.id);
    assert.deepEqual((await requeueExpiredLeases(db)).requeued, [run.id]);
    const [second] = await claimDueRuns(db, "A", 60_000, 10, ["counted_steps"]);
    assert.equal(second?.leaseEpoch, first.leaseEpoch + 1);
    const stale: Fence = { runId: run.id, owner: "A", epoch: first.leaseEpoch };
    const current: Fence = { runId: run.id, owner: "A", epoch: second.leaseEpoch };
    assert.equal(await appendEntry(db, stale, 1, entry("stale")), false);
    assert.equal(await finishRun(writes, stale, 1, { status: "completed", output: null }), false);
    assert.equal(await appendEntry(db, current, 1, entry("current")), true);
    assert.equal(await finishRun(writes, current, 2, { status: "completed", output: null }), true);
    assert.deepEqual(await journalNames(run.id), ["1:current", "2:"]);
  });

  test("an append blocked behind a takeover in progress re-checks the fence and is refused", async () => {
    const { run } = await insertRun(writes, newRun());
    const [claimed] = await claimDueRuns(db, "A", 60_000, 10, ["counted_steps"]);
    assert.ok(claimed);
    const fenceA: Fence = { runId: run.id, owner: "A", epoch: claimed.leaseEpoch };
    // Another process is taking the run over: its UPDATE holds the row lock, not yet committed.
    const takeover = new pg.Client({ connectionString: testDb.url });
    await takeover.connect();
    try {
      await takeover.query("begin");
      await takeover.query(
        "update runs set status = 'running', lease_owner = 'B', lease_epoch = lease_epoch + 1 where id = $1",
        [run.id],
      );
      let settled = false;
      const append = appendEntry(db, fenceA, 1, entry("racing")).finally(() => {
        settled = true;
      });
      await sleep(300);
      // Without FOR SHARE the INSERT ... SELECT would read the old row version (owner A) and commit now.
      assert.equal(settled, false, "A's append waits for the takeover to commit or roll back");
      await takeover.query("commit");
      assert.equal(await append, false, "after the takeover commits, A's append matches nothing");
    } finally {
      await takeover.end();
    }
    assert.deepEqual(await journalNames(run.id), []);
  });

  test("racing an append against a takeover: B's view of the journal always includes A's successful write", async () => {
    let aWon = 0;
    let aLost = 0;
    for (let i = 0; i < 50; i++) {
      const { run } = await insertRun(writes, newRun());
      const [claimed] = await claimDueRuns(db, "A", 60_000, 10, ["counted_steps"]);
      assert.equal(claimed?.id, run.id);
      const fenceA: Fence = { runId: run.id, owner: "A", epoch: claimed.leaseEpoch };
      assert.equal(await appendEntry(db, fenceA, 1, entry("a-1")), true);
      await expire(run.id);

      const takeOver = async () => {
        // SKIP LOCKED: while A's append holds its FOR SHARE lock the run is skipped; try again.
        for (let attempt = 0; attempt < 500; attempt++) {
          await requeueExpiredLeases(db);
          const [mine] = await claimDueRuns(db, "B", 60_000, 10, ["counted_steps"]);
          if (mine) {
            assert.equal(mine.id, run.id);
            return { fence: { runId: run.id, owner: "B", epoch: mine.leaseEpoch } as Fence, journal: await loadJournal(db, run.id) };
          }
          await sleep(1);
        }
        throw new Error("B never claimed the run");
      };
      const [appended, b] = await Promise.all([appendEntry(db, fenceA, 2, entry("a-2")), takeOver()]);
      const seenByB = b.journal.map((e) => e.name);
      if (appended) {
        aWon++;
        assert.deepEqual(seenByB, ["a-1", "a-2"], "A's committed append happened before B's claim, so B's replay sees it");
      } else {
        aLost++;
        assert.deepEqual(seenByB, ["a-1"]);
      }
      // B continues right after what it saw, without sequence clashes, and finishes the run.
      const next = b.journal.length + 1;
      assert.equal(await appendEntry(db, b.fence, next, entry("b")), true);
      assert.equal(await finishRun(writes, b.fence, next + 1, { status: "completed", output: null }), true);
      assert.deepEqual(
        (await loadJournal(db, run.id)).map((e) => e.name),
        [...seenByB, "b", ""],
        "nothing of A's appeared after B's claim",
      );
      assert.equal(await appendEntry(db, fenceA, 9, entry("a-late")), false);
    }
    diagnostic(`A's racing append committed first in ${aWon} of 50 races and was refused in ${aLost}`);
  });
});

test("SIGTERM: the process exits 0 within the grace period and hands its run over at once", async () => {
  const db = await freshDatabase("crash_term");
  const graceMs = 1000;
  const [e, f] = await startServers(db, ["E", "F"], { CAIRN_SHUTDOWN_GRACE_MS: String(graceMs) });
  assert.ok(e && f);
  const input = { steps: 15, stepDelayMs: 300, tag: "sigterm" };
  const runId = await createCountedRun(createWorkflowClient(e.url), input, true);

  await waitFor(
    async () => ((await journaledSteps(db, runId)).length >= 2 ? true : undefined),
    10_000,
    () => `run ${runId} did not journal 2 steps on E; E's output:\n${e.logs()}`,
  );
  const termAt = Date.now();
  e.kill("SIGTERM");
  const exit = await e.exited;
  const took = Date.now() - termAt;
  assert.deepEqual(exit, { code: 0, signal: null }, `${describeExit(exit)}; E's output:\n${e.logs()}`);
  assert.ok(took >= graceMs - 50, `E exited after ${took} ms, before the grace period was up, with a run still executing`);
  assert.ok(took < graceMs + 3000, `E took ${took} ms to exit (grace ${graceMs} ms)`);

  // F executes a new step live only ≥ 300 ms after claiming, so the journal is still as E left it.
  const journaledBefore = await journaledSteps(db, runId);
  const [row] = await query<{ status: string; lease_owner: string | null }>(db, "select status, lease_owner from runs where id = $1", [runId]);
  assert.ok(row);
  assert.ok(
    row.status === "queued" || (row.status === "running" && row.lease_owner === f.owner),
    `run not handed over at shutdown: ${JSON.stringify(row)}`,
  );
  assert.ok(logged(e, runId, "activation stopped by shutdown; run released"), `E logged the release:\n${e.logs()}`);
  assert.ok(journaledBefore.length >= 2 && journaledBefore.length < input.steps, `journaled before SIGTERM: ${journaledBefore.join(", ")}`);

  const run = await waitForRun(createWorkflowClient(f.url), runId, [RunStatus.COMPLETED, RunStatus.FAILED], 20_000);
  assert.equal(run.status, RunStatus.COMPLETED, `run failed: ${run.error?.message}; F's output:\n${f.logs()}`);
  assert.deepEqual(outputOf(run), expectedOutput(input));
  assert.equal(run.activationCount, 2);
  assertEffects(await effectCounts(db, runId), input.steps, journaledBefore);
  await assertCompleteJournal(db, runId, input.steps);
  // The log line follows the commit that the client saw; stdout may lag a little behind.
  await waitFor(async () => (logged(f, runId, "run finished") ? true : undefined), 5000, () => `F never logged the run's end:\n${f.logs()}`);
  assert.ok(!logged(e, runId, "run finished"));
});
