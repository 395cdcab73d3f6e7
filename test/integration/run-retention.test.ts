/**
 * Run retention on PostgreSQL, through a real server's sweep: ended runs older than CAIRN_RUN_RETENTION (or
 * their namespace's override) are deleted with their journals and waits; a run that has not ended, a parent
 * whose child still runs, a child whose parent still runs, and anything younger than its retention stay.
 * Deleted runs are NOT_FOUND through the SDK and through plain fetch (Connect JSON).
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, expect, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCairnClient, type CairnClient, type RunInfo } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { ConfigError, loadConfig } from "../../server/config.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("run_retention");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/retention-workflows",
    CAIRN_RUN_RETENTION: "1h",
    CAIRN_RUN_RETENTION_BY_NAMESPACE: "audit=forever,scratch=10m",
    CAIRN_SWEEP_INTERVAL_MS: "100",
  }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

async function until(runId: string, status: RunInfo["status"]): Promise<RunInfo> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const run = await sdk.getRun(runId);
    if (run.status === status) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} is ${run.status}, not ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const sql = <T = Record<string, unknown>>(text: string, values: unknown[] = []) =>
  withClient(databaseUrl, async (db) => (await db.query(text, values)).rows as T[]);

/** Ended this long ago, as far as retention can tell. */
const endedAgo = (ids: string[], interval: string) =>
  sql(`update runs set completed_at = now() - $2::interval where id = any($1::uuid[])`, [ids, interval]);

async function rowsOf(ids: string[]): Promise<{ runs: number; entries: number }> {
  const [counts] = await sql<{ runs: string; entries: string }>(
    `select (select count(*) from runs where id = any($1::uuid[])) as runs,
            (select count(*) from journal_entries where run_id = any($1::uuid[])) as entries`,
    [ids],
  );
  return { runs: Number(counts!.runs), entries: Number(counts!.entries) };
}

