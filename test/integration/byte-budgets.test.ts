/**
 * Byte budgets on PostgreSQL: a GetRunHistory page stops at CAIRN_MAX_HISTORY_PAGE_BYTES (fewer entries than asked
 * for, has_more set; plain fetch), at least one entry per page even when that one is larger, and the SDK's paging
 * still reads every entry once. A run whose journal would pass CAIRN_MAX_JOURNAL_BYTES fails with an error naming
 * the setting, and the write that would have passed it is not in the journal. The shared WatchRun window of a run
 * with large results holds at most its byte budget, and a watcher from the start still gets every entry.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import type { CairnServer } from "../../server/app.js";
import { RunTail, windowBytes } from "../../server/runs/run-tail.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

const pageBytes = 250_000;
let server: CairnServer;
let capped: CairnServer;
let sdk: CairnClient;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("byte_budgets");
  dropDatabase = database.drop;
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/budget-workflows",
    CAIRN_MAX_HISTORY_PAGE_BYTES: String(pageBytes),
  }));
  sdk = createCairnClient({ baseUrl: server.url });
  // A second database: the capped server must not claim the first one's runs.
  const second = await createTestDatabase("journal_budget");
  cleanups.push(second.drop);
  ({ server: capped } = await startTestServer({
    DATABASE_URL: second.url,
    WORKFLOW_DIRS: "test/fixtures/budget-workflows",
    CAIRN_MAX_JOURNAL_BYTES: "250000",
  }));
  databaseUrl = second.url;
});

const cleanups: (() => Promise<void>)[] = [];
let databaseUrl: string;

afterAll(async () => {
  await server?.close();
  await capped?.close();
  await dropDatabase?.();
  for (const cleanup of cleanups) await cleanup();
});

async function historyPage(runId: string, afterSequence: number): Promise<{ entries: { sequence: string; kind: string; name?: string; result?: unknown }[]; hasMore?: boolean }> {
  const response = await fetch(`${server.url}/cairn.v1.WorkflowService/GetRunHistory`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ runId, afterSequence: String(afterSequence), pageSize: 100 }),
  });
  assert.equal(response.status, 200);
  return (await response.json()) as never;
}

test("history pages are bounded by bytes: fewer entries with has_more; the SDK still reads them all", async () => {
  const { runId } = await sdk.createRun("big_results", { count: 10, bytes: 100_000 });
  assert.equal(await sdk.waitForResult(runId, { timeoutMs: 20_000 }), "done");

  const seen: string[] = [];
  let after = 0;
  let pages = 0;
  for (;;) {
    const page = await historyPage(runId, after);
    pages++;
    const bigOnes = page.entries.filter((e) => e.name?.startsWith("big-"));
    // 100,000-character results (100,002 bytes of JSON): two fit in 250,000 bytes, a third does not.
    assert.ok(bigOnes.length <= 2, `page ${pages} carried ${bigOnes.length} large entries`);
    assert.ok(page.entries.length >= 1);
    seen.push(...page.entries.map((e) => e.sequence));
    after = Number(page.entries.at(-1)?.sequence);
    if (!page.hasMore) break;
    assert.ok(pages < 50);
  }
  assert.ok(pages >= 5, `only ${pages} pages`);
  const all = [];
  for await (const entry of sdk.getRunHistory(runId, { pageSize: 100 })) all.push(entry);
  assert.deepEqual(all.map((e) => String(e.sequence)), seen);
  assert.equal(all.filter((e) => e.name.startsWith("big-") && e.kind === "step_completed").length, 10);
});

test("an entry larger than the page budget still comes, one per page", async () => {
  const { runId } = await sdk.createRun("big_results", { count: 2, bytes: 300_000 });
  assert.equal(await sdk.waitForResult(runId, { timeoutMs: 20_000 }), "done");
  let after = 0;
  const bigPerPage: number[] = [];
  for (let i = 0; i < 20; i++) {
    const page = await historyPage(runId, after);
    bigPerPage.push(page.entries.filter((e) => e.name?.startsWith("big-")).length);
    after = Number(page.entries.at(-1)?.sequence);
    if (!page.hasMore) break;
  }
  assert.equal(bigPerPage.reduce((a, b) => a + b, 0), 2);
  assert.ok(bigPerPage.every((n) => n <= 1), JSON.stringify(bigPerPage));
});

test("a run whose journal would pass CAIRN_MAX_JOURNAL_BYTES fails naming the setting; the write past it is not journaled", async () => {
  const cappedSdk = createCairnClient({ baseUrl: capped.url });
  const { runId } = await cappedSdk.createRun("big_results", { count: 10, bytes: 100_000 });
  await assert.rejects(cappedSdk.waitForResult(runId, { timeoutMs: 20_000 }), /CAIRN_MAX_JOURNAL_BYTES/);
  const response = await fetch(`${capped.url}/cairn.v1.WorkflowService/GetRun`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ runId }),
  });
  const { run } = (await response.json()) as { run: { status: string; error: { name: string; message: string } } };
  assert.equal(run.status, "RUN_STATUS_FAILED");
  assert.equal(run.error.name, "JournalTooLargeError");
  assert.match(run.error.message, /past the limit of 250000 bytes \(CAIRN_MAX_JOURNAL_BYTES\)/);
  const kinds = await withClient(databaseUrl, async (c) =>
    (await c.query("select kind, name from journal_entries where run_id = $1 order by sequence", [runId])).rows as { kind: string; name: string }[],
  );
  // Two 100,002-byte results fit in 250,000 bytes; the third would not, and is not there.
  assert.deepEqual(kinds.filter((k) => k.kind === "step_completed").map((k) => k.name), ["big-0", "big-1"]);
  assert.equal(kinds.at(-1)?.kind, "run_failed");
});

test("the shared watch window is bounded by bytes; a watcher from the start still receives every entry in order", async () => {
  const { runId } = await sdk.createRun("big_results", { count: 12, bytes: 1_000_000 });
  assert.equal(await sdk.waitForResult(runId, { timeoutMs: 60_000 }), "done");
  const tail = new RunTail(server.database.db, "default", runId);
  await tail.refresh();
  const big = tail.window.filter((e) => e.kind === "step_completed" && e.name.startsWith("big-"));
  assert.ok(tail.bytesHeld <= windowBytes, `window holds ${tail.bytesHeld} bytes`);
  assert.ok(big.length >= 1 && big.length <= 8, `window holds ${big.length} of 12 large entries`);
  assert.equal(tail.window.at(-1)?.kind, "run_completed");
  assert.equal(tail.window.at(-1)?.sequence, tail.lastSequence);

  const names: string[] = [];
  const sequences: number[] = [];
  for await (const update of sdk.watchRun(runId)) {
    if (update.type !== "entry") continue;
    sequences.push(Number(update.entry.sequence));
    if (update.entry.name.startsWith("big-")) names.push(update.entry.name);
  }
  assert.deepEqual(names, Array.from({ length: 12 }, (_, i) => `big-${i}`));
  assert.deepEqual(sequences, Array.from({ length: sequences.length }, (_, i) => i + 1));
}, 90_000);
