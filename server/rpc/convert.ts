/** Store rows and engine values ↔ cairn.v1 messages. */
import type { FlowHold } from "../runs/get-run.js";
import { create, fromJson, type JsonValue as ProtoJson, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  EntryKind,
  type Failure,
  FailureSchema,
  type HistoryEntry,
  HistoryEntrySchema,
  type Run,
  RunSchema,
  FlowHoldSchema,
  RunStatus,
  WaitKind,
  type WaitingOn as WaitingOnMessage,
  WaitingOnSchema,
} from "../../sdk/gen/cairn/v1/types_pb.js";
import type { JsonValue } from "../../sdk/workflow.js";
import { type EntryKind as StoredKind, entryFields, entryKinds, type JournalEntry } from "../core/journal.js";
import { summarizeEntry } from "../core/primitives/index.js";
import { describeWait, waitTarget, type WaitKind as StoredWaitKind } from "../core/waits.js";
import { InvalidInputError } from "../core/errors.js";
import type { FailureInfo } from "../core/json.js";
import type { RunRow, RunStatus as StoredStatus, WaitingOn } from "../runs/types.js";

export const statusToProto: Record<StoredStatus, RunStatus> = {
  queued: RunStatus.QUEUED,
  running: RunStatus.RUNNING,
  waiting: RunStatus.WAITING,
  completed: RunStatus.COMPLETED,
  failed: RunStatus.FAILED,
  cancelled: RunStatus.CANCELLED,
  paused: RunStatus.PAUSED,
};

export function statusFromProto(status: RunStatus): StoredStatus | undefined {
  for (const [stored, proto] of Object.entries(statusToProto)) if (proto === status) return stored as StoredStatus;
  return undefined;
}

/** cairn.v1.EntryKind mirrors the stored kinds by name: step_completed ↔ ENTRY_KIND_STEP_COMPLETED. */
const kindToProto = Object.fromEntries(
  entryKinds.map((kind) => [kind, EntryKind[kind.toUpperCase() as keyof typeof EntryKind]]),
) as Record<StoredKind, EntryKind>;

export function valueFromJson(json: JsonValue): Value {
  return fromJson(ValueSchema, json as ProtoJson);
}

export function valueToJson(value: Value): JsonValue {
  return toJson(ValueSchema, value) as JsonValue;
}

/** A protobuf Value a caller sent as JSON; one that carries none (no kind set, NaN, Infinity) is the caller's mistake. */
export function jsonFromValue(value: Value, field: string): JsonValue {
  try {
    return valueToJson(value);
  } catch (error) {
    throw new InvalidInputError(`${field} is not a JSON value: ${(error as Error).message}`);
  }
}

export function timestamp(date: Date | null | undefined): Timestamp | undefined {
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

export function runToProto(row: RunRow, hold?: FlowHold): Run {
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
    forkedFromRunId: row.forkedFromRunId ?? "",
    scheduleId: row.scheduleId ?? "",
    timeoutAt: timestamp(row.timeoutAt),
    priority: row.priority ?? 0,
    ...(hold ? { heldBy: create(FlowHoldSchema, { gate: hold.gate, key: hold.key, position: BigInt(hold.position), availableAt: timestamp(hold.availableAt) }) } : {}),
    ...(row.status === "waiting" && row.waitingOn ? { waitingOn: waitingOnToProto(row.waitingOn) } : {}),
  });
}

/** Through core/waits.ts: every wait kind's proto target and description come from its descriptor. */
export function waitingOnToProto(waiting: WaitingOn): WaitingOnMessage {
  const target = waitTarget(waiting);
  return create(WaitingOnSchema, {
    name: waiting.name,
    description: describeWait(waiting),
    target: { case: target.case, value: withTimestamps(target.value) } as WaitingOnMessage["target"],
  });
}

/** Plain fields with Dates → message init fields with Timestamps (undefined fields dropped). */
function withTimestamps(fields: Record<string, unknown>): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    init[key] = value instanceof Date ? timestampFromDate(value) : value;
  }
  return init;
}

export function entryToProto(journalEntry: JournalEntry): HistoryEntry {
  const entry = entryFields(journalEntry);
  return create(HistoryEntrySchema, {
    sequence: BigInt(journalEntry.sequence),
    kind: kindToProto[journalEntry.kind],
    name: entry.name,
    ...(entry.result === undefined ? {} : { result: valueFromJson(entry.result) }),
    ...(entry.error ? { error: failureToProto(entry.error) } : {}),
    attempt: entry.attempt,
    createdAt: timestamp(journalEntry.createdAt),
    startedAt: timestamp(entry.startedAt),
    fireAt: timestamp(entry.fireAt),
    timeoutAt: timestamp(entry.timeoutAt),
    eventType: entry.eventType ?? "",
    correlationId: entry.correlationId ?? "",
    eventId: entry.eventId ?? "",
    targetRunId: entry.targetRunId ?? "",
    targetTurnId: entry.targetTurnId ?? "",
    summary: summarizeEntry(journalEntry),
  });
}

const waitKinds: Record<number, StoredWaitKind | undefined> = {
  [WaitKind.UNSPECIFIED]: undefined,
  [WaitKind.TIMER]: "timer",
  [WaitKind.EVENT]: "event",
  [WaitKind.RETRY]: "retry",
  [WaitKind.CHILD]: "child",
  [WaitKind.AGENT]: "agent",
};

export function waitKindFromProto(kind: WaitKind): StoredWaitKind | undefined {
  if (!(kind in waitKinds)) throw new InvalidInputError(`waiting_for ${kind} is not a known wait kind`);
  return waitKinds[kind];
}

export function statusesFromProto(statuses: readonly number[]) {
  return statuses.map((s) => {
    const stored = statusFromProto(s);
    if (!stored) throw new InvalidInputError(`statuses contains an unknown status (${s})`);
    return stored;
  });
}
