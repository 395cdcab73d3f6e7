// ScheduleService on one in-process server over PostgreSQL: bad specs are INVALID_ARGUMENT with nothing stored
// (through the SDK and plain Connect JSON), CRUD, trigger, backfill (repeatable without doubles), the schedule_id
// run filter, and a schedule declared in a workflow file upserted at start.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import { CairnError } from "../../sdk/errors.js";
import type { CairnServer } from "../../server/app.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("schedules");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  ({ server } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/schedule-workflows:test/fixtures/schedule-declared",
    CAIRN_POLL_INTERVAL_MS: "10000",
  }));
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

const query = <T>(text: string, values: unknown[] = []) => withClient(databaseUrl, async (c) => (await c.query(text, values)).rows as T[]);
const count = async (text: string, values: unknown[] = []) => Number((await query<{ n: string }>(text, values))[0]?.n ?? 0);

async function connectJson(method: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${server.url}/cairn.v1.ScheduleService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

async function sdkRefusal(call: () => Promise<unknown>): Promise<CairnError> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof CairnError, String(error));
    return error;
  }
  assert.fail("the call was accepted");
}

test("bad specs are INVALID_ARGUMENT naming the problem, and nothing is stored (SDK and Connect JSON)", async () => {
  const before = await count("select count(*) as n from schedules");
  const cases: { spec: Record<string, unknown>; sdk: Parameters<CairnClient["schedules"]["create"]>[1]; message: RegExp }[] = [
    { spec: { workflowName: "tick", cron: "61 * * * *" }, sdk: { workflow: "tick", cron: "61 * * * *" }, message: /field 1 \(minute\) "61": out of range \(0-59\)/ },
    { spec: { workflowName: "tick", cron: "0 9 * * MON-XYZ" }, sdk: { workflow: "tick", cron: "0 9 * * MON-XYZ" }, message: /field 5 \(day of week\)/ },
    { spec: { workflowName: "tick", cron: "* * *" }, sdk: { workflow: "tick", cron: "* * *" }, message: /expected 5 fields .* got 3/ },
    { spec: { workflowName: "tick", cron: "0 9 * * *", timezone: "Mars/Olympus" }, sdk: { workflow: "tick", cron: "0 9 * * *", timezone: "Mars/Olympus" }, message: /unknown time zone "Mars\/Olympus"/ },
    { spec: { workflowName: "nope", every: "1s" }, sdk: { workflow: "nope", every: "1s" }, message: /unknown workflow "nope"/ },
    { spec: { workflowName: "tick", every: "0s" }, sdk: { workflow: "tick", every: 0 }, message: /every must be more than zero, got 0 ms/ },
    { spec: { workflowName: "tick", every: "-5s" }, sdk: { workflow: "tick", every: -5000 }, message: /every must be more than zero, got -5000 ms/ },
    { spec: { workflowName: "tick" }, sdk: { workflow: "tick" }, message: /needs a cron expression or an every interval/ },
    { spec: { workflowName: "tick", cron: "* * * * *", every: "1s" }, sdk: { workflow: "tick", cron: "* * * * *", every: "1s" }, message: /either cron or every, not both/ },
  ];
  for (const [i, c] of cases.entries()) {
    const error = await sdkRefusal(() => sdk.schedules.create(`bad-sdk-${i}`, c.sdk));
    assert.equal(error.code, Code.InvalidArgument, `${JSON.stringify(c.spec)}: ${error.message}`);
    assert.match(error.message, c.message);
    const plain = await connectJson("CreateSchedule", { scheduleId: `bad-json-${i}`, spec: c.spec });
    assert.equal(plain.status, 400, JSON.stringify(plain.json));
    assert.equal(plain.json.code, "invalid_argument");
    assert.match(String(plain.json.message), c.message);
  }
  assert.equal(await count("select count(*) as n from schedules"), before, "no schedule was stored");
  assert.equal(await count("select count(*) as n from runs where schedule_id like 'bad-%'"), 0);
});

