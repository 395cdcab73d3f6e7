import assert from 'node:assert/strict';
import { afterAll, test } from 'vitest';
import { createTestDatabase, postgresServerUrl, withClient, type TestDatabase } from '../support/postgres.js';

const created: TestDatabase[] = [];
afterAll(async () => {
  for (const db of created) await db.drop();
});

async function databaseExists(name: string): Promise<boolean> {
  const admin = await postgresServerUrl();
  return withClient(admin, async (c) => {
    const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return r.rowCount === 1;
  });
}

test('createTestDatabase gives a fresh, empty database', async () => {
  const db = await createTestDatabase('support');
  created.push(db);
  assert.match(db.name, /^cairn_test_support_[0-9a-f]{8}$/);

  await withClient(db.url, async (c) => {
    const current = await c.query<{ db: string }>('SELECT current_database() AS db');
    assert.equal(current.rows[0]?.db, db.name);

    const tables = await c.query(
      "SELECT 1 FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    );
    assert.equal(tables.rowCount, 0, 'new database has no user tables');

    await c.query('CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)');
    await c.query("INSERT INTO t VALUES (1, 'one'), (2, 'two')");
    const rows = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM t');
    assert.equal(rows.rows[0]?.n, 2);
  });
});

test('databases are isolated from each other', async () => {
  const a = await createTestDatabase('iso a');
  const b = await createTestDatabase('iso-b');
  created.push(a, b);
  assert.notEqual(a.name, b.name);

  await withClient(a.url, (c) => c.query('CREATE TABLE only_in_a (id int)'));
  const seen = await withClient(b.url, async (c) => {
    const r = await c.query("SELECT to_regclass('public.only_in_a') AS t");
    return r.rows[0] as { t: string | null };
  });
  assert.equal(seen.t, null);
});

test('drop() removes the database, even with open connections, and is idempotent', async () => {
  const db = await createTestDatabase('drop');
  assert.equal(await databaseExists(db.name), true);

  // A connection left open by a sloppy test must not block the drop.
  const straggler = new (await import('pg')).default.Client({ connectionString: db.url });
  straggler.on('error', () => undefined); // it gets terminated
  await straggler.connect();
  await withClient(db.url, (c) => c.query('CREATE TABLE doomed (id int)'));

  await db.drop();
  assert.equal(await databaseExists(db.name), false);
  await db.drop(); // second call is a no-op
  await straggler.end().catch(() => undefined);
});
