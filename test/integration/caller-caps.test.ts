/**
 * CAIRN_MAX_STREAMS_PER_CALLER on PostgreSQL: a caller holding the limit's worth of WatchRun streams and AwaitRun
 * long polls gets RESOURCE_EXHAUSTED naming the limit for the next one (SDK and plain fetch), another key is not
 * affected, and once one of its streams closes a new one is accepted. In open mode the count is per peer address.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

const limit = 3;
let keyed: CairnServer;
let open: CairnServer;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("caller_caps");
  dropDatabase = database.drop;
  const env = { DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows", CAIRN_MAX_STREAMS_PER_CALLER: String(limit) };
  ({ server: keyed } = await startTestServer({ ...env, CAIRN_AUTH: "keys" }));
  ({ server: open } = await startTestServer(env));
});

afterAll(async () => {
  await keyed?.close();
  await open?.close();
  await dropDatabase?.();
});

async function newKey(): Promise<string> {
  const generated = generateApiKey();
  await insertApiKey(keyed.database.db, { id: generated.id, namespace: "default", role: "client", secretHash: generated.secretHash, name: "caps test" });
  return generated.key;
}

/** A WatchRun stream, open once its first update (the snapshot) arrived; `close` ends it from the client side. */
async function openWatch(sdk: CairnClient, runId: string): Promise<{ close: () => void }> {
  const abort = new AbortController();
  const iterator = sdk.watchRun(runId, { signal: abort.signal, maxReconnects: 0 })[Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.equal(first.done, false);
  // Keep draining in the background so the stream stays healthy until closed.
  void (async () => {
    try {
      for (;;) if ((await iterator.next()).done) return;
    } catch {
      // aborted
    }
  })();
  return { close: () => abort.abort() };
}

async function awaitRunViaFetch(server: CairnServer, runId: string, key?: string): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`${server.url}/cairn.v1.WorkflowService/AwaitRun`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1", ...(key ? { "x-api-key": key } : {}) },
    body: JSON.stringify({ runId, timeout: "0.3s" }),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

async function expectExhausted(call: Promise<unknown>): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof CairnError, String(error));
    assert.equal(error.code, Code.ResourceExhausted);
    assert.match(error.message, new RegExp(`CAIRN_MAX_STREAMS_PER_CALLER=${limit}`));
    return true;
  });
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

test("per key: the limit's worth of streams, then RESOURCE_EXHAUSTED (SDK and fetch); another key is unaffected; closing one frees a slot", async () => {
  const keyA = await newKey();
  const keyB = await newKey();
  const sdkA = createCairnClient({ baseUrl: keyed.url, apiKey: keyA });
  const sdkB = createCairnClient({ baseUrl: keyed.url, apiKey: keyB });
  const { runId } = await sdkA.createRun("waiter", { type: "never.sent", key: "caps" });

  const streams = [];
  for (let i = 0; i < limit; i++) streams.push(await openWatch(sdkA, runId));
  await expectExhausted(openWatch(sdkA, runId));
  const refused = await awaitRunViaFetch(keyed, runId, keyA);
  assert.equal(refused.status, 429);
  assert.equal(refused.json.code, "resource_exhausted");
  assert.match(refused.json.message, /CAIRN_MAX_STREAMS_PER_CALLER=3/);

  // Key B holds nothing: its long poll runs to its own timeout and answers the (still waiting) run.
  const other = await awaitRunViaFetch(keyed, runId, keyB);
  assert.equal(other.status, 200, JSON.stringify(other.json));
  assert.equal(other.json.run.status, "RUN_STATUS_WAITING");
  const watchB = await openWatch(sdkB, runId);

  streams.pop()?.close();
  await settle();
  // The freed slot is taken again, and the one after is refused again.
  streams.push(await openWatch(sdkA, runId));
  await expectExhausted(openWatch(sdkA, runId));

  // Long polls count too, and give their slot back when they answer.
  streams.pop()?.close();
  await settle();
  const polled = await awaitRunViaFetch(keyed, runId, keyA);
  assert.equal(polled.status, 200, JSON.stringify(polled.json));
  streams.push(await openWatch(sdkA, runId));

  for (const stream of [...streams, watchB]) stream.close();
  await settle();
  // Every slot came back: the limit's worth opens again.
  for (let i = 0; i < limit; i++) streams.push(await openWatch(sdkA, runId));
  await expectExhausted(openWatch(sdkA, runId));
  for (const stream of streams) stream.close();
});

test("open mode: counted per peer address", async () => {
  const sdk = createCairnClient({ baseUrl: open.url });
  const { runId } = await sdk.createRun("waiter", { type: "never.sent", key: "caps-open" });
  const streams = [];
  for (let i = 0; i < limit; i++) streams.push(await openWatch(sdk, runId));
  await expectExhausted(openWatch(sdk, runId));
  const refused = await awaitRunViaFetch(open, runId);
  assert.equal(refused.status, 429);
  assert.match(refused.json.message, /peer 127\.0\.0\.1 already has 3 open streams/);
  streams.pop()?.close();
  await settle();
  const polled = await awaitRunViaFetch(open, runId);
  assert.equal(polled.status, 200, JSON.stringify(polled.json));
  for (const stream of streams) stream.close();
});
