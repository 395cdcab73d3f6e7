// The batched reads behind WatchRun's shared tails (server/store/tail-reads.ts, server/runs/run-tail.ts): what a
// journal notice alone brings is new entries, so the run's row (its input and output with it) is read only when
// something else said the row may have changed; a status change heard while an entries-only read is under way is
// read next, never lost.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import { RunTail } from "../../server/runs/run-tail.js";
import { TailReader } from "../../server/runs/tail-reader.js";
import { type Database, openDatabase } from "../../server/store/database.js";
import { readTails } from "../../server/store/tail-reads.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";

let testDb: TestDatabase;
let database: Database;

beforeAll(async () => {
  testDb = await createTestDatabase("tail_reads");
  database = await openDatabase({ url: testDb.url, dataDir: join(tmpdir(), "cairn-unused") });
});

afterAll(async () => {
  await database?.close().catch(() => undefined);
  await testDb?.drop();
});

const sql = (text: string, values: unknown[] = []) => withClient(testDb.url, (client) => client.query(text, values));

async function runWithEntries(entries: number): Promise<string> {
  const id = randomUUID();
  await sql("insert into runs (id, namespace, workflow_name, input, status) values ($1, 'default', 'w', '{}'::jsonb, 'running')", [id]);
  for (let i = 1; i <= entries; i++) await append(id, i);
  return id;
}

async function append(runId: string, sequence: number): Promise<void> {
  await sql("insert into journal_entries (run_id, sequence, namespace, kind, name, result) values ($1, $2, 'default', 'step_completed', $3, '1'::jsonb)", [runId, sequence, `s${sequence}`]);
}

test("readTails reads the rows only of the runs that want them, and the entries of all", async () => {
  const [a, b] = [await runWithEntries(2), await runWithEntries(3)];
  const [readA, readB] = await readTails(database.watchDb, [
    { namespace: "default", runId: a, afterSequence: 0, withRun: false },
    { namespace: "default", runId: b, afterSequence: 1 },
  ]);
  assert.equal(readA?.run, undefined, "no row for a run that wanted entries only");
  assert.deepEqual(readA?.entries.map((e) => e.sequence), [1, 2]);
  assert.equal(readB?.run?.id, b);
  assert.deepEqual(readB?.entries.map((e) => e.sequence), [2, 3]);
  const [onlyEntries] = await readTails(database.watchDb, [{ namespace: "default", runId: a, afterSequence: 1, withRun: false }]);
  assert.deepEqual(onlyEntries?.entries.map((e) => e.sequence), [2]);
});

test("a tail reads its row again only after a change that is not entries alone, and a status change during a read is not lost", async () => {
  const runId = await runWithEntries(1);
  let reads = 0;
  const tail = new RunTail(database.watchDb, "default", runId, () => reads++, new TailReader(database.watchDb));
  await tail.refresh();
  assert.equal(tail.run?.status, "running");
  assert.equal(tail.lastSequence, 1);

  // An entry and a status change, but only the entry is told: the entry arrives, the status stays as read before.
  await append(runId, 2);
  await sql("update runs set status = 'waiting' where id = $1", [runId]);
  await tail.refresh(true);
  assert.equal(tail.lastSequence, 2);
  assert.equal(tail.run?.status, "running", "an entries-only read must not read the row (this fails if it does)");

  // Any other change reads the row.
  await tail.refresh();
  assert.equal(tail.run?.status, "waiting");

  // Entries told, then a status change told in the same turn: one read, and it has both.
  await append(runId, 3);
  await sql("update runs set status = 'completed' where id = $1", [runId]);
  const before = reads;
  const entriesRead = tail.refresh(true);
  const statusRead = tail.refresh();
  await Promise.all([entriesRead, statusRead]);
  assert.equal(tail.lastSequence, 3);
  assert.equal(tail.run?.status, "completed");
  assert.equal(reads - before, 1, "the notices of one commit cost one read");

  // A status change told while an entries-only read is in flight is read right after it.
  await append(runId, 4);
  const inFlight = tail.refresh(true);
  await new Promise<void>((resolve) => setImmediate(resolve));
  await sql("update runs set status = 'failed' where id = $1", [runId]);
  const told = tail.refresh();
  await Promise.all([inFlight, told]);
  assert.equal(tail.lastSequence, 4);
  assert.equal(tail.run?.status, "failed");
});

test("a tail takes this process's own change as told, and reads nothing for the notices of it; news it lacks is read", async () => {
  const runId = await runWithEntries(1);
  let reads = 0;
  const tail = new RunTail(database.watchDb, "default", runId, () => reads++, new TailReader(database.watchDb));
  await tail.refresh();
  assert.equal(reads, 1);
  const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 30));
  const readBack = async () => {
    const [read] = await readTails(database.watchDb, [{ namespace: "default", runId, afterSequence: 0 }]);
    return read!;
  };

  // The end, told by this process with its data (what a read would give): taken without a read.
  await append(runId, 2);
  await sql("update runs set status = 'completed' where id = $1", [runId]);
  const ended = await readBack();
  tail.hear({ source: "local", row: ended.run, entries: () => ended.entries.filter((e) => e.sequence === 2) });
  assert.equal(tail.lastSequence, 2);
  assert.equal(tail.run?.status, "completed");
  // Its notices come after: nothing in them is new.
  tail.hear({ source: "notice", kind: "entry", lastSequence: 2 });
  tail.hear({ source: "notice", kind: "status", status: "completed" });
  await settle();
  assert.equal(reads, 1, "the end and its notices cost no read");

  // The notices first, then this process's own telling in the same turn (both sockets were ready at once): no read.
  await sql("update runs set status = 'running' where id = $1", [runId]);
  await append(runId, 3);
  await sql("update runs set status = 'completed' where id = $1", [runId]);
  const again = await readBack();
  tail.hear({ source: "notice", kind: "status", status: "running" });
  tail.hear({ source: "notice", kind: "status", status: "completed" });
  tail.hear({ source: "notice", kind: "entry", lastSequence: 3 });
  tail.hear({ source: "local", row: again.run, entries: () => again.entries.filter((e) => e.sequence === 3) });
  await settle();
  // (Two statuses were told: one the tail never held, so the row is read after all.)
  assert.equal(reads, 2, "a status the tail never saw is read");
  assert.equal(tail.lastSequence, 3);

  // Notices of what the tail lacks are read: a newer entry, another status.
  await append(runId, 4);
  tail.hear({ source: "notice", kind: "entry", lastSequence: 4 });
  await settle();
  assert.equal(reads, 3);
  assert.equal(tail.lastSequence, 4);
  await sql("update runs set status = 'failed' where id = $1", [runId]);
  tail.hear({ source: "notice", kind: "status", status: "failed" });
  await settle();
  assert.equal(reads, 4);
  assert.equal(tail.run?.status, "failed");
  // And a notice of an earlier version's format (no data) is always read.
  tail.hear({ source: "notice", kind: "entry" });
  await settle();
  assert.equal(reads, 5);

  // A change told with data that does not follow on (entries missed before it) is read, not taken.
  await append(runId, 5);
  await append(runId, 6);
  const ahead = await readBack();
  tail.hear({ source: "local", row: ahead.run, entries: () => ahead.entries.filter((e) => e.sequence === 6) });
  await settle();
  assert.equal(reads, 6);
  assert.equal(tail.lastSequence, 6);
});
