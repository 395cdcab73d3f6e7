// Schedules across three real server processes on one PostgreSQL database: an every-second schedule makes
// exactly one run per fire time (none early), pause/unpause/trigger/backfill; the four overlap policies with a
// run that outlasts the interval; catch-up after every server was stopped. Through the SDK and plain Connect JSON.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { type ServerProcess, sleep, startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

let db: TestDatabase;
let servers: ServerProcess[] = [];
let sdk: CairnClient;

const workflowDirs = "test/fixtures/schedule-workflows";

async function startThree(): Promise<ServerProcess[]> {
  return Promise.all(["A", "B", "C"].map((name) => startServerProcess({ databaseUrl: db.url, workflowDirs, name })));
}

beforeAll(async () => {
  db = await createTestDatabase("schedules_e2e");
  servers = await startThree();
  sdk = createCairnClient({ baseUrl: servers[0]!.url });
});

afterAll(async () => {
  await stopAllServerProcesses();
  await db?.drop();
});

const query = <T>(text: string, values: unknown[] = []) => withClient(db.url, async (c) => (await c.query(text, values)).rows as T[]);

interface FiredRun {
  id: string;
  key: string;
  nominal: number;
  created: number;
  started: number | null;
  completed: number | null;
  status: string;
  error: { message?: string } | null;
}

async function runsOf(scheduleId: string): Promise<FiredRun[]> {
  const rows = await query<{ id: string; idempotency_key: string; created_at: Date; started_at: Date | null; completed_at: Date | null; status: string; error: { message?: string } | null }>(
    "select id, idempotency_key, created_at, started_at, completed_at, status, error from runs where schedule_id = $1 order by idempotency_key",
    [scheduleId],
  );
  return rows.map((r) => ({
    id: r.id,
    key: r.idempotency_key,
    // The nominal fire time is in the key: schedule:<id>:<ISO>[:trigger].
    nominal: Date.parse(r.idempotency_key.slice(`schedule:${scheduleId}:`.length).replace(/:trigger$/, "")),
    created: r.created_at.getTime(),
    started: r.started_at?.getTime() ?? null,
    completed: r.completed_at?.getTime() ?? null,
    status: r.status,
    error: r.error,
  }));
}

async function connectJson(server: ServerProcess, method: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.url}/cairn.v1.ScheduleService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as Record<string, unknown>;
  assert.equal(response.status, 200, `${method}: ${JSON.stringify(json)}`);
  return json;
}

function assertOnePerFireTime(runs: FiredRun[], everyMs: number, label: string): void {
  const nominals = runs.filter((r) => !r.key.endsWith(":trigger")).map((r) => r.nominal);
  assert.equal(new Set(nominals).size, nominals.length, `${label}: one run per fire time`);
  for (let i = 1; i < nominals.length; i++) assert.equal(nominals[i]! - nominals[i - 1]!, everyMs, `${label}: no fire time missed between runs ${i - 1} and ${i}`);
}

