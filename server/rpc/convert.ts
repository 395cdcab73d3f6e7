/** Store rows and engine values ↔ cairn.v1 messages. */
import { create, fromJson, type JsonValue as ProtoJson, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  AgentWaitSchema,
  ChildWaitSchema,
  EntryKind,
  EventWaitSchema,
  type Failure,
  FailureSchema,
  type HistoryEntry,
  HistoryEntrySchema,
  type Run,
  RunSchema,
  RetryWaitSchema,
  RunStatus,
  TimerWaitSchema,
  type WaitingOn as WaitingOnMessage,
  WaitingOnSchema,
} from "../../sdk/gen/cairn/v1/types_pb.js";
import type { JsonValue } from "../../sdk/workflow.js";
import type { EntryKind as StoredKind, JournalEntry } from "../core/journal.js";
import type { FailureInfo } from "../core/json.js";
import type { RunRow, RunStatus as StoredStatus, WaitingOn } from "../store/schema.js";

const statusToProto: Record<StoredStatus, RunStatus> = {
  queued: RunStatus.QUEUED,
  running: RunStatus.RUNNING,
  waiting: RunStatus.WAITING,
  completed: RunStatus.COMPLETED,
  failed: RunStatus.FAILED,
  cancelled: RunStatus.CANCELLED,
};

export function statusFromProto(status: RunStatus): StoredStatus | undefined {
  for (const [stored, proto] of Object.entries(statusToProto)) if (proto === status) return stored as StoredStatus;
  return undefined;
}

const kindToProto: Record<StoredKind, EntryKind> = {
  step_completed: EntryKind.STEP_COMPLETED,
  step_failed: EntryKind.STEP_FAILED,
  step_attempt_failed: EntryKind.STEP_ATTEMPT_FAILED,
  timer_started: EntryKind.TIMER_STARTED,
  timer_fired: EntryKind.TIMER_FIRED,
  event_wait_started: EntryKind.EVENT_WAIT_STARTED,
  event_received: EntryKind.EVENT_RECEIVED,
  event_wait_timed_out: EntryKind.EVENT_WAIT_TIMED_OUT,
  child_started: EntryKind.CHILD_STARTED,
  child_completed: EntryKind.CHILD_COMPLETED,
  child_failed: EntryKind.CHILD_FAILED,
  agent_turn_started: EntryKind.AGENT_TURN_STARTED,
  agent_turn_completed: EntryKind.AGENT_TURN_COMPLETED,
  agent_turn_failed: EntryKind.AGENT_TURN_FAILED,
  run_completed: EntryKind.RUN_COMPLETED,
  run_failed: EntryKind.RUN_FAILED,
  run_cancelled: EntryKind.RUN_CANCELLED,
};

export function valueFromJson(json: JsonValue): Value {
  return fromJson(ValueSchema, json as ProtoJson);
}

export function valueToJson(value: Value): JsonValue {
  return toJson(ValueSchema, value) as JsonValue;
}

function timestamp(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

export function dateFromTimestamp(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

export function failureToProto(failure: FailureInfo): Failure {
  return create(FailureSchema, {
    name: failure.name,
    message: failure.message,
    stack: failure.stack ?? "",
    ...(failure.details === undefined ? {} : { details: valueFromJson(failure.details) }),
  });
}

export function runToProto(row: RunRow): Run {
  return create(RunSchema, {
    runId: row.id,
    workflowName: row.workflowName,
    status: statusToProto[row.status],
    input: valueFromJson(row.input),
    ...(row.status === "completed" ? { output: valueFromJson(row.output ?? null) } : {}),
    ...(row.error ? { error: failureToProto(row.error) } : {}),
    parentRunId: row.parentRunId ?? "",
    createdAt: timestamp(row.createdAt),
    updatedAt: timestamp(row.updatedAt),
    completedAt: timestamp(row.completedAt),
    namespace: row.namespace,
    metadata: row.metadata,
    idempotencyKey: row.idempotencyKey ?? "",
    startedAt: timestamp(row.startedAt),
    activationCount: row.activationCount,
    ...(row.status === "waiting" && row.waitingOn ? { waitingOn: waitingOnToProto(row.waitingOn) } : {}),
  });
}

function waitingOnToProto(waiting: WaitingOn): WaitingOnMessage {
  if (waiting.kind === "retry") {
    return create(WaitingOnSchema, {
      name: waiting.name,
      target: {
        case: "retry",
        value: create(RetryWaitSchema, { stepName: waiting.name, nextAttempt: waiting.nextAttempt, retryAt: timestampFromDate(new Date(waiting.retryAt)) }),
      },
    });
  }
  if (waiting.kind === "agent") {
    return create(WaitingOnSchema, {
      name: waiting.name,
      target: {
        case: "agent",
        value: create(AgentWaitSchema, {
          turnId: waiting.turnId,
          agent: waiting.agent,
          timeoutAt: waiting.timeoutAt ? timestampFromDate(new Date(waiting.timeoutAt)) : undefined,
        }),
      },
    });
  }
  if (waiting.kind === "child") {
    return create(WaitingOnSchema, { name: waiting.name, target: { case: "child", value: create(ChildWaitSchema, { runId: waiting.childRunId }) } });
  }
  if (waiting.kind === "timer") {
    return create(WaitingOnSchema, {
      name: waiting.name,
      target: { case: "timer", value: create(TimerWaitSchema, { fireAt: timestampFromDate(new Date(waiting.fireAt)) }) },
    });
  }
  return create(WaitingOnSchema, {
    name: waiting.name,
    target: {
      case: "event",
      value: create(EventWaitSchema, {
        eventType: waiting.eventType,
        correlationId: waiting.correlationId,
        timeoutAt: waiting.timeoutAt ? timestampFromDate(new Date(waiting.timeoutAt)) : undefined,
      }),
    },
  });
}

export function entryToProto(entry: JournalEntry): HistoryEntry {
  return create(HistoryEntrySchema, {
    sequence: BigInt(entry.sequence),
    kind: kindToProto[entry.kind],
    name: entry.name,
    ...(entry.result === undefined ? {} : { result: valueFromJson(entry.result) }),
    ...(entry.error ? { error: failureToProto(entry.error) } : {}),
    attempt: entry.attempt,
    createdAt: timestamp(entry.createdAt),
    startedAt: timestamp(entry.startedAt),
    fireAt: timestamp(entry.fireAt),
    timeoutAt: timestamp(entry.timeoutAt),
    eventType: entry.eventType ?? "",
    correlationId: entry.correlationId ?? "",
    eventId: entry.eventId ?? "",
    targetRunId: entry.targetRunId ?? "",
    targetTurnId: entry.targetTurnId ?? "",
  });
}
