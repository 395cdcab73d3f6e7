/**
 * Typed ScheduleService calls: `client.schedules.create({ scheduleId, workflow, cron | every, ... })` and the
 * rest. Errors are CairnError, as for the other calls (INVALID_ARGUMENT names what is wrong with a spec).
 */
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient, type Transport } from "@connectrpc/connect";
import { CairnError } from "./errors.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Overlap, type Schedule, ScheduleService, ScheduleSpecSchema } from "./gen/cairn/v1/schedules_pb.js";
import { type Duration, type JsonObject, parseDuration, type ScheduleOverlap } from "./workflow.js";

export interface ScheduleSpecOptions {
  /** A workflow name, a `defineWorkflow` value or a `workflowRef`. */
  workflow: string | { readonly name: string };
  input?: JsonObject;
  /** A cron expression (5 fields, or 6 with seconds first); exactly one of cron and every. */
  cron?: string;
  /** IANA time zone of the cron (default UTC). */
  timezone?: string;
  every?: Duration;
  jitter?: Duration;
  /** Default "skip". */
  overlap?: ScheduleOverlap;
  /** Default 1 minute. */
  catchupWindow?: Duration;
  metadata?: Record<string, string>;
}

export interface ScheduleInfo {
  scheduleId: string;
  namespace: string;
  workflowName: string;
  input: JsonObject;
  cron?: string;
  timezone: string;
  everyMs?: number;
  jitterMs: number;
  overlap: ScheduleOverlap;
  catchupWindowMs: number;
  metadata: Record<string, string>;
  paused: boolean;
  declared: boolean;
  nextFireAt?: Date;
  lastFireAt?: Date;
  lastRunId?: string;
  bufferedFireAt?: Date;
  skippedFires: number;
  createdAt?: Date;
  updatedAt?: Date;
}

export interface ScheduleClient {
  create(scheduleId: string, spec: ScheduleSpecOptions, options?: { paused?: boolean }): Promise<ScheduleInfo>;
  get(scheduleId: string): Promise<ScheduleInfo>;
  list(filter?: { workflow?: string | { readonly name: string } }): Promise<ScheduleInfo[]>;
  update(scheduleId: string, spec: ScheduleSpecOptions): Promise<ScheduleInfo>;
  delete(scheduleId: string): Promise<void>;
  pause(scheduleId: string): Promise<ScheduleInfo>;
  unpause(scheduleId: string): Promise<ScheduleInfo>;
  /** One run now; resolves its run id. */
  trigger(scheduleId: string): Promise<string>;
  /** One run per fire time in [start, end]; fire times that have their run already are not started again. */
  backfill(scheduleId: string, start: Date, end: Date): Promise<{ created: number; fireTimes: number; runIds: string[] }>;
  readonly raw: Client<typeof ScheduleService>;
}

const overlapToProto: Record<ScheduleOverlap, Overlap> = {
  skip: Overlap.SKIP,
  buffer_one: Overlap.BUFFER_ONE,
  allow_all: Overlap.ALLOW_ALL,
  cancel_other: Overlap.CANCEL_OTHER,
};
const overlapNames: Record<number, ScheduleOverlap> = {
  [Overlap.UNSPECIFIED]: "skip",
  [Overlap.SKIP]: "skip",
  [Overlap.BUFFER_ONE]: "buffer_one",
  [Overlap.ALLOW_ALL]: "allow_all",
  [Overlap.CANCEL_OTHER]: "cancel_other",
};

/** Numbers go as they are (the server refuses a negative or zero interval, naming it); text is parsed here. */
function duration(value: Duration, field: string): { seconds: bigint; nanos: number } {
  let ms: number;
  if (typeof value === "number") ms = value;
  else {
    try {
      ms = parseDuration(value);
    } catch (error) {
      throw new CairnError(`${field}: ${(error as Error).message}`, Code.InvalidArgument);
    }
  }
  const whole = Math.trunc(ms / 1000);
  return { seconds: BigInt(whole), nanos: Math.round((ms - whole * 1000) * 1_000_000) };
}

