/**
 * Schedule rows: create, read, change, pause, delete, and the upsert of schedules declared in workflow files.
 * Every write that changes when a schedule fires NOTIFYs `cairn_schedules` in its transaction, so every
 * server's schedule timer re-arms at once (a lost notice only delays that to its next poll).
 */
import { and, asc, eq, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import type { Db } from "../database.js";
import { type OverlapPolicy, type ScheduleRow, schedules } from "../schema.js";

export const scheduleChannel = "cairn_schedules";

export interface ScheduleSpecRow {
  workflowName: string;
  input: JsonValue;
  metadata: Record<string, string>;
  cron: string | null;
  timezone: string;
  everyMs: number | null;
  jitterMs: number;
  overlap: OverlapPolicy;
  catchupWindowMs: number;
}

export interface NewSchedule extends ScheduleSpecRow {
  namespace: string;
  scheduleId: string;
  paused: boolean;
  declared: boolean;
  anchorAt: Date;
  /** The first nominal fire time and that plus its jitter; null when paused. */
  nextFireAt: Date | null;
  fireDueAt: Date | null;
}

async function notify(db: Db): Promise<void> {
  await db.execute(sql`select pg_notify(${scheduleChannel}, '')`);
}

/** Undefined when the schedule id is taken in the namespace (nothing changed). */
export async function insertSchedule(db: Db, schedule: NewSchedule): Promise<ScheduleRow | undefined> {
  return db.transaction(async (tx) => {
    const [row] = await tx.insert(schedules).values(schedule).onConflictDoNothing().returning();
    if (row) await notify(tx);
    return row;
  });
}

export async function getSchedule(db: Db, namespace: string, scheduleId: string): Promise<ScheduleRow | undefined> {
  const [row] = await db.select().from(schedules).where(and(eq(schedules.namespace, namespace), eq(schedules.scheduleId, scheduleId)));
  return row;
}

export async function listSchedules(db: Db, namespace: string, workflowName?: string): Promise<ScheduleRow[]> {
  return db
    .select()
    .from(schedules)
    .where(and(eq(schedules.namespace, namespace), workflowName ? eq(schedules.workflowName, workflowName) : undefined))
    .orderBy(asc(schedules.scheduleId));
}

/**
 * Replaces the spec and the next fire; `next` is computed by the caller from the row as locked here, so a
 * concurrent fire cannot be lost or doubled (it waits for this transaction, then sees the new next fire).
 */
export async function updateSchedule(
  db: Db,
  namespace: string,
  scheduleId: string,
  change: (row: ScheduleRow) => Partial<NewSchedule>,
): Promise<ScheduleRow | undefined> {
  return db.transaction(async (tx) => {
    const [locked] = await tx
      .select()
      .from(schedules)
      .where(and(eq(schedules.namespace, namespace), eq(schedules.scheduleId, scheduleId)))
      .for("update");
    if (!locked) return undefined;
    const [row] = await tx
      .update(schedules)
      .set({ ...change(locked), updatedAt: sql`now()` })
      .where(and(eq(schedules.namespace, namespace), eq(schedules.scheduleId, scheduleId)))
      .returning();
    await notify(tx);
    return row;
  });
}

export async function deleteSchedule(db: Db, namespace: string, scheduleId: string): Promise<boolean> {
  return db.transaction(async (tx) => {
    const deleted = await tx
      .delete(schedules)
      .where(and(eq(schedules.namespace, namespace), eq(schedules.scheduleId, scheduleId)))
      .returning({ id: schedules.scheduleId });
    if (deleted.length > 0) await notify(tx);
    return deleted.length > 0;
  });
}

/**
 * A schedule declared in a workflow file, at server start: created, or its spec brought up to date. The next
 * fire is kept unless the timing (cron, time zone, interval) changed, so restarting servers neither skips nor
 * repeats fires; pausing through the API survives restarts (the declaration does not touch `paused`).
 */
export async function upsertDeclaredSchedule(db: Db, schedule: NewSchedule): Promise<void> {
  await db.transaction(async (tx) => {
    const timingChanged = sql`(${schedules.cron} is distinct from excluded.cron or ${schedules.timezone} <> excluded.timezone
      or ${schedules.everyMs} is distinct from excluded.every_ms)`;
    await tx
      .insert(schedules)
      .values(schedule)
      .onConflictDoUpdate({
        target: [schedules.namespace, schedules.scheduleId],
        set: {
          workflowName: sql`excluded.workflow_name`,
          input: sql`excluded.input`,
          metadata: sql`excluded.metadata`,
          jitterMs: sql`excluded.jitter_ms`,
          overlap: sql`excluded.overlap`,
          catchupWindowMs: sql`excluded.catchup_window_ms`,
          declared: sql`true`,
          cron: sql`excluded.cron`,
          timezone: sql`excluded.timezone`,
          everyMs: sql`excluded.every_ms`,
          anchorAt: sql`case when ${timingChanged} then excluded.anchor_at else ${schedules.anchorAt} end`,
          nextFireAt: sql`case when ${schedules.paused} then null when ${timingChanged} then excluded.next_fire_at else ${schedules.nextFireAt} end`,
          fireDueAt: sql`case when ${schedules.paused} then null when ${timingChanged} then excluded.fire_due_at else ${schedules.fireDueAt} end`,
          updatedAt: sql`now()`,
        },
      });
    await notify(tx);
  });
}
