/**
 * Firing schedules. Due rows (`fire_due_at <= now()`, or a buffered fire whose previous run ended) are claimed
 * FOR UPDATE SKIP LOCKED, so two servers firing at once take different schedules; for each, in the same
 * transaction, the fire's runs are inserted (idempotency key "schedule:<id>:<nominal>", so a fire that somehow
 * ran twice still makes one run) and `next_fire_at` advances. If the process dies before the commit nothing
 * happened and the next timer fires it again; after it, the fire is done. Runs are created with the
 * transaction's `now()`, which is past the fire's due time: never early.
 */
import { randomUUID } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import { type Db, queryRows, rawQuery } from "../database.js";
import { type CancelResult, cancelRun } from "../runs/cancel.js";
import { type ScheduleRow, runs, schedules, terminalStatuses } from "../schema.js";

/** The schedule's time arithmetic (server/runs/schedule-times.ts), passed in: the store only applies it. */
export interface FireClock {
  nextFireAfter(row: ScheduleRow, after: Date): Date | undefined;
  firstFireFrom(row: ScheduleRow, from: Date): Date | undefined;
  jitterFor(row: ScheduleRow, nominal: Date): number;
  fireKey(scheduleId: string, nominal: Date): string;
  /** The workflow's run-level timeout, if it declares one. */
  timeoutMsOf(workflowName: string): number | undefined;
}

export interface ScheduledRun {
  runId: string;
  namespace: string;
  scheduleId: string;
  workflowName: string;
  nominal: Date;
  /** False: a run with this fire's key existed already (nothing new). */
  created: boolean;
  timeoutAt: Date | null;
}

export interface FireOutcome {
  started: ScheduledRun[];
  /** Fires not started: overlap SKIP, a second buffered fire, or missed beyond the catch-up window. */
  skipped: { namespace: string; scheduleId: string; count: number; reason: string; from?: Date; to?: Date }[];
  /** OVERLAP_CANCEL_OTHER: the previous runs cancelled (a running one was asked to stop). */
  cancelled: CancelResult[];
}

/** Missed fires counted one by one up to this; beyond, they are skipped as a range without counting. */
const maxCountedMisses = 10_000;
/** The least catch-up window: fires later than this under load are still made up, not skipped. */
const minCatchupMs = 1_000;
/** Fires made up per schedule per round (a catch-up window far larger than the interval). */
const maxFiresPerRound = 1_000;

/** The earliest due time among unpaused schedules, and whether a buffered fire waits for a run to end. */
export async function nextScheduleDue(db: Db): Promise<{ dueAt: Date | undefined; buffered: boolean }> {
  const [row] = await rawQuery<{ due_at: Date | null; buffered: boolean }>(
    db,
    `select (select fire_due_at from schedules where fire_due_at is not null order by fire_due_at limit 1) as due_at,
            exists (select 1 from schedules where buffered_fire_at is not null) as buffered`,
    [],
    "cairn_next_schedule_due",
  );
  return { dueAt: row?.due_at ? new Date(row.due_at) : undefined, buffered: row?.buffered ?? false };
}

/** Fires up to `limit` due schedules in one transaction. */
export async function fireDueSchedules(db: Db, limit: number, clock: FireClock): Promise<FireOutcome & { claimed: number }> {
  return db.transaction(async (tx) => {
    const outcome: FireOutcome = { started: [], skipped: [], cancelled: [] };
    // One round trip: the due rows carry the transaction's now(), the instant every decision below is made at.
    const due = await queryRows<Record<string, unknown>>(
      tx,
      sql`select s.*, now() as db_now from schedules s
          where (s.fire_due_at <= now())
             or (s.buffered_fire_at is not null and not s.paused
                 and not exists (select 1 from runs r where r.id = s.last_run_id and r.status not in ('completed', 'failed', 'cancelled')))
          order by s.fire_due_at nulls first
          limit ${limit}
          for update of s skip locked`,
    );
    for (const raw of due) await fireOne(tx, scheduleFromRaw(raw), new Date(raw.db_now as string), clock, outcome);
    return { ...outcome, claimed: due.length };
  });
}

