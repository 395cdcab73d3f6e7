/**
 * The schedules service: checks a schedule's spec (workflow known here, exactly one of cron and every, a cron
 * that parses, an IANA time zone, an input the workflow accepts) before anything is stored, and computes the
 * next fire time for the store. Firing itself is the worker's (worker/schedule-fires.ts). Unpausing resumes at
 * the first fire time after now: the fires of the paused period are not made up (a pause is deliberate, unlike
 * an outage, which the catch-up window covers).
 */
import type { JsonValue, ScheduleOverlap, WorkflowSchedule } from "../../sdk/workflow.js";
import { parseDuration } from "../core/duration.js";
import { InvalidInputError } from "../core/errors.js";
import { ScheduleExistsError, ScheduleNotFoundError } from "../core/schedule-errors.js";
import type { Logger } from "../logger.js";
import { type ScheduledRun, insertScheduledRuns } from "../store/schedules/fire.js";
import {
  type NewSchedule,
  type ScheduleSpecRow,
  deleteSchedule as deleteStored,
  getSchedule as getStored,
  insertSchedule,
  listSchedules as listStored,
  updateSchedule as updateStored,
  upsertDeclaredSchedule,
} from "../store/schedules/rows.js";
import type { OverlapPolicy, ScheduleRow } from "../store/schema.js";
import { validateInput } from "../workflows/registry.js";
import { checkPayload } from "./payload.js";
import type { Call, RunsDeps } from "./runs-deps.js";
import { checkCron, checkTimeZone, fireKey, fireTimesBetween, jitterFor, nextFireAfter, scheduleClock } from "./schedule-times.js";

/** A schedule's spec as the transports hand it over (durations in ms). */
export interface ScheduleSpecInput {
  workflowName: string;
  input?: JsonValue | undefined;
  metadata?: Record<string, string> | undefined;
  cron?: string | undefined;
  timezone?: string | undefined;
  everyMs?: number | undefined;
  jitterMs?: number | undefined;
  overlap?: OverlapPolicy | undefined;
  catchupWindowMs?: number | undefined;
}

/** Fires that may not start the interval catch-up wants: at most this many runs per BackfillSchedule. */
export const maxBackfillFires = 10_000;
const defaultCatchupWindowMs = 60_000;

