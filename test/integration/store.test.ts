// Store behaviour that no RPC shows directly: concurrent start-up migrations
// and event retention.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, test } from "vitest";
import { type Database, openDatabase } from "../../server/store/database.js";
import { deleteExpiredEvents, sendEvent } from "../../server/store/events.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

let url: string;
let dropDatabase: () => Promise<void>;
const opened: Database[] = [];

beforeAll(async () => {
  const database = await createTestDatabase("store");
  url = database.url;
  dropDatabase = database.drop;
});

afterAll(async () => {
  for (const database of opened) await database.close();
  await dropDatabase();
});

test("three servers opening an empty database at once all migrate it without error", async () => {
  const databases = await Promise.all([1, 2, 3].map(() => openDatabase({ url, dataDir: "/unused" })));
  opened.push(...databases);
  const applied = await withClient(url, async (c) => (await c.query("select count(*)::int as n from drizzle.__drizzle_migrations")).rows[0].n as number);
  assert.ok(applied >= 2, "every migration applied once");
  const tables = await withClient(url, async (c) => (await c.query("select count(*)::int as n from information_schema.tables where table_schema = 'public'")).rows[0].n as number);
  // runs, journal_entries, events, waits, agent_turns, run_watchers, api_keys, processes, batches, batch_items, schedules
  assert.equal(tables, 11);
});

test("events past retention are deleted, newer ones kept", async () => {
  const [database] = opened;
  assert.ok(database);
  const send = (key: string) => sendEvent(database.db, { id: randomUUID(), namespace: "default", eventType: "retention", correlationId: key, payload: key });
  await send("old");
  await withClient(url, (c) => c.query("update events set created_at = now() - interval '8 days' where correlation_id = 'old'"));
  await send("new");
  assert.equal(await deleteExpiredEvents(database.db, 7 * 24 * 3600 * 1000), 1);
  const left = await withClient(url, async (c) => (await c.query("select correlation_id from events order by position")).rows.map((r) => r.correlation_id as string));
  assert.deepEqual(left, ["new"]);
});
