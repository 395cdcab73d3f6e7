// cairn.v1.ScheduleService: thin converters over server/runs/schedules.ts.
import { create } from "@bufbuild/protobuf";
import { type Duration, durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  BackfillScheduleResponseSchema,
  CreateScheduleResponseSchema,
  DeleteScheduleResponseSchema,
  GetScheduleResponseSchema,
  ListSchedulesResponseSchema,
  Overlap,
  PauseScheduleResponseSchema,
  type Schedule,
  ScheduleSchema,
  type ScheduleService,
  type ScheduleSpec,
  ScheduleSpecSchema,
  TriggerScheduleResponseSchema,
  UnpauseScheduleResponseSchema,
  UpdateScheduleResponseSchema,
} from "../../sdk/gen/cairn/v1/schedules_pb.js";
import type { JsonObject } from "@bufbuild/protobuf";
import { InvalidInputError } from "../core/errors.js";
import type { RunsDeps } from "../runs/runs-deps.js";
import {
  type ScheduleSpecInput,
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  triggerSchedule,
  unpauseSchedule,
  updateSchedule,
} from "../runs/schedules.js";
import type { OverlapPolicy, ScheduleRow } from "../runs/types.js";
import { callOf } from "./call-context.js";
import { timestamp } from "./convert.js";

const overlapFromProto: Record<Overlap, OverlapPolicy | undefined> = {
  [Overlap.UNSPECIFIED]: undefined,
  [Overlap.SKIP]: "skip",
  [Overlap.BUFFER_ONE]: "buffer_one",
  [Overlap.ALLOW_ALL]: "allow_all",
  [Overlap.CANCEL_OTHER]: "cancel_other",
};
const overlapToProto: Record<OverlapPolicy, Overlap> = {
  skip: Overlap.SKIP,
  buffer_one: Overlap.BUFFER_ONE,
  allow_all: Overlap.ALLOW_ALL,
  cancel_other: Overlap.CANCEL_OTHER,
};

function ms(duration: Duration | undefined): number | undefined {
  return duration ? Number(duration.seconds) * 1000 + Math.trunc(duration.nanos / 1e6) : undefined;
}

export function specFromProto(spec: ScheduleSpec | undefined): ScheduleSpecInput {
  if (!spec) throw new InvalidInputError("spec is required");
  return {
    workflowName: spec.workflowName,
    input: spec.input,
    metadata: spec.metadata,
    cron: spec.cron || undefined,
    timezone: spec.timezone || undefined,
    everyMs: ms(spec.every),
    jitterMs: ms(spec.jitter),
    overlap: overlapFromProto[spec.overlap],
    catchupWindowMs: ms(spec.catchupWindow),
  };
}

export function scheduleToProto(row: ScheduleRow): Schedule {
  return create(ScheduleSchema, {
    scheduleId: row.scheduleId,
    namespace: row.namespace,
    spec: create(ScheduleSpecSchema, {
      workflowName: row.workflowName,
      input: row.input as JsonObject,
      metadata: row.metadata,
      cron: row.cron ?? "",
      timezone: row.timezone,
      ...(row.everyMs !== null ? { every: durationFromMs(row.everyMs) } : {}),
      ...(row.jitterMs > 0 ? { jitter: durationFromMs(row.jitterMs) } : {}),
      overlap: overlapToProto[row.overlap],
      catchupWindow: durationFromMs(row.catchupWindowMs),
    }),
    paused: row.paused,
    nextFireAt: timestamp(row.nextFireAt),
    lastFireAt: timestamp(row.lastFireAt),
    lastRunId: row.lastRunId ?? "",
    skippedFires: BigInt(row.skippedFires),
    bufferedFireAt: timestamp(row.bufferedFireAt),
    createdAt: timestamp(row.createdAt),
    updatedAt: timestamp(row.updatedAt),
    declared: row.declared,
  });
}

export function createScheduleService(deps: RunsDeps): ServiceImpl<typeof ScheduleService> {
  return {
    async createSchedule(request, context) {
      const row = await createSchedule(deps, callOf(context), { scheduleId: request.scheduleId, spec: specFromProto(request.spec), paused: request.paused });
      return create(CreateScheduleResponseSchema, { schedule: scheduleToProto(row) });
    },
    async getSchedule(request, context) {
      return create(GetScheduleResponseSchema, { schedule: scheduleToProto(await getSchedule(deps, callOf(context), request.scheduleId)) });
    },
    async listSchedules(request, context) {
      const rows = await listSchedules(deps, callOf(context), request.workflowName);
      return create(ListSchedulesResponseSchema, { schedules: rows.map(scheduleToProto) });
    },
    async updateSchedule(request, context) {
      const row = await updateSchedule(deps, callOf(context), { scheduleId: request.scheduleId, spec: specFromProto(request.spec) });
      return create(UpdateScheduleResponseSchema, { schedule: scheduleToProto(row) });
    },
    async deleteSchedule(request, context) {
      await deleteSchedule(deps, callOf(context), request.scheduleId);
      return create(DeleteScheduleResponseSchema, {});
    },
    async pauseSchedule(request, context) {
      return create(PauseScheduleResponseSchema, { schedule: scheduleToProto(await pauseSchedule(deps, callOf(context), request.scheduleId)) });
    },
    async unpauseSchedule(request, context) {
      return create(UnpauseScheduleResponseSchema, { schedule: scheduleToProto(await unpauseSchedule(deps, callOf(context), request.scheduleId)) });
    },
    async triggerSchedule(request, context) {
      const run = await triggerSchedule(deps, callOf(context), request.scheduleId);
      return create(TriggerScheduleResponseSchema, { runId: run.runId });
    },
    async backfillSchedule(request, context) {
      if (!request.start || !request.end) throw new InvalidInputError("backfill needs start and end");
      const result = await backfillSchedule(deps, callOf(context), {
        scheduleId: request.scheduleId,
        start: timestampDate(request.start),
        end: timestampDate(request.end),
      });
      return create(BackfillScheduleResponseSchema, {
        created: result.runs.filter((r) => r.created).length,
        fireTimes: result.fireTimes,
        runIds: result.runs.map((r) => r.runId),
      });
    },
  };
}
