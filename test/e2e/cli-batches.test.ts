// The CLI's bulk forms against a real server process: `cairn runs pause|resume|cancel` with filter flags and no
// run id start a batch (--dry-run counts, --no-wait returns the id, otherwise it follows to the end);
// `cairn batches get|list`; `cairn runs retry` (not available yet: every run listed as failed, exit 1); usage errors.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type BatchInfo, type CairnClient } from "../../sdk/index.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { repoRoot, type ServerProcess, startServerProcess, stopAllServerProcesses, waitFor } from "../support/server-process.js";

let database: TestDatabase;
let server: ServerProcess;
let sdk: CairnClient;

beforeAll(async () => {
  database = await createTestDatabase("cli_batches");
  server = await startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/wait-workflows", name: "cli-batches" });
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await stopAllServerProcesses();
  await database?.drop();
});

function cairn(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string | undefined> = { ...process.env, CAIRN_API_URL: server.url };
  delete env.CAIRN_API_KEY;
  const child = spawn(process.execPath, ["cli/cairn.mjs", ...args], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise((resolve) =>
    child.once("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
}

const statuses = (ids: string[]) =>
  withClient(database.url, async (c) =>
    Object.fromEntries((await c.query("select status, count(*)::int as n from runs where id = any($1) group by status", [ids])).rows.map((r) => [r.status, r.n])),
  );

test("runs pause / resume / cancel with filter flags run batches; batches get and list show them", async () => {
  const ids = await Promise.all(
    Array.from({ length: 12 }, async () => (await sdk.createRun("waiter", { type: "cli.never", key: "k" }, { eagerStart: true, metadata: { cli: "bulk" } })).runId),
  );
  const other = (await sdk.createRun("waiter", { type: "cli.never", key: "k" }, { eagerStart: true, metadata: { cli: "other" } })).runId;
  await waitFor(async () => ((await statuses([...ids, other])).waiting === 13 ? true : undefined), 20_000, () => "runs did not park");

  const dry = await cairn("runs", "pause", "--meta", "cli=bulk", "--dry-run");
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^12 runs match; pause would apply to each \(dry run, nothing changed\)/);
  assert.equal(dry.stdout.trim().split("\n").length, 13, "the count line and 12 sample ids");
  assert.deepEqual(await statuses(ids), { waiting: 12 });

  const paused = await cairn("runs", "pause", "--meta", "cli=bulk", "--reason", "cli test");
  assert.equal(paused.code, 0, paused.stderr);
  assert.match(paused.stdout, /status {5}completed/);
  assert.match(paused.stdout, /12 selected, 12 processed \(12 done, 0 skipped, 0 failed\)/);
  assert.deepEqual(await statuses(ids), { paused: 12 });

  const noWait = await cairn("runs", "resume", "--meta", "cli=bulk", "--workflow", "waiter", "--no-wait", "--json");
  assert.equal(noWait.code, 0, noWait.stderr);
  const started = JSON.parse(noWait.stdout) as BatchInfo;
  assert.equal(started.selectedCount, 12);
  await waitFor(async () => ((await sdk.getBatch(started.batchId)).status === "completed" ? true : undefined), 20_000, () => "resume batch did not complete");
  const got = await cairn("batches", "get", started.batchId, "--json");
  assert.equal(got.code, 0, got.stderr);
  assert.deepEqual((({ operation, status, processedCount }) => ({ operation, status, processedCount }))(JSON.parse(got.stdout) as BatchInfo), {
    operation: "resume",
    status: "completed",
    processedCount: 12,
  });
  await waitFor(async () => ((await statuses(ids)).waiting === 12 ? true : undefined), 20_000, () => "resumed runs did not park again");

  const cancelled = await cairn("runs", "cancel", "--meta", "cli=bulk");
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.deepEqual(await statuses(ids), { cancelled: 12 });
  assert.deepEqual(await statuses([other]), { waiting: 1 });

  // Cancelled runs cannot be retried: each is a listed failure and the exit code says so.
  const retried = await cairn("runs", "retry", "--meta", "cli=bulk");
  assert.equal(retried.code, 1, retried.stdout + retried.stderr);
  assert.match(retried.stdout, /12 failed/);
  assert.match(retried.stdout, /only a FAILED run can be retried/);

  const listed = await cairn("batches", "list");
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stdout.trim().split("\n").length, 1 + 4, "a header and the four batches");
  assert.match(listed.stdout, new RegExp(started.batchId));
});

test("usage errors: neither run id nor filter, both, and an unknown batch", async () => {
  const none = await cairn("runs", "cancel");
  assert.equal(none.code, 3);
  assert.match(none.stderr, /give a <run-id>, or filter flags/);
  const both = await cairn("runs", "pause", "00000000-0000-4000-8000-000000000000", "--meta", "a=b");
  assert.equal(both.code, 3);
  assert.match(both.stderr, /not both/);
  const unknown = await cairn("batches", "get", "00000000-0000-4000-8000-000000000000");
  assert.equal(unknown.code, 4);
  assert.match(unknown.stderr, /not found/);
  const [row] = await withClient(database.url, async (c) => (await c.query("select count(*)::int as n from batches")).rows as { n: number }[]);
  const before = row?.n;
  const again = await cairn("runs", "resume", "--dry-run");
  assert.equal(again.code, 3);
  const [after] = await withClient(database.url, async (c) => (await c.query("select count(*)::int as n from batches")).rows as { n: number }[]);
  assert.equal(after?.n, before);
});