test("every second for ~20 s on three servers: one run per fire time, none early; pause, unpause, trigger, backfill", async () => {
  const created = await sdk.schedules.create("every-second", { workflow: "tick", every: "1s", overlap: "allow_all", input: { n: 1 } });
  const createdAt = created.createdAt!.getTime();
  await sleep(20_500);
  let runs = await runsOf("every-second");
  assert.ok(runs.length >= 19 && runs.length <= 21, `${runs.length} runs in 20.5 s`);
  assertOnePerFireTime(runs, 1000, "running");
  for (const run of runs) assert.ok(run.created >= run.nominal, `run ${run.key} created ${run.nominal - run.created} ms early`);
  // Every server took part in firing, or at least more than one did not double anything: the counts above hold.
  const lateness = runs.map((r) => r.created - r.nominal).sort((a, b) => a - b);
  assert.ok(lateness.at(-1)! < 1_000, `fires were late by up to ${lateness.at(-1)} ms`);

  // Pause (plain JSON, on another server): no fire after it returns.
  const paused = await connectJson(servers[1]!, "PauseSchedule", { scheduleId: "every-second" });
  assert.equal((paused.schedule as { paused: boolean }).paused, true);
  const atPause = (await runsOf("every-second")).length;
  await sleep(2_500);
  assert.equal((await runsOf("every-second")).length, atPause, "no fire while paused");

  // Unpause (SDK): fires resume from the next fire time, the paused period is not made up.
  const unpausedAt = Date.now();
  await sdk.schedules.unpause("every-second");
  await sleep(2_600);
  runs = await runsOf("every-second");
  const resumed = runs.slice(atPause);
  assert.ok(resumed.length >= 2 && resumed.length <= 3, `${resumed.length} fires in 2.6 s after unpausing`);
  for (const run of resumed) assert.ok(run.nominal >= unpausedAt - 50, `fire ${run.key} is from the paused period`);

  // Trigger (plain JSON): exactly one run, now.
  const beforeTrigger = Date.now();
  const triggered = await connectJson(servers[2]!, "TriggerSchedule", { scheduleId: "every-second" });
  runs = await runsOf("every-second");
  const triggers = runs.filter((r) => r.key.endsWith(":trigger"));
  assert.equal(triggers.length, 1);
  assert.equal(triggers[0]!.id, triggered.runId);
  assert.ok(triggers[0]!.nominal >= beforeTrigger - 50);

  await sdk.schedules.pause("every-second");
  // Backfill five seconds before the schedule existed: exactly its five fire times, and again nothing new.
  const start = new Date(createdAt - 5_500);
  const end = new Date(createdAt - 500);
  const first = await sdk.schedules.backfill("every-second", start, end);
  assert.equal(first.fireTimes, 5);
  assert.equal(first.created, 5);
  const again = await connectJson(servers[1]!, "BackfillSchedule", { scheduleId: "every-second", start: start.toISOString(), end: end.toISOString() });
  assert.equal(again.created ?? 0, 0);
  // The schedule's grid of fire times (anchored at its creation) extended backwards.
  const grid = runs[0]!.nominal % 1000;
  const expected = Array.from({ length: 5 }, (_, i) => Math.ceil((start.getTime() - grid) / 1000) * 1000 + grid + i * 1000);
  const backfilled = (await runsOf("every-second")).filter((r) => r.nominal >= start.getTime() && r.nominal <= end.getTime());
  assert.deepEqual(
    backfilled.map((r) => r.nominal),
    expected,
  );
  await sdk.schedules.delete("every-second");
});