async function untilGone(ids: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await rowsOf(ids)).runs > 0) {
    if (Date.now() > deadline) throw new Error(`runs ${ids.join(", ")} were not deleted`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Sweeps run every 100 ms: a few rounds without a deletion mean the sweep let these runs be. */
const severalSweeps = () => new Promise((resolve) => setTimeout(resolve, 600));

test("ended runs past retention go with their journals; unended runs and family still running stay", async () => {
  const old = await Promise.all([1, 2, 3].map((n) => sdk.createRun("retention_quick", { n })));
  const young = await sdk.createRun("retention_quick", { n: 4 });
  const leavesChild = await sdk.createRun("retention_leaves_child", { key: "leaves" });
  const outlivesChild = await sdk.createRun("retention_outlives_child", { key: "outlives" });
  const waiting = await sdk.createRun("retention_waiter", { key: "never" });
  for (const run of [...old, young, leavesChild]) await until(run.runId, "completed");
  await until(outlivesChild.runId, "waiting");
  await until(waiting.runId, "waiting");
  const [detachedChild] = await sql<{ id: string }>("select id from runs where parent_run_id = $1", [leavesChild.runId]);
  const [endedChild] = await sql<{ id: string }>("select id from runs where parent_run_id = $1", [outlivesChild.runId]);
  await until(detachedChild!.id, "waiting");
  await until(endedChild!.id, "completed");
  assert.ok((await rowsOf(old.map((run) => run.runId))).entries > 0);

  // Two hours ago is past the 1 h default for every ended run here; the young one ended just now.
  await endedAgo([...old.map((run) => run.runId), leavesChild.runId, endedChild!.id], "2 hours");
  // Not ended: an old created_at alone must not make it eligible.
  await sql("update runs set created_at = now() - interval '2 days' where id = any($1::uuid[])", [[waiting.runId, outlivesChild.runId]]);

  await untilGone(old.map((run) => run.runId));
  expect(await rowsOf(old.map((run) => run.runId))).toEqual({ runs: 0, entries: 0 });
  await severalSweeps();
  const kept = [young.runId, leavesChild.runId, detachedChild!.id, outlivesChild.runId, endedChild!.id, waiting.runId];
  expect((await rowsOf(kept)).runs).toBe(kept.length);
  const [{ waits }] = (await sql<{ waits: string }>("select count(*) as waits from waits where run_id = $1", [waiting.runId])) as [{ waits: string }];
  expect(Number(waits)).toBe(1);

  // The detached child ends: its long-ended parent goes; the child, just ended, stays until it is old too.
  await sdk.sendEvent({ eventType: "retention.go", correlationId: "leaves", payload: { ok: true } });
  await until(detachedChild!.id, "completed");
  await untilGone([leavesChild.runId]);
  await severalSweeps();
  expect((await rowsOf([detachedChild!.id])).runs).toBe(1);
  await endedAgo([detachedChild!.id], "2 hours");
  await untilGone([detachedChild!.id]);

  // The parent ends: its ended child goes with it once the parent is old as well.
  await sdk.sendEvent({ eventType: "retention.go", correlationId: "outlives", payload: { ok: true } });
  await until(outlivesChild.runId, "completed");
  await endedAgo([outlivesChild.runId], "2 hours");
  await untilGone([outlivesChild.runId, endedChild!.id]);

  expect((await rowsOf([young.runId, waiting.runId])).runs).toBe(2);
});

test("per-namespace overrides: `forever` keeps, a shorter one deletes sooner, others use the default", async () => {
  const runs = await Promise.all(["audit", "scratch", "default"].map((label) => sdk.createRun("retention_quick", { label })));
  for (const run of runs) await until(run.runId, "completed");
  const [audit, scratch, plain] = runs.map((run) => run.runId) as [string, string, string];
  await sql("update runs set namespace = 'audit' where id = $1", [audit]);
  await sql("update runs set namespace = 'scratch' where id = $1", [scratch]);
  // 30 minutes: past scratch's 10 m, within the 1 h default; audit keeps forever even at a year.
  await endedAgo([scratch, plain], "30 minutes");
  await endedAgo([audit], "365 days");
  await untilGone([scratch]);
  await severalSweeps();
  expect((await rowsOf([audit, plain])).runs).toBe(2);
});

test("a deleted run is NOT_FOUND through the SDK and through plain fetch", async () => {
  const run = await sdk.createRun("retention_quick", { gone: true });
  await until(run.runId, "completed");
  await endedAgo([run.runId], "2 hours");
  await untilGone([run.runId]);
  await assert.rejects(sdk.getRun(run.runId), (error: unknown) => error instanceof CairnError && error.code === Code.NotFound);
  const response = await fetch(`${server.url}/cairn.v1.WorkflowService/GetRun`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ runId: run.runId }),
  });
  expect(response.status).toBe(404);
  expect(((await response.json()) as { code: string }).code).toBe("not_found");
});

test("bad retention settings stop the server with a message naming the variable", () => {
  const refused = (env: Record<string, string>, message: RegExp) =>
    assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && message.test(error.message));
  refused({ CAIRN_RUN_RETENTION: "soon" }, /CAIRN_RUN_RETENTION="soon"/);
  refused({ CAIRN_RUN_RETENTION: "0s" }, /CAIRN_RUN_RETENTION="0s": must be longer than zero/);
  refused({ CAIRN_RUN_RETENTION_BY_NAMESPACE: "audit" }, /CAIRN_RUN_RETENTION_BY_NAMESPACE: "audit" is not namespace=duration/);
  refused({ CAIRN_RUN_RETENTION_BY_NAMESPACE: "audit=never" }, /CAIRN_RUN_RETENTION_BY_NAMESPACE \(audit\)="never"/);
  expect(loadConfig({ CAIRN_RUN_RETENTION: "forever" }).runRetention).toEqual({ defaultMs: "forever", byNamespace: {} });
  expect(loadConfig({}).runRetention.defaultMs).toBe(30 * 24 * 3600 * 1000);
});
