// Flow control across three real server processes on one PostgreSQL database (docs/flow-control.md): concurrency
// keys, rate limits, priority, debounce and the namespace quota, each checked from a side table the workflows'
// steps write with the database's clock (flow_log) and from the runs table; GetRun and ExplainRun of a held run
// through the SDK and plain Connect JSON; bad input refused with nothing stored; the claim's plan.
import { afterAll, beforeAll, test } from "vitest";
import assert from "node:assert/strict";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import { claimStatement } from "../../server/store/runs/rows.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { type ServerProcess, sleep, startServerProcess, stopAllServerProcesses, waitFor } from "../support/server-process.js";

const dirs = "test/fixtures/flow-workflows";
let db: TestDatabase;
let servers: ServerProcess[] = [];
let sdks: CairnClient[] = [];

const query = <T>(text: string, values: unknown[] = []) => withClient(db.url, async (c) => (await c.query(text, values)).rows as T[]);

async function connectJson(server: ServerProcess, method: string, body: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`${server.url}/cairn.v1.WorkflowService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

async function allEnded(ids: readonly string[], timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      const [row] = await query<{ n: number }>("select count(*)::int as n from runs where id = any($1::uuid[]) and status in ('completed', 'failed', 'cancelled')", [ids]);
      return row?.n === ids.length ? true : undefined;
    },
    timeoutMs,
    () => `not all of ${ids.length} runs ended`,
  );
  const [failed] = await query<{ n: number }>("select count(*)::int as n from runs where id = any($1::uuid[]) and status <> 'completed'", [ids]);
  assert.equal(failed?.n, 0, "every run completed");
}

beforeAll(async () => {
  db = await createTestDatabase("flow_control");
  // The servers migrate on start; the side table first, in its own statement.
  await query("create table flow_log (id serial primary key, run_id uuid, workflow text, key text, tag text, started_at timestamptz, ended_at timestamptz)");
  servers = await Promise.all(["A", "B", "C"].map((name) => startServerProcess({ databaseUrl: db.url, workflowDirs: dirs, name })));
  sdks = servers.map((s) => createCairnClient({ baseUrl: s.url }));
});

afterAll(async () => {
  await stopAllServerProcesses();
  await db?.drop();
});

test("concurrency key limit 1: never two running at once on the hot key; other keys overlap; all complete", async () => {
  const creations: Promise<{ runId: string }>[] = [];
  for (let i = 0; i < 50; i++) {
    creations.push(sdks[i % 3]!.createRun("flow_keyed", { key: "hot", tag: `h${i}`, ms: 20 }));
    creations.push(sdks[(i + 1) % 3]!.createRun("flow_keyed", { key: `cold-${i}`, tag: `c${i}`, ms: 200 }));
  }
  const ids = (await Promise.all(creations)).map((r) => r.runId);
  await allEnded(ids);

  const hot = await query<{ started_at: Date; ended_at: Date }>("select started_at, ended_at from flow_log where workflow = 'flow_keyed' and key = 'hot' order by started_at");
  assert.ok(hot.length >= 50, `${hot.length} hot steps logged`);
  for (let i = 1; i < hot.length; i++) {
    assert.ok(hot[i]!.started_at.getTime() >= hot[i - 1]!.ended_at.getTime(), `hot step ${i} started before step ${i - 1} ended`);
  }
  // The other keys ran side by side: some pair of cold steps overlapped in time.
  const [overlap] = await query<{ n: number }>(
    `select count(*)::int as n from flow_log a join flow_log b on a.id < b.id
     where a.workflow = 'flow_keyed' and b.workflow = 'flow_keyed' and a.key like 'cold-%' and b.key like 'cold-%'
       and a.started_at < b.ended_at and b.started_at < a.ended_at`,
  );
  assert.ok((overlap?.n ?? 0) > 0, "cold keys never overlapped");
  // Some hot run was held back on the way (the gate did its work), and no run is left held or running.
  const [left] = await query<{ n: number }>("select count(*)::int as n from runs where workflow_name = 'flow_keyed' and (held_by is not null or status <> 'completed')");
  assert.equal(left?.n, 0);
});

test("a held run: GetRun and ExplainRun name its key and position (SDK and Connect JSON); priority orders the line", async () => {
  const sdk = sdks[0]!;
  const first = await sdk.createRun("flow_serial", { key: "", tag: "first", ms: 2500 });
  await waitFor(async () => ((await sdk.getRun(first.runId)).status === "running" ? true : undefined), 20_000, () => "first never ran");
  const low: string[] = [];
  const high: string[] = [];
  for (let i = 0; i < 4; i++) low.push((await sdks[i % 3]!.createRun("flow_serial", { key: "", tag: `low${i}`, ms: 10 })).runId);
  for (let i = 0; i < 4; i++) high.push((await sdks[i % 3]!.createRun("flow_serial", { key: "", tag: `high${i}`, ms: 10 }, { priority: 10 })).runId);
  const lastLow = low[3]!;
  // Claimed and held: out of the due queue until `first` ends.
  await waitFor(
    async () => {
      const [row] = await query<{ n: number }>("select count(*)::int as n from runs where id = any($1::uuid[]) and held_by = 'concurrency' and available_at is null", [[...low, ...high]]);
      return row?.n === 8 ? true : undefined;
    },
    20_000,
    () => "the backlog was not held",
  );
  const held = await sdk.getRun(lastLow);
  assert.equal(held.status, "queued");
  assert.deepEqual(held.heldBy && { gate: held.heldBy.gate, key: held.heldBy.key, position: held.heldBy.position }, { gate: "concurrency", key: "", position: 8 });
  assert.equal((await sdk.getRun(high[0]!)).heldBy?.position, 1, "the first high-priority run is next");
  const viaJson = await connectJson(servers[1]!, "GetRun", { runId: lastLow });
  assert.equal(viaJson.status, 200);
  assert.deepEqual(viaJson.json.run.heldBy, { gate: "concurrency", position: "8" }, JSON.stringify(viaJson.json.run));
  assert.equal(viaJson.json.run.status, "RUN_STATUS_QUEUED");
  const explained = await sdk.explainRun(lastLow);
  assert.ok(explained.lines.some((line) => /held by flow control: concurrency the workflow's single key .*position 8/.test(line)), explained.lines.join("\n"));
  assert.equal(explained.run.heldBy?.position, 8);
  const explainedJson = await connectJson(servers[2]!, "ExplainRun", { runId: lastLow });
  assert.equal(explainedJson.status, 200);
  assert.ok((explainedJson.json.lines as string[]).some((line) => line.includes("position 8")), JSON.stringify(explainedJson.json.lines));

  await allEnded([first.runId, ...low, ...high]);
  const order = await query<{ tag: string }>("select tag from flow_log where workflow = 'flow_serial' order by started_at");
  assert.deepEqual(order.map((r) => r.tag), ["first", "high0", "high1", "high2", "high3", "low0", "low1", "low2", "low3"]);
  const [after] = await sdk.getRun(lastLow).then((r) => [r.heldBy]);
  assert.equal(after, undefined, "an ended run is not held");
});

test("a place is freed on every way out of RUNNING: cancelled and SIGKILLed (lease lapsed) runs release the next", async () => {
  const sdk = sdks[0]!;
  const first = await sdk.createRun("flow_serial", { key: "", tag: "cancelled", ms: 1500 });
  await waitFor(async () => ((await sdk.getRun(first.runId)).status === "running" ? true : undefined), 20_000, () => "first never ran");
  const next = await sdks[1]!.createRun("flow_serial", { key: "", tag: "after-cancel", ms: 10 });
  await waitFor(async () => ((await sdk.getRun(next.runId)).heldBy ? true : undefined), 20_000, () => "next was not held");
  await sdk.cancelRun(first.runId, "free the place");
  await allEnded([next.runId], 20_000);
  assert.equal((await sdk.getRun(first.runId)).status, "cancelled");

  // A server dies holding the key's only place: its lease lapses, the run is requeued, and the key moves on.
  const victim = await startServerProcess({ databaseUrl: db.url, workflowDirs: dirs, name: "victim" });
  const vsdk = createCairnClient({ baseUrl: victim.url });
  const [holder] = await query<{ n: number }>("select count(*)::int as n from runs where workflow_name = 'flow_serial' and status = 'running'");
  assert.equal(holder?.n, 0);
  // Only the victim can claim for a moment: the others are busy with nothing, so give it an eager-like head start
  // by creating through it and waiting until it (or another) runs it; then kill whoever holds it if it is the victim.
  const long = await vsdk.createRun("flow_serial", { key: "", tag: "killed", ms: 4000 });
  const owner = await waitFor(async () => {
    const [row] = await query<{ lease_owner: string | null; status: string }>("select lease_owner, status from runs where id = $1", [long.runId]);
    return row?.status === "running" ? row.lease_owner : undefined;
  }, 20_000, () => "long never ran");
  const behind = await sdk.createRun("flow_serial", { key: "", tag: "after-kill", ms: 10 });
  if (owner === victim.owner) victim.kill("SIGKILL");
  await allEnded([long.runId, behind.runId], 40_000);
  const [running] = await query<{ n: number }>("select count(*)::int as n from runs where workflow_name = 'flow_serial' and (status <> 'completed' and status <> 'cancelled' or held_by is not null)");
  assert.equal(running?.n, 0, "nothing left running or held");
  victim.kill("SIGKILL");
});

test("rate limit 10 per second: starts never exceed 10 in any 1 s window", async () => {
  const ids = (await Promise.all(Array.from({ length: 35 }, (_, i) => sdks[i % 3]!.createRun("flow_rated", { key: "r", tag: `${i}` })))).map((r) => r.runId);
  await allEnded(ids, 30_000);
  const starts = (await query<{ started_at: Date }>("select started_at from runs where id = any($1::uuid[]) order by started_at", [ids])).map((r) => r.started_at.getTime());
  assert.equal(starts.length, 35);
  // Any half-open window of 1 s holds at most 10 starts: the 11th start after any start is at least 1 s later.
  for (let i = 0; i + 10 < starts.length; i++) assert.ok(starts[i + 10]! - starts[i]! >= 1000, `starts ${i} and ${i + 10} are ${starts[i + 10]! - starts[i]!} ms apart`);
  assert.ok(starts[34]! - starts[0]! >= 3000, "35 starts at 10/s take at least 3 s");
  // Side table agrees (each step ran after its run started).
  const [logged] = await query<{ n: number }>("select count(distinct run_id)::int as n from flow_log where workflow = 'flow_rated'");
  assert.equal(logged?.n, 35);
});

test("debounce: a burst of 20 within the period gives one run, with the last input", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push((await sdks[i % 3]!.createRun("flow_debounced", { key: "d", tag: `t${i}` })).runId);
  assert.equal(new Set(ids).size, 1, "every creation of the burst returned the same run");
  const runId = ids[0]!;
  const run = await sdks[0]!.getRun(runId);
  assert.equal(run.status, "queued");
  assert.deepEqual(run.input, { key: "d", tag: "t19" });
  // Another key is its own run.
  const other = await sdks[1]!.createRun("flow_debounced", { key: "e", tag: "only" });
  assert.notEqual(other.runId, runId);
  await allEnded([runId, other.runId], 20_000);
  assert.equal((await sdks[0]!.getRun(runId)).output, "t19");
  const [count] = await query<{ n: number }>("select count(*)::int as n from runs where workflow_name = 'flow_debounced'");
  assert.equal(count?.n, 2);
  const logged = await query<{ tag: string }>("select tag from flow_log where workflow = 'flow_debounced' and key = 'd'");
  assert.deepEqual(logged.map((r) => r.tag), ["t19"]);
});

test("namespace quota: CAIRN_NAMESPACE_MAX_RUNNING=2 holds across processes", async () => {
  const quota = await Promise.all(
    ["Q1", "Q2"].map((name) => startServerProcess({ databaseUrl: db.url, workflowDirs: dirs, name, env: { CAIRN_NAMESPACE_MAX_RUNNING: "2" } })),
  );
  const qsdks = quota.map((s) => createCairnClient({ baseUrl: s.url }));
  const ids = (await Promise.all(Array.from({ length: 12 }, (_, i) => qsdks[i % 2]!.createRun("flow_plain", { key: `q${i}`, tag: "quota", ms: 150 }, { eagerStart: true })))).map((r) => r.runId);
  await allEnded(ids);
  const steps = await query<{ started_at: Date; ended_at: Date }>("select started_at, ended_at from flow_log where workflow = 'flow_plain' and tag = 'quota'");
  let maxOverlap = 0;
  for (const s of steps) {
    const at = s.started_at.getTime();
    const running = steps.filter((o) => o.started_at.getTime() <= at && o.ended_at.getTime() > at).length;
    maxOverlap = Math.max(maxOverlap, running);
  }
  assert.ok(maxOverlap <= 2, `${maxOverlap} ran at once`);
  assert.equal(maxOverlap, 2, "the quota is a limit, not a serialiser");
  for (const s of quota) s.kill("SIGTERM");
  await Promise.all(quota.map((s) => s.exited));
});

test("bad input: priority out of range is INVALID_ARGUMENT and stores nothing; a zero limit stops the server loading", async () => {
  const [before] = await query<{ n: number }>("select count(*)::int as n from runs");
  await assert.rejects(sdks[0]!.createRun("flow_plain", { key: "x" }, { priority: 5000 }), (error: any) => {
    assert.match(String(error.message), /priority must be an integer from -1000 to 1000, got 5000/);
    assert.equal(error.code, 3); // INVALID_ARGUMENT
    return true;
  });
  const viaJson = await connectJson(servers[1]!, "CreateRun", { workflowName: "flow_plain", input: { key: "x" }, priority: -1001 });
  assert.equal(viaJson.status, 400);
  assert.equal(viaJson.json.code, "invalid_argument");
  assert.match(viaJson.json.message, /priority must be an integer from -1000 to 1000, got -1001/);
  const [after] = await query<{ n: number }>("select count(*)::int as n from runs");
  assert.equal(after?.n, before?.n, "nothing stored");

  await assert.rejects(startServerProcess({ databaseUrl: db.url, workflowDirs: "test/fixtures/flow-bad-workflows", name: "bad", startTimeoutMs: 20_000 }), (error: Error) => {
    assert.match(error.message, /zero-limit\.ts: workflow \\*"flow_zero\\*": concurrency\.limit must be a whole number more than zero, got 0/);
    return true;
  });
});

test("the claim stays indexed: due runs by priority from runs_due_priority_idx, the rest from runs_due_idx", async () => {
  // A backlog of 20,000 due runs of priority 0 and 20 of priority 5 (of a workflow no server loads, so they stay).
  await query(`insert into runs (id, workflow_name, status, input, priority)
               select gen_random_uuid(), 'flow_seed', 'queued', '{}', case when g <= 20 then 5 else 0 end from generate_series(1, 20000) g`);
  await query("analyze runs");
  await withClient(db.url, async (c) => {
    await c.query(`prepare claim(text, int, int, text[], int) as ${claimStatement}`);
    const plan = (await c.query("explain execute claim('x', 1000, 10, '{flow_seed}', 20)")).rows.map((r: Record<string, string>) => Object.values(r)[0]).join("\n");
    assert.match(plan, /Index Scan using runs_due_priority_idx/, plan);
    assert.match(plan, /Index Scan using runs_due_idx/, plan);
    assert.doesNotMatch(plan, /Seq Scan/, plan);
  });
});
