/**
 * `cairn deploy check` against a real server with 20 runs in flight (15 of "steady", 5 of "shifting"), each
 * parked on an event after a step that recorded a row in deploy_effects: the breaking code lists exactly the 5
 * "shifting" runs with their first mismatching entry and exits 1; the compatible code exits 0; a folder
 * without one of the workflows lists its runs as unclaimable. Nothing runs: deploy_effects, the journals and
 * the runs are unchanged afterwards.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/index.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { repoRoot, type ServerProcess, startServerProcess, stopAllServerProcesses } from "../support/server-process.js";
import { untilStatus } from "../support/connect-json.js";

const fixtures = "test/fixtures/deploy-check";
let database: TestDatabase;
let server: ServerProcess;
let sdk: CairnClient;
const steady: string[] = [];
const shifting: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase("deploy_check");
  await withClient(database.url, (db) => db.query("create table deploy_effects (step text not null, key text not null)"));
  server = await startServerProcess({ databaseUrl: database.url, workflowDirs: [`${fixtures}/current`], name: "deploy-check-server" });
  sdk = createCairnClient({ baseUrl: server.url });
  for (let i = 0; i < 20; i++) {
    const workflow = i < 15 ? "steady" : "shifting";
    const { runId } = await sdk.createRun(workflow, { key: `k-${i}-${randomUUID()}` });
    (i < 15 ? steady : shifting).push(runId);
  }
  for (const runId of [...steady, ...shifting]) await untilStatus(sdk, runId, "waiting", 20_000);
}, 60_000);

afterAll(async () => {
  await stopAllServerProcesses();
  await database?.drop();
});

function deployCheck(dirs: string, ...flags: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env: Record<string, string | undefined> = { ...process.env, CAIRN_API_URL: server.url };
    delete env.WORKFLOW_DIRS;
    const child = spawn(process.execPath, ["cli/cairn.mjs", "deploy", "check", "--workflow-dirs", dirs, ...flags], { cwd: repoRoot, env });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Everything a check must leave alone: the side effects, the journals and the runs. */
const snapshot = () =>
  withClient(database.url, async (db) => ({
    effects: (await db.query("select step, key from deploy_effects order by key, step")).rows,
    entries: Number((await db.query("select count(*) from journal_entries")).rows[0].count),
    runs: (await db.query("select id, status, lease_epoch, activation_count from runs order by id")).rows,
  }));

test("the breaking code lists exactly the 5 runs that would diverge, with their first mismatching entry; exit 1", async () => {
  const before = await snapshot();
  assert.equal(before.effects.length, 20);
  const [human, json] = await Promise.all([deployCheck(`${fixtures}/breaking`), deployCheck(`${fixtures}/breaking`, "--json")]);
  assert.equal(human.code, 1, human.stdout + human.stderr);
  const lines = human.stdout.trim().split("\n");
  assert.equal(lines.at(-1), `5 of 20 runs in flight would diverge on this code (workflows from ${resolve(repoRoot, fixtures, "breaking")})`);
  const listed = lines.slice(0, -1);
  assert.deepEqual(listed.map((line) => /^run ([0-9a-f-]{36}) \(shifting, waiting\): /.exec(line)?.[1]).sort(), [...shifting].sort(), human.stdout);
  for (const line of listed) assert.match(line, /audit/, "the mismatch names the operation the new code starts");
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout) as { checked: number; diverging: { runId: string; workflowName: string; problem: string }[] };
  assert.equal(report.checked, 20);
  assert.deepEqual(report.diverging.map((d) => d.runId).sort(), [...shifting].sort());
  assert.deepEqual(await snapshot(), before);
});

test("a compatible change (a step after the wait) exits 0; a folder without a workflow lists its runs as unclaimable", async () => {
  const before = await snapshot();
  const compatible = await deployCheck(`${fixtures}/compatible`);
  assert.equal(compatible.code, 0, compatible.stdout + compatible.stderr);
  assert.equal(compatible.stdout.trim(), "all 20 runs in flight replay on this code");
  const empty = await deployCheck("test/fixtures/no-such-folder");
  assert.equal(empty.code, 1);
  assert.match(empty.stdout, /^run [0-9a-f-]{36} \(steady, waiting\): workflow steady is not in the new code: no server would claim this run$/m);
  assert.match(empty.stdout, /20 of 20 runs in flight would diverge/);
  assert.deepEqual(await snapshot(), before);
  // The runs still complete on the code they were recorded with.
  const { key } = (await sdk.getRun(steady[0]!)).input as { key: string };
  await sdk.sendEvent({ eventType: "deploy.go", correlationId: key, payload: { ok: true } });
  assert.equal((await untilStatus(sdk, steady[0]!, "completed", 20_000)).status, "completed");
});
