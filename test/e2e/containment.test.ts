/**
 * Workflow code is contained (a real server process on PostgreSQL, fixtures in test/fixtures/containment-workflows):
 * while one run spins in its handler and another in a step, health answers within 1 s the whole time and 100 other
 * runs on the same process complete; each spinning activation ends within CAIRN_BLOCKED_CODE_MS + 1 s and, after
 * CAIRN_MAX_ABNORMAL_ACTIVATIONS of them, the run is PAUSED with a reason naming the cause. The same for an unhandled
 * rejection and for a memory blow-up, with the process still the same pid. A step that burns 1.5 s of CPU against a
 * 100 ms timeout is not completed.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

const blockedMs = 1000;
const limit = 3;
let server: ServerProcess;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("containment");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  server = await startServerProcess({
    databaseUrl,
    workflowDirs: "test/fixtures/containment-workflows",
    env: {
      CAIRN_BLOCKED_CODE_MS: String(blockedMs),
      CAIRN_MAX_ABNORMAL_ACTIVATIONS: String(limit),
      CAIRN_WORKFLOW_HEAP_MB: "64",
      CAIRN_WORKFLOW_THREADS: "2",
      // Long enough that no lease lapses during the test: every abnormal end counted here is the watchdog's.
      CAIRN_LEASE_MS: "10000",
    },
  });
  sdk = createCairnClient({ baseUrl: server.url });
}, 60_000);

afterAll(async () => {
  await stopAllServerProcesses();
  await dropDatabase?.();
});

interface Row {
  status: string;
  activation_count: number;
  abnormal_activations: number;
  abnormal_streak: number;
}

const row = (runId: string) =>
  withClient(databaseUrl, async (db) => (await db.query("select status, activation_count, abnormal_activations, abnormal_streak from runs where id = $1", [runId])).rows[0] as Row);

/**
 * Follows a poison run until the breaker pauses it, timing each activation from the moment it is seen running to
 * the moment its abnormal end is counted; resolves the longest.
 */