async function fireOne(tx: Db, row: ScheduleRow, now: Date, clock: FireClock, outcome: FireOutcome): Promise<void> {
  // ALLOW_ALL never looks at the previous run: one read less per fire on the hot path.
  let active = row.lastRunId && (row.overlap !== "allow_all" || row.bufferedFireAt) ? await runIsActive(tx, row.lastRunId) : false;
  const starts: Date[] = [];
  let buffered = row.bufferedFireAt;
  let skipped = 0;
  let cancelPrevious = false;
  const skip = (count: number, reason: string, from?: Date, to?: Date) => {
    skipped += count;
    outcome.skipped.push({ namespace: row.namespace, scheduleId: row.scheduleId, count, reason, ...(from ? { from } : {}), ...(to ? { to } : {}) });
  };
  // A fire kept by OVERLAP_BUFFER_ONE starts as soon as the run it waited for has ended.
  if (buffered && !active && !row.paused) {
    starts.push(buffered);
    buffered = null;
    active = true;
  }
  let next = row.nextFireAt;
  if (row.fireDueAt && row.nextFireAt && row.fireDueAt.getTime() <= now.getTime() && !row.paused) {
    let at: Date | undefined = row.nextFireAt;
    // Fires older than the catch-up window (missed while no server ran) are skipped, and said so.
    // Lateness counts from a fire's due time (nominal + jitter), and a window under minCatchupMs counts as that:
    // a fire a few ms late on a busy server is not "missed".
    const oldest = now.getTime() - Math.max(row.catchupWindowMs, minCatchupMs);
    const due = (fire: Date) => fire.getTime() + clock.jitterFor(row, fire);
    if (due(at) < oldest) {
      let count = 0;
      let probe: Date | undefined = at;
      while (probe && due(probe) < oldest && count < maxCountedMisses) {
        count++;
        probe = clock.nextFireAfter(row, probe);
      }
      // Past the counting cap, jump: the first fire time whose due time is inside the window.
      let resume = probe && due(probe) >= oldest ? probe : clock.firstFireFrom(row, new Date(oldest - row.jitterMs));
      while (resume && due(resume) < oldest) resume = clock.nextFireAfter(row, resume);
      skip(count, "missed beyond the catch-up window", at, resume ? new Date(resume.getTime() - 1) : new Date(oldest));
      at = resume;
    }
    let rounds = 0;
    while (at && at.getTime() + clock.jitterFor(row, at) <= now.getTime() && rounds++ < maxFiresPerRound) {
      switch (row.overlap) {
        case "allow_all":
          starts.push(at);
          break;
        case "skip":
          if (active) skip(1, "the previous run has not ended (OVERLAP_SKIP)", at);
          else starts.push(at);
          break;
        case "buffer_one":
          if (!active) starts.push(at);
          else if (!buffered) buffered = at;
          else skip(1, "a fire is already buffered (OVERLAP_BUFFER_ONE)", at);
          break;
        case "cancel_other":
          // Only the latest of several fires made up at once runs: each would cancel the one before.
          if (starts.length > 0) skip(starts.length, "superseded by a later fire (OVERLAP_CANCEL_OTHER)", starts[0]);
          else if (active) cancelPrevious = true;
          starts.length = 0;
          starts.push(at);
          break;
      }
      active = active || starts.length > 0;
      at = clock.nextFireAfter(row, at);
    }
    next = at ?? null;
  }
  if (cancelPrevious && row.lastRunId) {
    const result = await cancelRun(tx, row.namespace, row.lastRunId, `schedule ${row.scheduleId} fired again (OVERLAP_CANCEL_OTHER)`);
    if (result && result.outcome !== "finished") outcome.cancelled.push(result);
  }
  let lastRun: ScheduledRun | undefined;
  for (const nominal of starts) {
    lastRun = await insertScheduledRun(tx, row, nominal, clock);
    outcome.started.push(lastRun);
  }
  await tx
    .update(schedules)
    .set({
      nextFireAt: row.paused ? null : next,
      fireDueAt: row.paused || !next ? null : new Date(next.getTime() + clock.jitterFor(row, next)),
      bufferedFireAt: buffered,
      skippedFires: sql`${schedules.skippedFires} + ${skipped}`,
      ...(lastRun ? { lastRunId: lastRun.runId, lastFireAt: lastRun.nominal } : {}),
      updatedAt: sql`now()`,
    })
    .where(and(eq(schedules.namespace, row.namespace), eq(schedules.scheduleId, row.scheduleId)));
}

async function runIsActive(tx: Db, runId: string): Promise<boolean> {
  const [run] = await tx.select({ status: runs.status }).from(runs).where(eq(runs.id, runId));
  return run !== undefined && !terminalStatuses.includes(run.status);
}

