/**
 * The poison-run breaker (DESIGN §9) with real processes: a run whose worker process is SIGKILLed mid-step
 * CAIRN_MAX_ABNORMAL_ACTIVATIONS times in a row is paused with a reason naming the cause (GetRun through the SDK
 * and plain fetch, ExplainRun, a run_paused history entry); a live worker that loaded its workflow no longer
 * claims it; ResumeRun (plain fetch) lets it try again with a fresh count, and it completes once fixed. At the
 * store level: a normal end between two lapses breaks the streak.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import type { CairnServer } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import { type Database, openDatabase } from "../../server/store/database.js";
import { claimDueRuns, poisonPauseReason, releaseRun, requeueExpiredLeases } from "../../server/store/runs/lease.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

const limit = 3;
let observer: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;
let store: Database;
const markerDir = mkdtempSync(join(tmpdir(), "cairn-poison-"));

beforeAll(async () => {
  const database = await createTestDatabase("poison_run");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  // The observer has not loaded the poison workflow: it never claims it, but its heartbeat (lease / 3) sweeps
  // lapsed leases, so it is the process that requeues (and finally pauses) the run after each kill.
  ({ server: observer } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/wait-workflows",
    CAIRN_POLL_INTERVAL_MS: "50",
    CAIRN_LEASE_MS: "1500",
    CAIRN_MAX_ABNORMAL_ACTIVATIONS: String(limit),
  }));
  sdk = createCairnClient({ baseUrl: observer.url });
  store = await openDatabase({ url: database.url, dataDir: join(tmpdir(), "cairn-unused") });
}, 60_000);

afterAll(async () => {
  await stopAllServerProcesses();
  await observer?.close();
  await store?.close();
  await dropDatabase?.();
  rmSync(markerDir, { recursive: true, force: true });
});

const row = (runId: string) =>
  withClient(databaseUrl, async (db) => {
    const run = (await db.query("select status, activation_count, abnormal_activations, abnormal_streak, lease_owner from runs where id = $1", [runId])).rows[0];
    const entries = (await db.query("select kind, name, error from journal_entries where run_id = $1 order by sequence", [runId])).rows;
    return { ...run, entries } as { status: string; activation_count: number; abnormal_activations: number; abnormal_streak: number; lease_owner: string | null; entries: { kind: string; name: string; error: { message?: string } | null }[] };
  });

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function connectJson(method: string, body: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`${observer.url}/cairn.v1.WorkflowService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

const startWorker = () =>
  startServerProcess({
    databaseUrl,
    workflowDirs: "test/fixtures/poison-workflows",
    env: { CAIRN_MAX_ABNORMAL_ACTIVATIONS: String(limit) },
  });

test("CAIRN_MAX_ABNORMAL_ACTIVATIONS defaults to 5", () => {
  assert.equal(loadConfig({}).maxAbnormalActivations, 5);
  assert.equal(loadConfig({ CAIRN_MAX_ABNORMAL_ACTIVATIONS: "2" }).maxAbnormalActivations, 2);
  assert.throws(() => loadConfig({ CAIRN_MAX_ABNORMAL_ACTIVATIONS: "0" }), /CAIRN_MAX_ABNORMAL_ACTIVATIONS/);
});

test("killed mid-step N times in a row, the run is paused with the cause; a live worker leaves it; ResumeRun lets it finish", async () => {
  const marker = join(markerDir, `hang-${randomUUID()}`);
  writeFileSync(marker, "");
  let runId = "";
  for (let activation = 1; activation <= limit; activation++) {
    const worker = await startWorker();
    // Created through a worker: the observer has not loaded the workflow and CreateRun checks the name.
    if (activation === 1) ({ runId } = await createCairnClient({ baseUrl: worker.url }).createRun("hangs_while_marked", { marker }));
    // Mid-activation: claimed by this worker, the first step journaled, the second hanging.
    await waitFor(`activation ${activation} inside its hanging step`, async () => {
      const r = await row(runId);
      return r.status === "running" && r.activation_count === activation && r.lease_owner === worker.owner && r.entries.some((e) => e.name === "before") ? r : undefined;
    });
    worker.kill("SIGKILL");
    await worker.exited;
    const after = await waitFor(`the lapse of activation ${activation} swept`, async () => {
      const r = await row(runId);
      return r.abnormal_activations === activation && r.lease_owner === null ? r : undefined;
    });
    assert.equal(after.abnormal_streak, activation);
    assert.equal(after.status, activation < limit ? "queued" : "paused", `after kill ${activation}`);
  }

  const reason = poisonPauseReason(limit);
  assert.match(reason, /^paused after 3 abnormal activations in a row: lease lapsed \(holder crashed or hung\)/);
  const viaSdk = await sdk.getRun(runId);
  assert.equal(viaSdk.status, "paused");
  const viaFetch = await connectJson("GetRun", { runId });
  assert.equal(viaFetch.status, 200);
  assert.equal(viaFetch.json.run.status, "RUN_STATUS_PAUSED");
  const explainedViaFetch = await connectJson("ExplainRun", { runId });
  assert.equal(explainedViaFetch.json.pauseReason, reason);
  const explained = await sdk.explainRun(runId);
  assert.equal(explained.pauseReason, reason);
  assert.equal(explained.abnormalActivations, limit);
  assert.ok(explained.lines.some((line) => line.includes(reason)), explained.lines.join("\n"));
  const history = [];
  for await (const entry of sdk.getRunHistory(runId)) history.push(entry);
  const pausedEntries = history.filter((e) => e.kind === "run_paused");
  assert.equal(pausedEntries.length, 1);
  assert.equal(pausedEntries[0]?.error?.message, reason);

  // A worker that loaded the workflow stays up for several polls and heartbeats and does not claim it.
  const bystander = await startWorker();
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const untouched = await row(runId);
  assert.equal(untouched.status, "paused");
  assert.equal(untouched.activation_count, limit);

  // The fix ships (the marker goes); ResumeRun through plain fetch; the run finishes with a fresh count.
  rmSync(marker);
  const resumed = await connectJson("ResumeRun", { runId, reason: "fixed the hang" });
  assert.equal(resumed.status, 200, JSON.stringify(resumed.json));
  assert.equal(resumed.json.run.status, "RUN_STATUS_QUEUED");
  assert.equal((await row(runId)).abnormal_streak, 0);
  assert.deepEqual(await sdk.waitForResult(runId, { timeoutMs: 20_000 }), { before: "ok", during: "fixed" });
  const done = await row(runId);
  assert.equal(done.status, "completed");
  assert.equal(done.activation_count, limit + 1);
  assert.deepEqual(
    done.entries.filter((e) => e.name === "").map((e) => e.kind),
    ["run_paused", "run_resumed", "run_completed"],
  );
  bystander.kill("SIGTERM");
  await bystander.exited;
}, 120_000);

test("an activation that ends normally between two lapses breaks the streak (store level)", async () => {
  // The observer's heartbeat sweeps lapsed leases too: stopped, so only this test requeues (the last test of the file).
  await observer.close();
  const { db } = store;
  const expire = (runId: string) => withClient(databaseUrl, (c) => c.query("update runs set lease_expires_at = now() - interval '1 second' where id = $1", [runId]));
  const run = { id: randomUUID() };
  await withClient(databaseUrl, (c) => c.query("insert into runs (id, workflow_name, status, input) values ($1, 'streak_probe', 'queued', '{}')", [run.id]));
  const claim = async () => {
    const [claimed] = await claimDueRuns(db, "A", 60_000, 10, ["streak_probe"]);
    assert.equal(claimed?.id, run.id);
    return claimed;
  };
  // Lapse, lapse: a streak of 2, one short of the limit of 3.
  for (let i = 1; i <= 2; i++) {
    await claim();
    await expire(run.id);
    assert.deepEqual(await requeueExpiredLeases(db, 3), { requeued: [run.id], paused: [] });
    assert.equal((await row(run.id)).abnormal_streak, i);
  }
  // An activation handed back normally (graceful shutdown), then another lapse: the streak starts again at 1.
  const handedBack = await claim();
  await releaseRun(db, { runId: run.id, owner: "A", epoch: handedBack.leaseEpoch });
  await claim();
  await expire(run.id);
  assert.deepEqual(await requeueExpiredLeases(db, 3), { requeued: [run.id], paused: [] });
  const r = await row(run.id);
  assert.equal(r.abnormal_streak, 1);
  assert.equal(r.abnormal_activations, 3);
  assert.equal(r.status, "queued");
  // Two more in a row reach the limit: paused, with one run_paused entry.
  for (let i = 2; i <= 3; i++) {
    await claim();
    await expire(run.id);
    await requeueExpiredLeases(db, 3);
  }
  const paused = await row(run.id);
  assert.equal(paused.status, "paused");
  assert.equal(paused.abnormal_streak, 3);
  assert.deepEqual(paused.entries.map((e) => e.kind), ["run_paused"]);
  assert.equal(paused.entries[0]?.error?.message, poisonPauseReason(3));
  assert.deepEqual(await claimDueRuns(db, "A", 60_000, 10, ["streak_probe"]), []);
});