test("overlap with a run that outlasts the interval: SKIP starts none, BUFFER_ONE one after, ALLOW_ALL each, CANCEL_OTHER cancels", async () => {
  const ids = { skip: "ov-skip", buffer_one: "ov-buffer", allow_all: "ov-all", cancel_other: "ov-cancel" } as const;
  for (const [overlap, id] of Object.entries(ids)) {
    await sdk.schedules.create(id, { workflow: "slow_tick", every: "1s", overlap: overlap as keyof typeof ids, input: { ms: 2_500 } });
  }
  await sleep(6_300);
  for (const id of Object.values(ids)) await sdk.schedules.pause(id);
  // Let the runs still going end (cancelled ones are over already).
  await sleep(3_000);

  const skip = await runsOf(ids.skip);
  assert.ok(skip.length >= 2 && skip.length <= 3, `SKIP: ${skip.length} runs`);
  for (let i = 1; i < skip.length; i++) assert.ok(skip[i]!.created >= skip[i - 1]!.completed!, "SKIP: a run started while the previous one ran");
  const skipRow = await sdk.schedules.get(ids.skip);
  assert.ok(skipRow.skippedFires >= 2, `SKIP: ${skipRow.skippedFires} fires skipped`);

  const buffered = await runsOf(ids.buffer_one);
  assert.ok(buffered.length >= 2, `BUFFER_ONE: ${buffered.length} runs`);
  for (let i = 1; i < buffered.length; i++) {
    const gap = buffered[i]!.created - buffered[i - 1]!.completed!;
    assert.ok(gap >= 0, "BUFFER_ONE: a run started while the previous one ran");
    // The buffered fire starts as soon as the previous run ended, not at the next fire time.
    assert.ok(gap < 900, `BUFFER_ONE: started ${gap} ms after the previous run ended`);
    assert.ok(buffered[i]!.nominal < buffered[i - 1]!.completed!, "BUFFER_ONE: the buffered fire is one that came while the previous ran");
  }
  assert.ok((await sdk.schedules.get(ids.buffer_one)).skippedFires >= 1, "BUFFER_ONE keeps one fire, skips the rest");

  const all = await runsOf(ids.allow_all);
  assert.ok(all.length >= 5, `ALLOW_ALL: ${all.length} runs`);
  assertOnePerFireTime(all, 1000, "ALLOW_ALL");
  const overlapping = all.filter((r, i) => i > 0 && r.started! < all[i - 1]!.completed!);
  assert.ok(overlapping.length >= 3, "ALLOW_ALL: runs ran at the same time");

  const cancel = await runsOf(ids.cancel_other);
  assert.ok(cancel.length >= 5, `CANCEL_OTHER: ${cancel.length} runs`);
  const cancelled = cancel.filter((r) => r.status === "cancelled");
  assert.ok(cancelled.length >= cancel.length - 1 - 1, `CANCEL_OTHER: ${cancelled.length} of ${cancel.length} cancelled`);
  for (const run of cancelled) assert.match(run.error?.message ?? "", /OVERLAP_CANCEL_OTHER/);
  for (let i = 1; i < cancel.length; i++) {
    const previous = cancel[i - 1]!;
    if (previous.status === "cancelled") assert.ok(previous.completed! <= cancel[i]!.created + 5, "CANCEL_OTHER: cancelled before the next run was created");
  }
  for (const id of Object.values(ids)) await sdk.schedules.delete(id);
});

test("catch-up: every server stopped ~5 s; missed fires inside the window run once, older ones are skipped and logged", async () => {
  await sdk.schedules.create("catch-up", { workflow: "tick", every: "1s", overlap: "allow_all", catchupWindow: "2500ms" });
  await sleep(2_200);
  for (const server of servers) server.kill("SIGTERM");
  await Promise.all(servers.map((s) => s.exited));
  const stoppedAt = Date.now();
  const beforeStop = await runsOf("catch-up");
  assert.ok(beforeStop.length >= 1);
  await sleep(5_000);
  const restartAt = Date.now();
  servers = await startThree();
  sdk = createCairnClient({ baseUrl: servers[0]!.url });
  await sleep(2_000);
  const runs = await runsOf("catch-up");
  const lastBefore = beforeStop.at(-1)!.nominal;
  const afterStop = runs.filter((r) => r.nominal > lastBefore);
  assertOnePerFireTime(afterStop, 1000, "after the restart");
  // Fires older than the window when the first server came back were skipped: a gap after the last fire before the stop.
  const skippedFires = (afterStop[0]!.nominal - lastBefore) / 1000 - 1;
  assert.ok(skippedFires >= 2, `${skippedFires} fires skipped (stopped ${stoppedAt - lastBefore} ms after the last fire, restarted at +${restartAt - stoppedAt} ms)`);
  // Fires inside the window were made up once each: late, but at most the window late.
  const madeUp = afterStop.filter((r) => r.created - r.nominal > 300);
  assert.ok(madeUp.length >= 1, `fires inside the catch-up window are made up: ${JSON.stringify(afterStop.map((r) => r.created - r.nominal))}`);
  for (const run of madeUp) assert.ok(run.created - run.nominal <= 2_500 + 200, `made up ${run.created - run.nominal} ms late`);
  const logged = servers.flatMap((s) => s.logRecords()).filter((r) => String(r.msg).includes("missed beyond the catch-up window") && r.scheduleId === "catch-up");
  assert.equal(logged.length, 1, "the skipped fires were logged once");
  assert.ok(Number(logged[0]!.count) >= 2);
  const row = await sdk.schedules.get("catch-up");
  assert.equal(row.skippedFires, Number(logged[0]!.count));
  assert.equal(row.skippedFires, skippedFires, "the skipped fires are the gap");
  await sdk.schedules.delete("catch-up");
});