async function checkSpec(deps: RunsDeps, spec: ScheduleSpecInput): Promise<ScheduleSpecRow> {
  const workflow = deps.registry.find(spec.workflowName);
  if (!workflow) {
    const known = deps.registry.list().map((w) => w.name);
    throw new InvalidInputError(`unknown workflow "${spec.workflowName}"; this server loaded: ${known.length > 0 ? known.join(", ") : "none"}`);
  }
  const cron = spec.cron?.trim() || undefined;
  const hasEvery = spec.everyMs !== undefined;
  if (cron && hasEvery) throw new InvalidInputError("give either cron or every, not both");
  if (!cron && !hasEvery) throw new InvalidInputError("a schedule needs a cron expression or an every interval");
  if (hasEvery && !(Number.isFinite(spec.everyMs) && spec.everyMs! > 0)) {
    throw new InvalidInputError(`every must be more than zero, got ${spec.everyMs} ms`);
  }
  if (cron) checkCron(cron);
  const timezone = spec.timezone?.trim() || "UTC";
  checkTimeZone(timezone);
  for (const [name, ms] of [["jitter", spec.jitterMs], ["catchup_window", spec.catchupWindowMs]] as const) {
    if (ms !== undefined && !(Number.isFinite(ms) && ms >= 0)) throw new InvalidInputError(`${name} must not be negative, got ${ms} ms`);
  }
  const input = spec.input ?? {};
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new InvalidInputError(`input must be a JSON object, got ${input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`}`);
  }
  checkPayload(input, "input", { bytes: deps.maxInputBytes, setting: "CAIRN_MAX_INPUT_BYTES" });
  await validateInput(workflow, input);
  return {
    workflowName: workflow.name,
    input,
    metadata: spec.metadata ?? {},
    cron: cron ?? null,
    timezone,
    everyMs: hasEvery ? Math.round(spec.everyMs!) : null,
    jitterMs: Math.round(spec.jitterMs ?? 0),
    overlap: spec.overlap ?? "skip",
    catchupWindowMs: Math.round(spec.catchupWindowMs ?? defaultCatchupWindowMs),
  };
}

/** The next fire after `after` for this spec, and that plus its jitter (what the timer waits for). */
function nextFire(scheduleId: string, spec: ScheduleSpecRow, anchorAt: Date, after: Date): { nextFireAt: Date | null; fireDueAt: Date | null } {
  const next = nextFireAfter({ ...spec, anchorAt }, after);
  if (!next) return { nextFireAt: null, fireDueAt: null };
  return { nextFireAt: next, fireDueAt: new Date(next.getTime() + jitterFor(scheduleId, next, spec.jitterMs)) };
}

export async function createSchedule(deps: RunsDeps, call: Call, request: { scheduleId: string; spec: ScheduleSpecInput; paused: boolean }): Promise<ScheduleRow> {
  const spec = await checkSpec(deps, request.spec);
  const anchorAt = new Date();
  const next = request.paused ? { nextFireAt: null, fireDueAt: null } : nextFire(request.scheduleId, spec, anchorAt, anchorAt);
  call.throwIfDeadlinePassed();
  const row = await insertSchedule(deps.store.db, {
    ...spec,
    namespace: call.namespace,
    scheduleId: request.scheduleId,
    paused: request.paused,
    declared: false,
    anchorAt,
    ...next,
  });
  if (!row) throw new ScheduleExistsError(request.scheduleId, call.namespace);
  return row;
}

export async function getSchedule(deps: RunsDeps, call: Call, scheduleId: string): Promise<ScheduleRow> {
  const row = await getStored(deps.store.db, call.namespace, scheduleId);
  if (!row) throw new ScheduleNotFoundError(scheduleId, call.namespace);
  return row;
}

export function listSchedules(deps: RunsDeps, call: Call, workflowName?: string): Promise<ScheduleRow[]> {
  return listStored(deps.store.db, call.namespace, workflowName || undefined);
}

/** A new spec: the interval restarts from now, and the next fire is computed afresh (none while paused). */
export async function updateSchedule(deps: RunsDeps, call: Call, request: { scheduleId: string; spec: ScheduleSpecInput }): Promise<ScheduleRow> {
  const spec = await checkSpec(deps, request.spec);
  call.throwIfDeadlinePassed();
  const row = await updateStored(deps.store.db, call.namespace, request.scheduleId, (locked) => {
    const anchorAt = new Date();
    return { ...spec, anchorAt, ...(locked.paused ? {} : nextFire(request.scheduleId, spec, anchorAt, anchorAt)) };
  });
  if (!row) throw new ScheduleNotFoundError(request.scheduleId, call.namespace);
  return row;
}

export async function deleteSchedule(deps: RunsDeps, call: Call, scheduleId: string): Promise<void> {
  call.throwIfDeadlinePassed();
  if (!(await deleteStored(deps.store.db, call.namespace, scheduleId))) throw new ScheduleNotFoundError(scheduleId, call.namespace);
}

/** Pausing twice is answered like once. A fire buffered by OVERLAP_BUFFER_ONE is dropped. */
export async function pauseSchedule(deps: RunsDeps, call: Call, scheduleId: string): Promise<ScheduleRow> {
  call.throwIfDeadlinePassed();
  const row = await updateStored(deps.store.db, call.namespace, scheduleId, () => ({ paused: true, nextFireAt: null, fireDueAt: null, bufferedFireAt: null }));
  if (!row) throw new ScheduleNotFoundError(scheduleId, call.namespace);
  return row;
}

/** Resumes at the first fire time after now (the paused period is not made up); unpausing twice is answered like once. */
export async function unpauseSchedule(deps: RunsDeps, call: Call, scheduleId: string): Promise<ScheduleRow> {
  call.throwIfDeadlinePassed();
  const row = await updateStored(deps.store.db, call.namespace, scheduleId, (locked) =>
    locked.paused ? { paused: false, ...nextFire(scheduleId, locked, locked.anchorAt, new Date()) } : {},
  );
  if (!row) throw new ScheduleNotFoundError(scheduleId, call.namespace);
  return row;
}

/** One run now, whatever the overlap policy and even while paused; it becomes the schedule's latest run. */
export async function triggerSchedule(deps: RunsDeps, call: Call, scheduleId: string): Promise<ScheduledRun> {
  call.throwIfDeadlinePassed();
  const now = new Date();
  const made = await insertScheduledRuns(deps.store.db, call.namespace, scheduleId, [{ nominal: now, key: `${fireKey(scheduleId, now)}:trigger` }], clockOf(deps), true);
  if (!made) throw new ScheduleNotFoundError(scheduleId, call.namespace);
  await announce(deps, made);
  return made[0]!;
}

/**
 * One run per fire time in [start, end], with the fires' own idempotency keys: a fire time that already has its
 * run (fired on time, or an earlier backfill) is not started again.
 */
export async function backfillSchedule(
  deps: RunsDeps,
  call: Call,
  request: { scheduleId: string; start: Date; end: Date },
): Promise<{ fireTimes: number; runs: ScheduledRun[] }> {
  const row = await getSchedule(deps, call, request.scheduleId);
  if (request.start.getTime() > request.end.getTime()) throw new InvalidInputError("backfill start must not be after its end");
  if (request.end.getTime() > Date.now()) throw new InvalidInputError("backfill end must not be in the future: future fires are the schedule's own");
  const times = fireTimesBetween(row, request.start, request.end, maxBackfillFires);
  if (!times) throw new InvalidInputError(`the range holds more than ${maxBackfillFires} fire times; backfill it in parts`);
  call.throwIfDeadlinePassed();
  const made = await insertScheduledRuns(deps.store.db, call.namespace, request.scheduleId, times.map((nominal) => ({ nominal })), clockOf(deps));
  if (!made) throw new ScheduleNotFoundError(request.scheduleId, call.namespace);
  await announce(deps, made);
  return { fireTimes: times.length, runs: made };
}

/**
 * Schedules declared with the workflows this server loaded (`defineWorkflow({ schedules })`), upserted in
 * namespace "default" before the worker starts. A declaration that does not check stops start-up, naming it.
 */
export async function upsertDeclaredSchedules(deps: RunsDeps, logger: Logger): Promise<void> {
  for (const workflow of deps.registry.list()) {
    for (const declared of workflow.schedules ?? []) {
      let spec: ScheduleSpecRow;
      try {
        spec = await checkSpec(deps, declaredSpec(workflow.name, declared));
      } catch (error) {
        throw new InvalidInputError(`${workflow.file}: schedule "${declared.id}" of workflow "${workflow.name}": ${(error as Error).message}`);
      }
      const anchorAt = new Date();
      const schedule: NewSchedule = { ...spec, namespace: "default", scheduleId: declared.id, paused: false, declared: true, anchorAt, ...nextFire(declared.id, spec, anchorAt, anchorAt) };
      await upsertDeclaredSchedule(deps.store.db, schedule);
      logger.info({ scheduleId: declared.id, workflow: workflow.name }, "declared schedule upserted");
    }
  }
}

function declaredSpec(workflowName: string, declared: WorkflowSchedule<unknown>): ScheduleSpecInput {
  const ms = (value: WorkflowSchedule["every"]) => (value === undefined ? undefined : parseDuration(value));
  return {
    workflowName,
    input: (declared.input ?? {}) as JsonValue,
    metadata: declared.metadata,
    cron: declared.cron,
    timezone: declared.timezone,
    everyMs: ms(declared.every),
    jitterMs: ms(declared.jitter),
    overlap: declared.overlap satisfies ScheduleOverlap | undefined,
    catchupWindowMs: ms(declared.catchupWindow),
  };
}

function clockOf(deps: RunsDeps) {
  return scheduleClock((name) => deps.registry.find(name)?.timeoutMs);
}

async function announce(deps: RunsDeps, made: ScheduledRun[]): Promise<void> {
  const created = made.filter((run) => run.created);
  for (const run of created) if (run.timeoutAt) deps.worker.noteTimeout(run.timeoutAt);
  if (created.length > 0) await deps.worker.announce().catch(() => undefined);
}