/**
 * The run of one fire (also TriggerSchedule and BackfillSchedule): queued, created now, carrying the schedule id;
 * an existing run with the fire's key is returned instead (created: false).
 */
export async function insertScheduledRun(tx: Db, row: ScheduleRow, nominal: Date, clock: FireClock, key?: string): Promise<ScheduledRun> {
  const idempotencyKey = key ?? clock.fireKey(row.scheduleId, nominal);
  const timeoutMs = clock.timeoutMsOf(row.workflowName);
  const [inserted] = await tx
    .insert(runs)
    .values({
      id: randomUUID(),
      namespace: row.namespace,
      workflowName: row.workflowName,
      status: "queued",
      input: row.input as JsonValue,
      idempotencyKey,
      metadata: row.metadata,
      scheduleId: row.scheduleId,
      // The statement's time, not the transaction's: a run started because the previous one ended must not
      // look created before that end (the transaction may have begun a moment before the other committed).
      createdAt: sql`clock_timestamp()`,
      updatedAt: sql`clock_timestamp()`,
      availableAt: sql`clock_timestamp()`,
      ...(timeoutMs !== undefined ? { timeoutAt: sql`now() + ${timeoutMs} * interval '1 millisecond'` } : {}),
    })
    .onConflictDoNothing()
    .returning({ id: runs.id, timeoutAt: runs.timeoutAt });
  const base = { namespace: row.namespace, scheduleId: row.scheduleId, workflowName: row.workflowName, nominal };
  if (inserted) return { ...base, runId: inserted.id, created: true, timeoutAt: inserted.timeoutAt };
  const [existing] = await tx
    .select({ id: runs.id, timeoutAt: runs.timeoutAt })
    .from(runs)
    .where(and(eq(runs.namespace, row.namespace), eq(runs.idempotencyKey, idempotencyKey)));
  if (!existing) throw new Error(`run for ${idempotencyKey} conflicted but no run holds that key`);
  return { ...base, runId: existing.id, created: false, timeoutAt: existing.timeoutAt };
}

/** Backfill and trigger: the runs of these fire times in one transaction (existing ones are kept, not doubled). */
export async function insertScheduledRuns(
  db: Db,
  namespace: string,
  scheduleId: string,
  fires: { nominal: Date; key?: string }[],
  clock: FireClock,
  /** TriggerSchedule: the run becomes the schedule's latest, which its overlap policy looks at. */
  becomesLatest = false,
): Promise<ScheduledRun[] | undefined> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .select()
      .from(schedules)
      .where(and(eq(schedules.namespace, namespace), eq(schedules.scheduleId, scheduleId)))
      .for("share");
    if (!row) return undefined;
    const made: ScheduledRun[] = [];
    for (const fire of fires) made.push(await insertScheduledRun(tx, row, fire.nominal, clock, fire.key));
    const last = made.filter((r) => r.created).at(-1);
    if (last && becomesLatest) {
      await tx
        .update(schedules)
        .set({ lastRunId: last.runId, lastFireAt: last.nominal, updatedAt: sql`now()` })
        .where(and(eq(schedules.namespace, namespace), eq(schedules.scheduleId, scheduleId)));
    }
    return made;
  });
}

function scheduleFromRaw(raw: Record<string, unknown>): ScheduleRow {
  const date = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(v as string));
  const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    namespace: raw.namespace as string,
    scheduleId: raw.schedule_id as string,
    workflowName: raw.workflow_name as string,
    input: raw.input as JsonValue,
    metadata: raw.metadata as Record<string, string>,
    cron: (raw.cron as string | null) ?? null,
    timezone: raw.timezone as string,
    everyMs: num(raw.every_ms),
    anchorAt: date(raw.anchor_at)!,
    jitterMs: num(raw.jitter_ms) ?? 0,
    overlap: raw.overlap as ScheduleRow["overlap"],
    catchupWindowMs: num(raw.catchup_window_ms) ?? 0,
    paused: raw.paused as boolean,
    declared: raw.declared as boolean,
    nextFireAt: date(raw.next_fire_at),
    fireDueAt: date(raw.fire_due_at),
    lastFireAt: date(raw.last_fire_at),
    lastRunId: (raw.last_run_id as string | null) ?? null,
    bufferedFireAt: date(raw.buffered_fire_at),
    skippedFires: num(raw.skipped_fires) ?? 0,
    createdAt: date(raw.created_at)!,
    updatedAt: date(raw.updated_at)!,
  };
}