test("create, get, list, update, pause, unpause, delete; a taken id is ALREADY_EXISTS, a missing one NOT_FOUND", async () => {
  const created = await sdk.schedules.create("nightly", { workflow: "tick", cron: "0 3 * * *", timezone: "Europe/Berlin", input: { n: 7 }, overlap: "buffer_one" });
  assert.equal(created.workflowName, "tick");
  assert.equal(created.timezone, "Europe/Berlin");
  assert.equal(created.overlap, "buffer_one");
  assert.equal(created.catchupWindowMs, 60_000);
  assert.ok(created.nextFireAt && created.nextFireAt.getTime() > Date.now());
  // 03:00 in Berlin is 01:00 or 02:00 UTC.
  assert.ok([1, 2].includes(created.nextFireAt.getUTCHours()) && created.nextFireAt.getUTCMinutes() === 0, created.nextFireAt.toISOString());
  assert.equal((await sdkRefusal(() => sdk.schedules.create("nightly", { workflow: "tick", every: "1h" }))).code, Code.AlreadyExists);
  const plain = await connectJson("GetSchedule", { scheduleId: "nightly" });
  assert.equal(plain.status, 200);
  assert.equal((plain.json.schedule as { spec: { cron: string } }).spec.cron, "0 3 * * *");
  assert.ok((await sdk.schedules.list({ workflow: "tick" })).some((s) => s.scheduleId === "nightly"));

  const updated = await sdk.schedules.update("nightly", { workflow: "tick", every: "1h" });
  assert.equal(updated.cron, undefined);
  assert.equal(updated.everyMs, 3_600_000);
  const paused = await sdk.schedules.pause("nightly");
  assert.equal(paused.paused, true);
  assert.equal(paused.nextFireAt, undefined);
  const [row] = await query<{ fire_due_at: Date | null }>("select fire_due_at from schedules where schedule_id = 'nightly'");
  assert.equal(row?.fire_due_at, null, "a paused schedule is not armed for");
  const unpaused = await sdk.schedules.unpause("nightly");
  assert.equal(unpaused.paused, false);
  assert.ok(unpaused.nextFireAt && unpaused.nextFireAt.getTime() > Date.now());

  await sdk.schedules.delete("nightly");
  assert.equal((await sdkRefusal(() => sdk.schedules.get("nightly"))).code, Code.NotFound);
  const gone = await connectJson("DeleteSchedule", { scheduleId: "nightly" });
  assert.equal(gone.json.code, "not_found");
});

test("trigger starts one run now; backfill creates exactly the runs of its fire times, and again creates none", async () => {
  await sdk.schedules.create("hourly", { workflow: "tick", cron: "0 * * * *", input: { n: 1 } });
  const runId = await sdk.schedules.trigger("hourly");
  const run = await sdk.waitForResult(runId);
  assert.deepEqual(run, { n: 1 });
  const info = await sdk.getRun(runId);
  assert.equal(info.scheduleId, "hourly");
  assert.match(info.idempotencyKey ?? "", /^schedule:hourly:.*:trigger$/);

  const end = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 1);
  const start = new Date(end.getTime() - 5 * 3_600_000 + 1);
  const first = await sdk.schedules.backfill("hourly", start, end);
  assert.equal(first.fireTimes, 5);
  assert.equal(first.created, 5);
  const again = await connectJson("BackfillSchedule", { scheduleId: "hourly", start: start.toISOString(), end: end.toISOString() });
  assert.equal(again.status, 200, JSON.stringify(again.json));
  assert.equal(again.json.fireTimes, 5);
  assert.equal(again.json.created ?? 0, 0, "a repeated backfill creates nothing");
  assert.deepEqual([...(again.json.runIds as string[])].sort(), [...first.runIds].sort());
  const keys = await query<{ idempotency_key: string }>("select idempotency_key from runs where schedule_id = 'hourly' and idempotency_key not like '%:trigger' order by 1");
  assert.deepEqual(
    keys.map((k) => k.idempotency_key),
    Array.from({ length: 5 }, (_, i) => `schedule:hourly:${new Date(Math.ceil(start.getTime() / 3_600_000) * 3_600_000 + i * 3_600_000).toISOString()}`),
  );
  // The schedule_id filter, through the SDK and plain JSON.
  const listed = await sdk.listRunsPage({ scheduleId: "hourly" });
  assert.equal(listed.runs.length, 6);
  const plain = await fetch(`${server.url}/cairn.v1.WorkflowService/ListRuns`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ scheduleId: "hourly" }),
  });
  const plainJson = (await plain.json()) as { runs?: unknown[] };
  assert.equal(plainJson.runs?.length, 6, JSON.stringify(plainJson));
  const future = await sdkRefusal(() => sdk.schedules.backfill("hourly", new Date(), new Date(Date.now() + 3_600_000)));
  assert.equal(future.code, Code.InvalidArgument);
});

