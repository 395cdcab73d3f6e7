/**
 * Requests without a valid key cost no database work beyond a bounded negative cache (DESIGN §9), on PostgreSQL:
 * 200 requests with random bad keys from one peer cost at most the failed-auth burst in key lookups (the rest are
 * RESOURCE_EXHAUSTED with a retry hint, before any lookup), while a valid key from the same peer keeps working;
 * with the limit off, one unknown key id presented again and again costs one lookup (the negative cache).
 * Key lookups are counted by wrapping the server's pool: every query that reads `api_keys`.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import type pg from "pg";
import { createCairnClient } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { ownClient } from "../../server/store/database.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

const burst = 10;
let limited: CairnServer;
let unlimited: CairnServer;
let dropDatabase: () => Promise<void>;
const lookups = new Map<CairnServer, number>();

/** Counts the queries on the server's pool that read api_keys (the key cache's lookups). */
function countKeyLookups(server: CairnServer): void {
  lookups.set(server, 0);
  const pool = ownClient(server.database.db) as pg.Pool;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const first = args[0] as string | { text?: string };
    const text = typeof first === "string" ? first : (first?.text ?? "");
    if (/from "api_keys"/i.test(text)) lookups.set(server, (lookups.get(server) ?? 0) + 1);
    return query(...args);
  };
}

beforeAll(async () => {
  const database = await createTestDatabase("auth_flood");
  dropDatabase = database.drop;
  const env = { DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_AUTH: "keys" };
  ({ server: limited } = await startTestServer({ ...env, CAIRN_AUTH_FAILURE_RPS: "0.1", CAIRN_AUTH_FAILURE_BURST: String(burst) }));
  ({ server: unlimited } = await startTestServer({ ...env, CAIRN_AUTH_FAILURE_RPS: "0" }));
  countKeyLookups(limited);
  countKeyLookups(unlimited);
});

afterAll(async () => {
  await limited?.close();
  await unlimited?.close();
  await dropDatabase?.();
});

async function newKey(): Promise<string> {
  const generated = generateApiKey();
  await insertApiKey(limited.database.db, { id: generated.id, namespace: "default", role: "client", secretHash: generated.secretHash, name: "flood test" });
  return generated.key;
}

async function drain(items: AsyncIterable<unknown>): Promise<number> {
  let count = 0;
  for await (const _ of items) count++;
  return count;
}

/** A well-formed key whose id no key has. */
function randomBadKey(): string {
  return generateApiKey().key.replace(/^cairn_[^_]+_/, `cairn_${randomBytes(8).toString("hex")}_`);
}

async function listRuns(server: CairnServer, key: string): Promise<Response> {
  return fetch(`${server.url}/cairn.v1.WorkflowService/ListRuns`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1", "x-api-key": key },
    body: "{}",
  });
}

test("200 random bad keys cost at most the failed-auth burst in key lookups; the rest are RESOURCE_EXHAUSTED with a retry hint; a cached valid key still works", async () => {
  const good = await newKey();
  const sdk = createCairnClient({ baseUrl: limited.url, apiKey: good });
  await drain(sdk.listRuns()); // caches the key
  const before = lookups.get(limited) ?? 0;

  const codes = new Map<string, number>();
  let retryHint: string | null = null;
  for (let i = 0; i < 200; i++) {
    const response = await listRuns(limited, randomBadKey());
    const body = (await response.json()) as { code: string; message: string };
    codes.set(body.code, (codes.get(body.code) ?? 0) + 1);
    if (body.code === "resource_exhausted") {
      assert.equal(response.status, 429);
      assert.match(body.message, /too many failed authentications from 127\.0\.0\.1 .*CAIRN_AUTH_FAILURE_RPS=0\.1/);
      retryHint ??= response.headers.get("retry-after-ms");
    }
  }
  const spent = (lookups.get(limited) ?? 0) - before;
  // The burst, plus what refilled (one per 10 s) while the flood ran.
  assert.ok(spent >= burst, `at least the burst went to the database: ${spent}`);
  assert.ok(spent <= burst + 1, `key lookups for 200 bad keys: ${spent}`);
  assert.ok((codes.get("unauthenticated") ?? 0) <= burst + 1, JSON.stringify([...codes]));
  assert.ok((codes.get("resource_exhausted") ?? 0) >= 200 - burst - 1, JSON.stringify([...codes]));
  assert.ok(retryHint !== null && Number(retryHint) > 0, `retry-after-ms: ${retryHint}`);

  // The peer is over its failure budget, but a key verified from memory is let by, with no lookup.
  const atGood = lookups.get(limited) ?? 0;
  assert.equal(await drain(sdk.listRuns()), 0);
  assert.equal(lookups.get(limited), atGood);
  // An unknown key from this peer is refused before its lookup (SDK sees RESOURCE_EXHAUSTED).
  await assert.rejects(drain(createCairnClient({ baseUrl: limited.url, apiKey: randomBadKey(), retry: false }).listRuns()), (error: unknown) => {
    assert.ok(error instanceof CairnError);
    assert.equal(error.code, Code.ResourceExhausted);
    return true;
  });
  assert.equal(lookups.get(limited), atGood);
});

test("with the limit off, one unknown key id presented 50 times costs one lookup (the negative cache)", async () => {
  const bad = randomBadKey();
  const before = lookups.get(unlimited) ?? 0;
  for (let i = 0; i < 50; i++) {
    const response = await listRuns(unlimited, bad);
    assert.equal(response.status, 401);
  }
  assert.equal((lookups.get(unlimited) ?? 0) - before, 1);
});