function specToProto(spec: ScheduleSpecOptions): MessageInitShape<typeof ScheduleSpecSchema> {
  return {
    workflowName: typeof spec.workflow === "string" ? spec.workflow : spec.workflow.name,
    ...(spec.input ? { input: spec.input } : {}),
    cron: spec.cron ?? "",
    timezone: spec.timezone ?? "",
    ...(spec.every !== undefined ? { every: duration(spec.every, "every") } : {}),
    ...(spec.jitter !== undefined ? { jitter: duration(spec.jitter, "jitter") } : {}),
    overlap: spec.overlap ? overlapToProto[spec.overlap] : Overlap.UNSPECIFIED,
    ...(spec.catchupWindow !== undefined ? { catchupWindow: duration(spec.catchupWindow, "catchupWindow") } : {}),
    metadata: { ...spec.metadata },
  };
}

const ms = (d: { seconds: bigint; nanos: number } | undefined) => (d ? Number(d.seconds) * 1000 + Math.trunc(d.nanos / 1e6) : undefined);
const date = (t: Timestamp | undefined) => (t ? timestampDate(t) : undefined);

export function scheduleInfo(schedule: Schedule): ScheduleInfo {
  const spec = schedule.spec;
  const optional = <K extends string, V>(key: K, value: V | undefined) => (value === undefined ? {} : ({ [key]: value } as Record<K, V>));
  return {
    scheduleId: schedule.scheduleId,
    namespace: schedule.namespace,
    workflowName: spec?.workflowName ?? "",
    input: (spec?.input ?? {}) as JsonObject,
    ...optional("cron", spec?.cron || undefined),
    timezone: spec?.timezone ?? "UTC",
    ...optional("everyMs", ms(spec?.every)),
    jitterMs: ms(spec?.jitter) ?? 0,
    overlap: overlapNames[spec?.overlap ?? 0] ?? "skip",
    catchupWindowMs: ms(spec?.catchupWindow) ?? 0,
    metadata: { ...spec?.metadata },
    paused: schedule.paused,
    declared: schedule.declared,
    ...optional("nextFireAt", date(schedule.nextFireAt)),
    ...optional("lastFireAt", date(schedule.lastFireAt)),
    ...optional("lastRunId", schedule.lastRunId || undefined),
    ...optional("bufferedFireAt", date(schedule.bufferedFireAt)),
    skippedFires: Number(schedule.skippedFires),
    ...optional("createdAt", date(schedule.createdAt)),
    ...optional("updatedAt", date(schedule.updatedAt)),
  };
}

export function createScheduleClient(transport: Transport): ScheduleClient {
  const raw = createClient(ScheduleService, transport);
  async function rpc<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw CairnError.from(error);
    }
  }
  const one = (schedule: Schedule | undefined) => {
    if (!schedule) throw new CairnError("ScheduleService answered without a schedule", Code.Internal);
    return scheduleInfo(schedule);
  };
  return {
    raw,
    async create(scheduleId, spec, options = {}) {
      const request = { scheduleId, spec: specToProto(spec), paused: options.paused ?? false };
      return one((await rpc(() => raw.createSchedule(request))).schedule);
    },
    async get(scheduleId) {
      return one((await rpc(() => raw.getSchedule({ scheduleId }))).schedule);
    },
    async list(filter = {}) {
      const workflowName = filter.workflow === undefined ? "" : typeof filter.workflow === "string" ? filter.workflow : filter.workflow.name;
      return (await rpc(() => raw.listSchedules({ workflowName }))).schedules.map(scheduleInfo);
    },
    async update(scheduleId, spec) {
      const request = { scheduleId, spec: specToProto(spec) };
      return one((await rpc(() => raw.updateSchedule(request))).schedule);
    },
    async delete(scheduleId) {
      await rpc(() => raw.deleteSchedule({ scheduleId }));
    },
    async pause(scheduleId) {
      return one((await rpc(() => raw.pauseSchedule({ scheduleId }))).schedule);
    },
    async unpause(scheduleId) {
      return one((await rpc(() => raw.unpauseSchedule({ scheduleId }))).schedule);
    },
    async trigger(scheduleId) {
      return (await rpc(() => raw.triggerSchedule({ scheduleId }))).runId;
    },
    async backfill(scheduleId, start, end) {
      const response = await rpc(() => raw.backfillSchedule({ scheduleId, start: timestampFromDate(start), end: timestampFromDate(end) }));
      return { created: response.created, fireTimes: response.fireTimes, runIds: [...response.runIds] };
    },
  };
}
