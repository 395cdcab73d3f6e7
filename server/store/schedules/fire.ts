/**
 * Firing schedules. Due rows (`fire_due_at <= now()`, or a buffered fire whose previous run ended) are read, their
 * fires planned in memory, and one statement advances each schedule still at the row version read and inserts the
 * runs of its fires (idempotency key "schedule:<id>:<nominal>", so a fire that somehow ran twice still makes one
 * run). Servers firing at once race on the row versions: one advances, the others change nothing. If the process
 * dies before that statement commits nothing happened and the next timer fires it again; after it, the fire is done.
 * Runs are created at the statement's clock, which is past the fire's due time: never early.
 */
import { randomUUID } from "node:crypto";
import { and, eq, or, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import { type Db, queryRows, rawQuery } from "../database.js";
import { type CancelResult, cancelRun } from "../runs/cancel.js";
import { type ScheduleRow, runs, schedules } from "../schema.js";

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

/**
 * Fires up to `limit` due schedules in two round trips, whatever `limit` is: a read of the due rows (with each one's
 * row version, whether its last run is still active, and the next due time after them), then one statement that
 * advances every schedule still at the version read and inserts the runs of the fires of those it advanced. Several
 * servers firing at once read the same rows; each row is advanced by the one that locks it first, and the others skip
 * it (locked) or find another version (advanced already), so each fire makes its runs once (and the fire's idempotency key would refuse a
 * second run anyway). A process that dies between the two statements has changed nothing.
 * OVERLAP_CANCEL_OTHER's cancel must commit with its fire: a batch with one runs both in a transaction.
 */
export async function fireDueSchedules(db: Db, limit: number, clock: FireClock): Promise<FiredBatch> {
  const outcome: FireOutcome = { started: [], skipped: [], cancelled: [] };
  const due = await queryRows<Record<string, unknown>>(
    db,
    sql`select s.*, s.xmin::text as row_version, now() as db_now,
               (last.status is not null and last.status not in ('completed', 'failed', 'cancelled')) as last_run_active,
               (select min(fire_due_at) from schedules where fire_due_at > now()) as later_due,
               exists (select 1 from schedules where buffered_fire_at is not null) as any_buffered
        from schedules s left join runs last on last.id = s.last_run_id
        where (s.fire_due_at <= now())
           or (s.buffered_fire_at is not null and not s.paused
               and not exists (select 1 from runs r where r.id = s.last_run_id and r.status not in ('completed', 'failed', 'cancelled')))
        order by s.fire_due_at nulls first
        limit ${limit}`,
  );
  const plans = due.map((raw) => ({
    ...planFire(scheduleFromRaw(raw), new Date(raw.db_now as string), clock, raw.last_run_active === true),
    version: raw.row_version as string,
  }));
  const cancels = plans.filter((plan) => plan.cancelPrevious && plan.row.lastRunId);
  let applied: AppliedFires;
  if (cancels.length === 0) applied = await applyFires(db, plans, clock);
  else {
    try {
      applied = await db.transaction(async (tx) => {
        for (const plan of cancels) {
          const result = await cancelRun(tx, plan.row.namespace, plan.row.lastRunId!, `schedule ${plan.row.scheduleId} fired again (OVERLAP_CANCEL_OTHER)`);
          if (result && result.outcome !== "finished") outcome.cancelled.push(result);
        }
        const fired = await applyFires(tx, plans, clock);
        // Another server fired one of them first: its cancel must not stand alone. Roll back; the next firing reads again.
        if (cancels.some((plan) => !fired.advanced.has(keyOf(plan.row)))) throw new LostFire();
        return fired;
      });
    } catch (error) {
      if (!(error instanceof LostFire)) throw error;
      outcome.cancelled.length = 0;
      applied = { advanced: new Set(), started: [] };
    }
  }
  for (const plan of plans) if (applied.advanced.has(keyOf(plan.row))) outcome.skipped.push(...plan.skipped);
  outcome.started.push(...applied.started);
  // The timer's next instant without another read: the earliest of the later due times the read saw and the ones
  // just set. Due rows another server fired are that server's to arm for (it committed before our advance gave up).
  let nextDue = due[0]?.later_due ? new Date(due[0].later_due as string) : undefined;
  for (const plan of plans) {
    if (!applied.advanced.has(keyOf(plan.row))) continue;
    const at = plan.row.paused ? null : plan.next;
    const dueAt = at ? new Date(at.getTime() + clock.jitterFor(plan.row, at)) : undefined;
    if (dueAt && (!nextDue || dueAt < nextDue)) nextDue = dueAt;
  }
  const buffered = due[0]?.any_buffered === true || plans.some((plan) => plan.buffered !== null);
  return { ...outcome, read: due.length, claimed: applied.advanced.size, nextDue, buffered };
}

class LostFire extends Error {}

/** A firing's outcome; `nextDue` and `buffered` are meaningful when `read` < the limit asked (every due row was seen). */
export interface FiredBatch extends FireOutcome {
  /** Due schedules read. */
  read: number;
  /** Of those, the ones this firing advanced (the others were fired by another server first). */
  claimed: number;
  /** The earliest due time after this firing (undefined: none). */
  nextDue: Date | undefined;
  /** A buffered fire waits for a run to end somewhere. */
  buffered: boolean;
}

interface AppliedFires {
  /** Schedules advanced, by keyOf. */
  advanced: Set<string>;
  started: ScheduledRun[];
}

const keyOf = (row: { namespace: string; scheduleId: string }) => `${row.namespace}\u0000${row.scheduleId}`;

/**
 * One statement: every planned schedule still at the row version its plan was made from is advanced (next fire,
 * buffered fire, skip count, latest run), and the runs of the advanced ones' fires are inserted. Run ids are made
 * here, so the schedule's latest run is known before the insert; a fire whose key a run holds already (a backfill
 * of the same time) keeps that run, as its latest too.
 */
async function applyFires(db: Db, plans: readonly (FirePlan & { version: string })[], clock: FireClock): Promise<AppliedFires> {
  if (plans.length === 0) return { advanced: new Set(), started: [] };
  const fires = plans.flatMap((plan) =>
    plan.starts.map((nominal) => ({ plan, nominal, runId: randomUUID(), idempotencyKey: clock.fireKey(plan.row.scheduleId, nominal) })),
  );
  const last = new Map<string, (typeof fires)[number]>();
  for (const fire of fires) last.set(keyOf(fire.plan.row), fire);
  const iso = (date: Date | null | undefined) => (date ? date.toISOString() : null);
  const next = (plan: FirePlan) => (plan.row.paused ? null : plan.next);
  const column = <T>(pick: (plan: FirePlan & { version: string }) => T) => sql.param(plans.map(pick));
  const fireColumn = <T>(pick: (fire: (typeof fires)[number]) => T) => sql.param(fires.map(pick));
  const rows = await queryRows<{ what: "advanced" | "started"; namespace: string; key: string; id: string | null; timeout_at: string | null }>(
    db,
    sql`with v as (
          select * from unnest(${column((p) => p.row.namespace)}::text[], ${column((p) => p.row.scheduleId)}::text[],
                               ${column((p) => p.version)}::text[],
                               ${column((p) => iso(next(p)))}::timestamptz[],
                               ${column((p) => { const at = next(p); return at ? iso(new Date(at.getTime() + clock.jitterFor(p.row, at))) : null; })}::timestamptz[],
                               ${column((p) => iso(p.buffered))}::timestamptz[],
                               ${column((p) => p.skipped.reduce((sum, s) => sum + s.count, 0))}::bigint[],
                               ${column((p) => last.get(keyOf(p.row))?.runId ?? null)}::uuid[],
                               ${column((p) => last.get(keyOf(p.row))?.idempotencyKey ?? null)}::text[],
                               ${column((p) => iso(last.get(keyOf(p.row))?.nominal))}::timestamptz[])
            as v(namespace, schedule_id, version, next_fire_at, fire_due_at, buffered_fire_at, skipped, last_run_id, last_key, last_fire_at)),
        -- Rows still at the version read, locked in one order (two servers locking in different orders deadlock) and
        -- skipping rows another server's firing holds: that one advances them (or, if it fails, the next firing does).
        locked as (
          select s.namespace, s.schedule_id from schedules s join v on s.namespace = v.namespace and s.schedule_id = v.schedule_id
          where s.xmin::text = v.version
          order by s.namespace, s.schedule_id
          for update of s skip locked),
        advanced as (
          update schedules s
          set next_fire_at = v.next_fire_at, fire_due_at = v.fire_due_at, buffered_fire_at = v.buffered_fire_at,
              skipped_fires = s.skipped_fires + v.skipped,
              last_run_id = case when v.last_run_id is null then s.last_run_id
                                 else coalesce((select r.id from runs r where r.namespace = v.namespace and r.idempotency_key = v.last_key), v.last_run_id) end,
              last_fire_at = coalesce(v.last_fire_at, s.last_fire_at),
              updated_at = now()
          from v
          where s.namespace = v.namespace and s.schedule_id = v.schedule_id
            and (s.namespace, s.schedule_id) in (select namespace, schedule_id from locked)
          returning s.namespace, s.schedule_id),
        started as (
          insert into runs (id, namespace, workflow_name, status, input, idempotency_key, metadata, schedule_id,
                            created_at, updated_at, available_at, timeout_at)
          -- The statement's time, not the transaction's: a run started because the previous one ended must not look
          -- created before that end.
          select f.id, f.namespace, f.workflow_name, 'queued', f.input::jsonb, f.idempotency_key, f.metadata::jsonb, f.schedule_id,
                 clock_timestamp(), clock_timestamp(), clock_timestamp(), now() + f.timeout_ms * interval '1 millisecond'
          from unnest(${fireColumn((f) => f.runId)}::uuid[], ${fireColumn((f) => f.plan.row.namespace)}::text[],
                      ${fireColumn((f) => f.plan.row.scheduleId)}::text[], ${fireColumn((f) => f.plan.row.workflowName)}::text[],
                      ${fireColumn((f) => JSON.stringify(f.plan.row.input))}::text[], ${fireColumn((f) => f.idempotencyKey)}::text[],
                      ${fireColumn((f) => JSON.stringify(f.plan.row.metadata))}::text[],
                      ${fireColumn((f) => clock.timeoutMsOf(f.plan.row.workflowName) ?? null)}::bigint[])
            as f(id, namespace, schedule_id, workflow_name, input, idempotency_key, metadata, timeout_ms)
          join advanced a on a.namespace = f.namespace and a.schedule_id = f.schedule_id
          on conflict do nothing
          returning id, namespace, idempotency_key, timeout_at)
        select 'advanced' as what, namespace, schedule_id as key, null::uuid as id, null::timestamptz as timeout_at from advanced
        union all
        select 'started', namespace, idempotency_key, id, timeout_at from started`,
  );
  const advanced = new Set(rows.filter((row) => row.what === "advanced").map((row) => `${row.namespace}\u0000${row.key}`));
  const inserted = new Map(rows.filter((row) => row.what === "started").map((row) => [`${row.namespace}\u0000${row.key}`, row]));
  const ours = fires.filter((fire) => advanced.has(keyOf(fire.plan.row)));
  // A fire whose key a run held already (a backfill of the same time): that run is the fire's.
  const held = ours.filter((fire) => !inserted.has(`${fire.plan.row.namespace}\u0000${fire.idempotencyKey}`));
  const existing = held.length === 0 ? [] : await existingRuns(db, held.map((fire) => ({ namespace: fire.plan.row.namespace, idempotencyKey: fire.idempotencyKey })));
  const started = ours.map((fire): ScheduledRun => {
    const { row } = fire.plan;
    const base = { namespace: row.namespace, scheduleId: row.scheduleId, workflowName: row.workflowName, nominal: fire.nominal };
    const made = inserted.get(`${row.namespace}\u0000${fire.idempotencyKey}`);
    if (made) return { ...base, runId: made.id!, created: true, timeoutAt: made.timeout_at ? new Date(made.timeout_at) : null };
    const run = existing.find((r) => r.namespace === row.namespace && r.idempotencyKey === fire.idempotencyKey);
    if (!run) throw new Error(`run for ${fire.idempotencyKey} conflicted but no run holds that key`);
    return { ...base, runId: run.id, created: false, timeoutAt: run.timeoutAt };
  });
  return { advanced, started };
}

async function existingRuns(db: Db, keys: readonly { namespace: string; idempotencyKey: string }[]) {
  return db
    .select({ id: runs.id, namespace: runs.namespace, idempotencyKey: runs.idempotencyKey, timeoutAt: runs.timeoutAt })
    .from(runs)
    .where(or(...keys.map((key) => and(eq(runs.namespace, key.namespace), eq(runs.idempotencyKey, key.idempotencyKey)))));
}

/** What one due schedule's fire does, decided in memory from its row, the instant and its last run's state. */
interface FirePlan {
  row: ScheduleRow;
  /** Nominal times of the runs to start, oldest first. */
  starts: Date[];
  /** OVERLAP_BUFFER_ONE's kept fire after this round (null: none). */
  buffered: Date | null;
  skipped: FireOutcome["skipped"];
  /** OVERLAP_CANCEL_OTHER: the last run is still active and a new fire replaces it. */
  cancelPrevious: boolean;
  /** The next fire time (null: none, e.g. paused). */
  next: Date | null;
}

function planFire(row: ScheduleRow, now: Date, clock: FireClock, lastRunActive: boolean): FirePlan {
  let active = lastRunActive;
  const starts: Date[] = [];
  let buffered = row.bufferedFireAt;
  const skipped: FireOutcome["skipped"] = [];
  let cancelPrevious = false;
  const skip = (count: number, reason: string, from?: Date, to?: Date) => {
    skipped.push({ namespace: row.namespace, scheduleId: row.scheduleId, count, reason, ...(from ? { from } : {}), ...(to ? { to } : {}) });
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
  return { row, starts, buffered, skipped, cancelPrevious, next };
}

/**
 * The run of one fire (also TriggerSchedule and BackfillSchedule): queued, created now, carrying the schedule id;
 * an existing run with the fire's key is returned instead (created: false).
 */
export async function insertScheduledRun(tx: Db, row: ScheduleRow, nominal: Date, clock: FireClock, key?: string): Promise<ScheduledRun> {
  const [run] = await insertScheduledRunsIn(tx, [{ row, nominal, key }], clock);
  return run!;
}

/** The runs of several fires in one INSERT (and one read for the keys that existed already), in the order given. */
async function insertScheduledRunsIn(
  tx: Db,
  fires: readonly { row: ScheduleRow; nominal: Date; key?: string | undefined }[],
  clock: FireClock,
): Promise<ScheduledRun[]> {
  if (fires.length === 0) return [];
  const keyed = fires.map((fire) => ({ ...fire, idempotencyKey: fire.key ?? clock.fireKey(fire.row.scheduleId, fire.nominal) }));
  const inserted = await tx
    .insert(runs)
    .values(
      keyed.map(({ row, idempotencyKey }) => {
        const timeoutMs = clock.timeoutMsOf(row.workflowName);
        return {
          id: randomUUID(),
          namespace: row.namespace,
          workflowName: row.workflowName,
          status: "queued" as const,
          input: row.input as JsonValue,
          idempotencyKey,
          metadata: row.metadata,
          scheduleId: row.scheduleId,
          // The statement's time, not the transaction's: a run started because the previous one ended must not
          // look created before that end (the transaction may have begun a moment before the other committed).
          createdAt: sql`clock_timestamp()`,
          updatedAt: sql`clock_timestamp()`,
          availableAt: sql`clock_timestamp()`,
          timeoutAt: timeoutMs !== undefined ? sql`now() + ${timeoutMs} * interval '1 millisecond'` : null,
        };
      }),
    )
    .onConflictDoNothing()
    .returning({ id: runs.id, namespace: runs.namespace, idempotencyKey: runs.idempotencyKey, timeoutAt: runs.timeoutAt });
  const byKey = new Map(inserted.map((run) => [`${run.namespace}\u0000${run.idempotencyKey}`, { ...run, created: true }]));
  const missing = keyed.filter((fire) => !byKey.has(`${fire.row.namespace}\u0000${fire.idempotencyKey}`));
  if (missing.length > 0) {
    const existing = await tx
      .select({ id: runs.id, namespace: runs.namespace, idempotencyKey: runs.idempotencyKey, timeoutAt: runs.timeoutAt })
      .from(runs)
      .where(
        or(...missing.map((fire) => and(eq(runs.namespace, fire.row.namespace), eq(runs.idempotencyKey, fire.idempotencyKey)))),
      );
    for (const run of existing) byKey.set(`${run.namespace}\u0000${run.idempotencyKey}`, { ...run, created: false });
  }
  return keyed.map(({ row, nominal, idempotencyKey }) => {
    const run = byKey.get(`${row.namespace}\u0000${idempotencyKey}`);
    if (!run) throw new Error(`run for ${idempotencyKey} conflicted but no run holds that key`);
    return {
      namespace: row.namespace,
      scheduleId: row.scheduleId,
      workflowName: row.workflowName,
      nominal,
      runId: run.id,
      created: run.created,
      timeoutAt: run.timeoutAt,
    };
  });
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