async function followUntilPaused(runId: string, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const startedAt = new Map<number, number>();
  let longest = 0;
  for (;;) {
    const r = await row(runId);
    const now = Date.now();
    if (r.status === "running" && !startedAt.has(r.activation_count)) startedAt.set(r.activation_count, now);
    for (const [activation, at] of startedAt) {
      if (r.abnormal_activations >= activation) {
        longest = Math.max(longest, now - at);
        startedAt.delete(activation);
      }
    }
    if (r.status === "paused") return longest;
    if (now > deadline) throw new Error(`run ${runId} not paused in time: ${JSON.stringify(r)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Health probes every 100 ms while `during` runs; resolves the slowest answer. */
async function probingHealth<T>(during: () => Promise<T>): Promise<{ result: T; slowestMs: number; probes: number }> {
  let slowestMs = 0;
  let probes = 0;
  let stop = false;
  const probing = (async () => {
    while (!stop) {
      const sent = Date.now();
      const response = await fetch(`${server.url}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(response.status, 200);
      assert.equal(((await response.json()) as { status?: string }).status, "SERVING");
      slowestMs = Math.max(slowestMs, Date.now() - sent);
      probes++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    const result = await during();
    return { result, slowestMs, probes };
  } finally {
    stop = true;
    await probing;
  }
}

async function pauseReason(runId: string): Promise<string> {
  const info = await sdk.getRun(runId);
  assert.equal(info.status, "paused");
  return (await sdk.explainRun(runId)).pauseReason ?? "";
}

test("a spinning handler and a spinning step: health answers, 100 other runs complete, both runs end paused as blocked", async () => {
  const pid = server.pid;
  const inHandler = await sdk.createRun("spins_in_handler", {});
  const inStep = await sdk.createRun("spins_in_step", {});
  const { result, slowestMs, probes } = await probingHealth(async () => {
    const others = await Promise.all(Array.from({ length: 100 }, (_, n) => sdk.createRun("quick", { n })));
    const outputs = await Promise.all(others.map((run) => sdk.waitForResult(run.runId, { timeoutMs: 60_000 })));
    const longest = await Promise.all([followUntilPaused(inHandler.runId), followUntilPaused(inStep.runId)]);
    return { outputs, longest };
  });
  assert.deepEqual(result.outputs, Array.from({ length: 100 }, (_, n) => ({ doubled: n * 2 })));
  assert.ok(probes >= 5, `only ${probes} health probes`);
  assert.ok(slowestMs < 1000, `health took ${slowestMs} ms`);
  for (const longest of result.longest) assert.ok(longest <= blockedMs + 1000, `a spinning activation took ${longest} ms to end`);
  assert.match(await pauseReason(inHandler.runId), /paused after 3 abnormal activations in a row: the last blocked its thread for more than 1000 ms \(CAIRN_BLOCKED_CODE_MS\) in its handler/);
  assert.match(await pauseReason(inStep.runId), /the last blocked its thread for more than 1000 ms \(CAIRN_BLOCKED_CODE_MS\) in step "spin"/);
  for (const runId of [inHandler.runId, inStep.runId]) assert.equal((await row(runId)).abnormal_streak, limit);
  // Runs that shared a stopped thread were re-queued, never blamed.
  const blamed = await withClient(databaseUrl, async (db) => (await db.query("select count(*)::int as n from runs where workflow_name = 'quick' and abnormal_activations > 0")).rows[0].n as number);
  assert.equal(blamed, 0);
  assert.equal(server.pid, pid);
  assert.equal(server.hasExited(), false);
}, 120_000);

test("an unhandled rejection in a step ends only its activation; after the limit the run is paused naming it", async () => {
  const run = await sdk.createRun("leaves_rejection", {});
  const { result: others } = await probingHealth(async () => {
    const quick = await Promise.all(Array.from({ length: 20 }, (_, n) => sdk.createRun("quick", { n })));
    await followUntilPaused(run.runId);
    return Promise.all(quick.map((q) => sdk.waitForResult(q.runId, { timeoutMs: 30_000 })));
  });
  assert.equal(others.length, 20);
  assert.match(await pauseReason(run.runId), /the last crashed its activation with an unhandled rejection \(Error: nobody handles this\)/);
  assert.equal(server.hasExited(), false);
}, 60_000);

test("an exception thrown where nothing catches it (a timer in a step) ends only its activation, likewise", async () => {
  const run = await sdk.createRun("throws_in_timer", {});
  const bystander = await sdk.createRun("quick", { n: 7 });
  await followUntilPaused(run.runId);
  assert.match(await pauseReason(run.runId), /the last crashed its activation with an uncaught exception \(Error: thrown where nothing catches it\)/);
  assert.deepEqual(await sdk.waitForResult(bystander.runId, { timeoutMs: 30_000 }), { doubled: 14 });
  assert.equal(server.hasExited(), false);
}, 60_000);

test("a memory blow-up ends only its activation; after the limit the run is paused naming it; the process stays up", async () => {
  const run = await sdk.createRun("blows_memory", {});
  await followUntilPaused(run.runId, 60_000);
  assert.match(await pauseReason(run.runId), /the last ran its thread out of memory \(over 64 MB, CAIRN_WORKFLOW_HEAP_MB\)/);
  assert.equal(server.hasExited(), false);
  // The replaced threads still run workflows.
  assert.deepEqual(await sdk.waitForResult((await sdk.createRun("quick", { n: 4 })).runId, { timeoutMs: 30_000 }), { doubled: 8 });
}, 90_000);

test("a step burning 1.5 s of CPU against a 100 ms timeout is a timed-out failure, not a completion", async () => {
  const run = await sdk.createRun("burns_past_timeout", { burnMs: 1500 });
  await assert.rejects(sdk.waitForResult(run.runId, { timeoutMs: 30_000 }), /timed out after 100 ms/);
  const info = await sdk.getRun(run.runId);
  assert.equal(info.status, "failed");
}, 60_000);

test("a step that never yields is stopped at its timeout, not the watchdog's limit, and its retry policy decides", async () => {
  const run = await sdk.createRun("spins_past_timeout", {});
  const started = Date.now();
  await assert.rejects(sdk.waitForResult(run.runId, { timeoutMs: 30_000 }), /step "spin" attempt 2 timed out after 200 ms/);
  const history = await withClient(databaseUrl, async (db) => (await db.query("select kind, attempt from journal_entries where run_id = $1 order by sequence", [run.runId])).rows as { kind: string; attempt: number }[]);
  assert.deepEqual(
    history.map((e) => `${e.kind}:${e.attempt}`),
    ["step_attempt_failed:1", "step_failed:2", "run_failed:1"],
  );
  // Two attempts, each stopped well before CAIRN_BLOCKED_CODE_MS, and nothing counted against the run.
  assert.ok(Date.now() - started < 2 * blockedMs + 1000, `took ${Date.now() - started} ms`);
  assert.equal((await row(run.runId)).abnormal_activations, 0);
}, 60_000);

test("two poison runs sharing the only thread cannot shield each other from the breaker", async () => {
  const single = await startServerProcess({
    databaseUrl,
    workflowDirs: "test/fixtures/containment-workflows",
    name: "one-thread",
    env: { CAIRN_BLOCKED_CODE_MS: String(blockedMs), CAIRN_MAX_ABNORMAL_ACTIVATIONS: String(limit), CAIRN_WORKFLOW_THREADS: "1", CAIRN_LEASE_MS: "10000" },
  });
  const client = createCairnClient({ baseUrl: single.url });
  // Stop the first server claiming: this pair must share the one thread of the second.
  server.kill("SIGSTOP");
  try {
    const a = await client.createRun("spins_in_step", {});
    const b = await client.createRun("spins_in_handler", {});
    await Promise.all([followUntilPaused(a.runId, 40_000), followUntilPaused(b.runId, 40_000)]);
    for (const runId of [a.runId, b.runId]) assert.equal((await row(runId)).abnormal_activations, limit);
  } finally {
    server.kill("SIGCONT");
    // It would claim the next tests' runs.
    single.kill("SIGTERM");
    await single.exited;
  }
}, 90_000);

test("SIGTERM while a run spins: the process still exits 0, within the grace period plus CAIRN_BLOCKED_CODE_MS", async () => {
  const doomed = await startServerProcess({
    databaseUrl,
    workflowDirs: "test/fixtures/containment-workflows",
    name: "sigterm",
    env: { CAIRN_BLOCKED_CODE_MS: String(blockedMs), CAIRN_SHUTDOWN_GRACE_MS: "500", CAIRN_LEASE_MS: "10000" },
  });
  // Keep the other server from claiming the run: it must be spinning on the one we stop.
  server.kill("SIGSTOP");
  try {
    const run = await createCairnClient({ baseUrl: doomed.url }).createRun("spins_in_step", {});
    await waitForRow(run.runId, (r) => r.status === "running" && r.activation_count === 1);
    const sent = Date.now();
    doomed.kill("SIGTERM");
    const exit = await doomed.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - sent < 500 + blockedMs + 2000, `exited ${Date.now() - sent} ms after SIGTERM`);
    // The spinning activation was ended by the watchdog and counted; the run is back in the queue, not left leased.
    const after = await row(run.runId);
    assert.equal(after.status, "queued");
    assert.equal(after.abnormal_activations, 1);
  } finally {
    server.kill("SIGCONT");
  }
}, 60_000);

async function waitForRow(runId: string, ok: (r: Row) => boolean, timeoutMs = 20_000): Promise<Row> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await row(runId);
    if (r && ok(r)) return r;
    if (Date.now() > deadline) throw new Error(`run ${runId}: ${JSON.stringify(r)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
