/**
 * The pools and the LISTEN connection on PostgreSQL: pooled connections carry CAIRN_DB_STATEMENT_TIMEOUT; with
 * every client of the main pool held, a query fails after CAIRN_DB_ACQUIRE_TIMEOUT instead of queueing forever,
 * and the heartbeat keeps renewing a running run's lease on its own pool; a LISTEN connection that goes deaf
 * (a proxy in between stops forwarding without closing anything) is noticed by its self-check and replaced, so
 * a key revocation is heard again (the key cache's TTL is long enough that only the notice could evict it).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, test } from "vitest";
import { sql } from "drizzle-orm";
import type pg from "pg";
import { createCairnClient } from "../../sdk/client.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { insertApiKey, revokeApiKey } from "../../server/store/api-keys.js";
import { ownClient, queryRows } from "../../server/store/database.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test("statement timeout on pooled connections; acquire timeout on an exhausted pool while the heartbeat renews on its own pool", async () => {
  const database = await createTestDatabase("db_pools");
  cleanups.push(database.drop);
  const { server } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/poison-workflows",
    DATABASE_POOL_SIZE: "2",
    CAIRN_DB_ACQUIRE_TIMEOUT: "300ms",
    CAIRN_DB_STATEMENT_TIMEOUT: "400ms",
    CAIRN_LEASE_MS: "1500",
  });
  cleanups.push(() => server.close());
  const { db, leaseDb } = server.database;

  const [shown] = await queryRows<{ statement_timeout: string }>(db, sql`show statement_timeout`);
  assert.equal(shown?.statement_timeout, "400ms");
  await assert.rejects(db.execute(sql`select pg_sleep(2)`), (error: Error) => /statement timeout/.test(`${error.message} ${(error.cause as Error | undefined)?.message}`));
  const [leaseShown] = await queryRows<{ statement_timeout: string }>(leaseDb, sql`show statement_timeout`);
  assert.equal(leaseShown?.statement_timeout, "400ms");

  // A run inside a step that only a marker file ends: its lease must keep being renewed.
  const markers = mkdtempSync(join(tmpdir(), "cairn-pools-"));
  cleanups.push(() => rmSync(markers, { recursive: true, force: true }));
  const marker = join(markers, "hang");
  writeFileSync(marker, "");
  const sdk = createCairnClient({ baseUrl: server.url });
  const { runId } = await sdk.createRun("hangs_while_marked", { marker });
  const leaseOf = async () =>
    withClient(database.url, async (c) => (await c.query("select status, lease_expires_at from runs where id = $1", [runId])).rows[0] as { status: string; lease_expires_at: Date | null });
  for (let i = 0; (await leaseOf()).status !== "running"; i++) {
    assert.ok(i < 200, "the run never started");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }

  // Every client of the main pool held: a query fails after the acquire timeout instead of waiting without end.
  const pool = ownClient(db) as pg.Pool;
  const held = [await pool.connect(), await pool.connect()];
  try {
    const before = await leaseOf();
    const startedAt = Date.now();
    await assert.rejects(db.execute(sql`select 1`), (error: Error) => /timeout exceeded when trying to connect/.test(`${error.message} ${(error.cause as Error | undefined)?.message}`));
    const waited = Date.now() - startedAt;
    assert.ok(waited >= 250 && waited < 2_000, `failed after ${waited} ms`);
    // The lease pool is untouched, and the heartbeat (every 500 ms) renews through it meanwhile.
    await leaseDb.execute(sql`select 1`);
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    const after = await leaseOf();
    assert.equal(after.status, "running");
    assert.ok(after.lease_expires_at && before.lease_expires_at && after.lease_expires_at > before.lease_expires_at, "the lease was renewed");
    assert.ok(after.lease_expires_at.getTime() > Date.now(), "the lease has not lapsed");
  } finally {
    for (const client of held) client.release();
  }
  rmSync(marker);
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 10_000 }), { before: "ok", during: "fixed" });
}, 30_000);

/** A TCP proxy to PostgreSQL that can silently stop forwarding the connections that issued LISTEN. */
async function freezingProxy(target: URL): Promise<{ port: number; freezeListeners: () => number; server: Server }> {
  const listeners = new Set<{ frozen: boolean }>();
  const server = createServer((inbound: Socket) => {
    const state = { frozen: false };
    const outbound = connect(Number(target.port || 5432), target.hostname);
    inbound.on("data", (chunk) => {
      if (/listen "?cairn/i.test(chunk.toString("latin1"))) listeners.add(state);
      if (!state.frozen) outbound.write(chunk);
    });
    outbound.on("data", (chunk) => {
      if (!state.frozen) inbound.write(chunk);
    });
    const close = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", close).on("close", close);
    outbound.on("error", close).on("close", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    server,
    freezeListeners: () => {
      for (const state of listeners) state.frozen = true;
      const count = listeners.size;
      listeners.clear();
      return count;
    },
  };
}

test("a LISTEN connection that goes deaf is noticed by its self-check and replaced: revocations are heard again", async () => {
  const database = await createTestDatabase("db_listener");
  cleanups.push(database.drop);
  const target = new URL(database.url);
  const proxy = await freezingProxy(target);
  cleanups.push(() => new Promise<void>((resolve) => proxy.server.close(() => resolve())));
  const viaProxy = new URL(database.url);
  viaProxy.hostname = "127.0.0.1";
  viaProxy.port = String(proxy.port);
  const { server } = await startTestServer({
    DATABASE_URL: viaProxy.toString(),
    WORKFLOW_DIRS: "test/fixtures/wait-workflows",
    CAIRN_AUTH: "keys",
    CAIRN_KEY_CACHE_TTL: "10m",
    CAIRN_DB_LISTENER_CHECK: "300ms",
  });
  cleanups.push(() => server.close());
  const key = generateApiKey();
  await insertApiKey(server.database.db, { id: key.id, namespace: "default", role: "client", secretHash: key.secretHash, name: "deaf test" });
  const sdk = createCairnClient({ baseUrl: server.url, apiKey: key.key, retry: false });
  const drain = async () => {
    for await (const _ of sdk.listRuns()) void _;
  };
  await drain(); // cached for ten minutes

  assert.ok(proxy.freezeListeners() >= 1, "the listener connection went through the proxy");
  // Two check intervals to notice, a moment to reconnect and LISTEN again.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  // Revoked with its notice (as `cairn keys revoke` does): only a listener that hears it evicts the cached key.
  assert.ok(await revokeApiKey(server.database.db, key.id));
  await new Promise((resolve) => setTimeout(resolve, 300));
  await assert.rejects(drain(), /revoked/);
}, 30_000);
