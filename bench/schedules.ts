/**
 * The "schedules" section: fire lateness with N schedules `every` P (default 1,000 every 10 s) for C cycles, on
 * three server processes (every server arms its timer for the earliest due schedule and fires under SKIP LOCKED).
 * Lateness of a fire = its run's created_at (the firing transaction's now()) − its nominal fire time (in the run's
 * idempotency key "schedule:<id>:<nominal>"). Checked: never early, one run per fire time, no fire missed.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { CairnClient } from "../sdk/client.js";
import { percentile, round } from "./stats.js";
import { inParallel } from "./waits.js";
import { WORKFLOW_NAME as STEPS_WORKFLOW } from "./workflows/ten-steps.js";

export interface ScheduleBenchResult {
  schedules: number;
  everyMs: number;
  cycles: number;
  fires: number;
  /** Fires expected in the measured window (each schedule's fire times in it). */
  expectedFires: number;
  latenessP50Ms: number;
  latenessP99Ms: number;
  latenessMaxMs: number;
  early: number;
  failures: string[];
}

export async function scheduleLateness(
  client: CairnClient,
  databaseUrl: string,
  options: { schedules: number; everyMs: number; cycles: number; signal: AbortSignal; log: (message: string) => void },
): Promise<ScheduleBenchResult> {
  const tag = randomBytes(3).toString("hex");
  const prefix = `bench-sched-${tag}-`;
  const failures: string[] = [];
  failures.push(
    ...(await inParallel(options.schedules, 50, options.signal, async (i) => {
      await client.schedules.create(`${prefix}${i}`, { workflow: STEPS_WORKFLOW, every: options.everyMs, input: { steps: 1 }, overlap: "allow_all" });
    })),
  );
  // Measure whole cycles after every schedule exists: fire times in [from, to).
  const from = Date.now() + 500;
  const to = from + options.cycles * options.everyMs;
  options.log(`schedules: ${options.schedules} every ${options.everyMs} ms created; measuring ${options.cycles} cycles`);
  await sleep(to - Date.now() + 2_000, undefined, { signal: options.signal });
  failures.push(...(await inParallel(options.schedules, 50, options.signal, async (i) => void (await client.schedules.delete(`${prefix}${i}`)))));

  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rows } = await db.query<{ schedule_id: string; idempotency_key: string; created_at: Date }>(
      "select schedule_id, idempotency_key, created_at from runs where schedule_id like $1",
      [`${prefix}%`],
    );
    const lateness: number[] = [];
    let early = 0;
    const perSchedule = new Map<string, number>();
    for (const row of rows) {
      const nominal = Date.parse(row.idempotency_key.slice(`schedule:${row.schedule_id}:`.length));
      if (nominal < from || nominal >= to) continue;
      const late = row.created_at.getTime() - nominal;
      if (late < 0) early++;
      lateness.push(late);
      perSchedule.set(row.schedule_id, (perSchedule.get(row.schedule_id) ?? 0) + 1);
    }
    lateness.sort((a, b) => a - b);
    const expectedFires = options.schedules * options.cycles;
    if (lateness.length !== expectedFires) failures.push(`${lateness.length} fires in the window, expected ${expectedFires}`);
    if (early > 0) failures.push(`${early} fires early`);
    return {
      schedules: options.schedules,
      everyMs: options.everyMs,
      cycles: options.cycles,
      fires: lateness.length,
      expectedFires,
      latenessP50Ms: round(percentile(lateness, 50), 1),
      latenessP99Ms: round(percentile(lateness, 99), 1),
      latenessMaxMs: round(lateness.at(-1) ?? Number.NaN, 1),
      early,
      failures,
    };
  } finally {
    await db.end();
  }
}
