// Two engine decisions are made in SQL for speed: parking a run on events and the clock
// (cairn_park_on_events, one round trip) and delivering an event to the runs parked on its key inside
// SendEvent (cairn_deliver_event). Each has a TypeScript twin: the general parking path (parkWithLocks)
// and the core's own resolution of an event wait (the event primitive's byWorld, as an activation runs it).
// These tests run the same scenarios through both and check they leave the same rows and journal the
// same entries, so the two cannot drift apart.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import type { ActivationHost } from "../../server/core/host.js";
import { entryFields, type JournalEntry, type NewEntry } from "../../server/core/journal.js";
import { eventWait } from "../../server/core/primitives/event.js";
import { type EventWait, type PendingWait, nextDeadline, waitRecord } from "../../server/core/waits.js";
import { type Database, openDatabase } from "../../server/store/database.js";
import { findEvent, sendEvent } from "../../server/store/events.js";
import { loadJournal } from "../../server/store/journal.js";
import { insertRun } from "../../server/store/runs/create.js";
import type { Fence } from "../../server/store/runs/lease.js";
import { parkWithLocks, suspendRun } from "../../server/store/runs/park.js";
import { Store } from "../../server/store/store.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";

let testDb: TestDatabase;
let database: Database;
let store: Store;

beforeAll(async () => {
  testDb = await createTestDatabase("sql_parity");
  database = await openDatabase({ url: testDb.url, dataDir: join(tmpdir(), "cairn-unused") });
  store = new Store(database);
});

afterAll(async () => {
  await database?.close().catch(() => undefined);
  await testDb?.drop();
});

/** A run claimed by "A" (an eager start), with its journal's first entry written: the event wait's start. */
async function claimedRun(): Promise<Fence> {
  const { run } = await insertRun(store, { id: randomUUID(), namespace: "default", workflowName: "parity", input: {}, metadata: {} }, { owner: "A", leaseMs: 60_000 });
  return { runId: run.id, owner: "A", epoch: run.leaseEpoch };
}

/** What a park leaves: the run's row and its waits rows, without ids and clocks that differ between runs. */
async function parkedState(runId: string) {
  return withClient(testDb.url, async (client) => {
    const run = await client.query(
      "select status, waiting_on, available_at, lease_owner, lease_expires_at from runs where id = $1",
      [runId],
    );
    const waits = await client.query(
      "select * from waits where run_id = $1 order by name",
      [runId],
    );
    // Every column but the run it belongs to (and when the row was written).
    const rows = waits.rows.map(({ run_id: _run, created_at: _at, ...row }) => row);
    return { run: run.rows[0], waits: rows };
  });
}

function waitsFor(key: string): PendingWait[] {
  const soon = new Date(Date.now() + 3_600_000);
  return [
    { kind: "event", name: "approval", eventType: "parity.approved", correlationId: key, timeoutAt: soon, lookbackFrom: new Date(Date.now() - 60_000) },
    { kind: "timer", name: "reminder", fireAt: new Date(soon.getTime() - 1_000) },
    { kind: "retry", name: "sync", fireAt: new Date(soon.getTime() - 2_000), nextAttempt: 2 },
  ];
}

test("parking on events and timers: the SQL function and the TypeScript path leave the same rows", async () => {
  const key = `park-${randomUUID()}`;
  const pending = waitsFor(key);
  const viaSql = await claimedRun();
  const viaTs = await claimedRun();
  assert.equal(await suspendRun(database.db, viaSql, "default", pending), true, "the SQL path parks");
  assert.equal(await parkWithLocks(database.db, viaTs, "default", pending, waitRecord(pending[0]!), nextDeadline(pending)), true, "the TypeScript path parks");
  const [sqlState, tsState] = [await parkedState(viaSql.runId), await parkedState(viaTs.runId)];
  assert.equal(sqlState.run.status, "waiting");
  assert.equal(sqlState.waits.length, 3);
  assert.deepEqual(sqlState, tsState);
});

test("an event already there: neither path parks, both keep the lease", async () => {
  const key = `early-${randomUUID()}`;
  const pending = waitsFor(key);
  await sendEvent(database.db, { id: randomUUID(), namespace: "default", eventType: "parity.approved", correlationId: key, payload: { early: true } });
  const viaSql = await claimedRun();
  const viaTs = await claimedRun();
  assert.equal(await suspendRun(database.db, viaSql, "default", pending), false);
  assert.equal(await parkWithLocks(database.db, viaTs, "default", pending, waitRecord(pending[0]!), nextDeadline(pending)), false);
  const [sqlState, tsState] = [await parkedState(viaSql.runId), await parkedState(viaTs.runId)];
  assert.equal(sqlState.run.status, "running");
  assert.equal(sqlState.run.lease_owner, "A");
  // Untouched rows: the lease and the claim's instants are each run's own.
  const untouched = (state: typeof sqlState) => ({ ...state, run: { ...state.run, lease_expires_at: null, available_at: null } });
  assert.deepEqual(untouched(sqlState), untouched(tsState));
});

/** The event primitive's own resolution, as an activation runs it against this store. */
async function resolveInTypeScript(runId: string, wait: EventWait): Promise<NewEntry | undefined> {
  const host = { findEvent: (waits: readonly EventWait[]) => findEvent(database.db, "default", runId, waits) } as Pick<ActivationHost, "findEvent">;
  return eventWait.byWorld?.(host as ActivationHost, [wait], new Date());
}

/** The fields an entry means, without the instants and ids that differ between two runs. */
function meaning(entry: NewEntry | JournalEntry) {
  const { kind, name, result, eventType, correlationId, attempt, error } = entryFields(entry);
  return { kind, name, result, eventType, correlationId, attempt, error };
}

test("event delivery: SendEvent's SQL delivery journals what the core's resolution journals", async () => {
  const key = `deliver-${randomUUID()}`;
  const wait: EventWait = { kind: "event", name: "approval", eventType: "parity.approved", correlationId: key, timeoutAt: undefined, lookbackFrom: undefined };
  const payload = { approved: true, by: "parity" };

  // SQL: the run is parked on the key; SendEvent delivers in its own transaction.
  const parked = await claimedRun();
  assert.equal(await suspendRun(database.db, parked, "default", [wait]), true);
  const sent = await sendEvent(database.db, { id: randomUUID(), namespace: "default", eventType: wait.eventType, correlationId: key, payload });
  assert.deepEqual(sent.matchedRunIds, [parked.runId]);
  const delivered = (await loadJournal(database.db, parked.runId)).at(-1);
  assert.ok(delivered, "SendEvent journaled the delivery");

  // TypeScript: another run reaches the same wait after the event was sent (events wake every run waiting on
  // their key, each run consuming each event once); its activation resolves the wait itself.
  const active = await claimedRun();
  const resolved = await resolveInTypeScript(active.runId, wait);
  assert.ok(resolved, "the core found the event");

  assert.deepEqual(meaning(delivered), meaning(resolved));
  assert.equal(entryFields(delivered).eventId, sent.eventId);
  assert.equal(entryFields(resolved).eventId, sent.eventId);
});