test("a schedule declared in a workflow file is upserted at start and fires", async () => {
  const declared = await sdk.schedules.get("declared-every-second");
  assert.equal(declared.declared, true);
  assert.equal(declared.everyMs, 1000);
  const deadline = Date.now() + 5_000;
  while ((await count("select count(*) as n from runs where schedule_id = 'declared-every-second'")) < 2) {
    assert.ok(Date.now() < deadline, "the declared schedule did not fire twice in 5 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  await sdk.schedules.pause("declared-every-second");
});

test("REST: POST /schedules, GET /schedules/{id}, POST /schedules/{id}/pause, DELETE; a bad cron is 400 and stores nothing", async () => {
  const post = (path: string, body?: unknown) =>
    fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const created = await post("/schedules", { schedule_id: "rest-one", spec: { workflow_name: "tick", every: "3600s" } });
  assert.equal(created.status, 200, await created.clone().text());
  assert.equal(((await created.json()) as { schedule: { schedule_id: string } }).schedule.schedule_id, "rest-one");
  const got = await fetch(`${server.url}/schedules/rest-one`);
  assert.equal(got.status, 200);
  assert.equal(((await got.json()) as { schedule: { spec: { workflow_name: string } } }).schedule.spec.workflow_name, "tick");
  const paused = await post("/schedules/rest-one/pause");
  assert.equal(((await paused.json()) as { schedule: { paused: boolean } }).schedule.paused, true);
  const bad = await post("/schedules", { schedule_id: "rest-bad", spec: { workflow_name: "tick", cron: "0 0 * 13 *" } });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { message: string }).message, /field 4 \(month\) "13"/);
  assert.equal(await count("select count(*) as n from schedules where schedule_id = 'rest-bad'"), 0);
  assert.equal((await fetch(`${server.url}/schedules/rest-one`, { method: "DELETE" })).status, 200);
  assert.equal((await fetch(`${server.url}/schedules/rest-one`)).status, 404);
});

test("three firings racing over the same due schedules: each fire makes its run once, each schedule advances once", async () => {
  const { fireDueSchedules } = await import("../../server/store/schedules/fire.js");
  const { scheduleClock } = await import("../../server/runs/schedule-times.js");
  const ids = Array.from({ length: 40 }, (_, i) => `race-${i}`);
  for (const id of ids) await sdk.schedules.create(id, { workflow: "tick", every: "1h", overlap: i(id) % 2 === 0 ? "allow_all" : "skip" });
  // Every one due a moment ago (this server's timer is armed for an hour from now and hears no notice of this).
  await query(`update schedules set next_fire_at = now() - interval '5 ms', fire_due_at = now() - interval '5 ms' where schedule_id like 'race-%'`);
  const before = await query<{ schedule_id: string; next_fire_at: Date }>(`select schedule_id, next_fire_at from schedules where schedule_id like 'race-%'`);
  const clock = scheduleClock(() => undefined);
  // Three firings at once on separate connections of the pool, in batches smaller than the due set.
  const batches = await Promise.all([0, 1, 2].map(async () => {
    const made = [];
    for (;;) {
      const fired = await fireDueSchedules(server.database.db, 7, clock);
      made.push(fired);
      if (fired.read < 7) return made;
    }
  }));
  const claimed = batches.flat().reduce((sum, fired) => sum + fired.claimed, 0);
  const started = batches.flat().flatMap((fired) => fired.started);
  assert.equal(claimed, ids.length, "each schedule advanced by exactly one firing");
  assert.equal(started.length, ids.length, "one run per fire, reported once");
  assert.ok(started.every((run) => run.created));
  assert.equal(await count(`select count(*) as n from runs where schedule_id like 'race-%'`), ids.length);
  const after = await query<{ schedule_id: string; next_fire_at: Date; last_run_id: string }>(`select schedule_id, next_fire_at, last_run_id from schedules where schedule_id like 'race-%'`);
  for (const row of after) {
    const was = before.find((b) => b.schedule_id === row.schedule_id)!;
    // The next fire on the schedule's grid, at most one interval on: advanced once (twice would be past it).
    const step = row.next_fire_at.getTime() - was.next_fire_at.getTime();
    assert.ok(step > 0 && step <= 3_600_000, `${row.schedule_id} advanced by ${step} ms`);
    assert.equal(row.last_run_id, started.find((run) => run.scheduleId === row.schedule_id)?.runId);
  }
  for (const id of ids) await sdk.schedules.delete(id);
});

function i(id: string): number {
  return Number(id.split("-")[1]);
}
