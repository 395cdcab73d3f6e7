/** Batches (StartBatch, GetBatch, ListBatches) ↔ cairn.v1 messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WaitKind } from "../../sdk/gen/cairn/v1/types_pb.js";
import {
  type Batch,
  BatchFailureSchema,
  BatchOperation,
  BatchSchema,
  BatchStatus,
  type RunFilter,
  RunFilterSchema,
} from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { BatchFailureRow } from "../runs/get-batch.js";
import type { RunSelection } from "../runs/list-runs.js";
import { filterFromJson } from "../runs/start-batch.js";
import type { BatchOperation as StoredOperation, BatchRow, BatchStatus as StoredBatchStatus } from "../runs/types.js";
import { dateFromTimestamp, statusesFromProto, statusToProto, waitKindFromProto } from "./convert.js";

const operations: Record<StoredOperation, BatchOperation> = {
  cancel: BatchOperation.CANCEL,
  pause: BatchOperation.PAUSE,
  resume: BatchOperation.RESUME,
  retry: BatchOperation.RETRY,
};

const statuses: Record<StoredBatchStatus, BatchStatus> = {
  running: BatchStatus.RUNNING,
  completed: BatchStatus.COMPLETED,
  failed: BatchStatus.FAILED,
};

const waitKinds: Record<string, WaitKind> = {
  timer: WaitKind.TIMER,
  event: WaitKind.EVENT,
  retry: WaitKind.RETRY,
  child: WaitKind.CHILD,
  agent: WaitKind.AGENT,
};

/** undefined for UNSPECIFIED (the service refuses it, naming the operations). */
export function operationFromProto(operation: BatchOperation): StoredOperation | undefined {
  for (const [stored, proto] of Object.entries(operations)) if (proto === operation) return stored as StoredOperation;
  return undefined;
}

export function filterFromProto(filter: RunFilter | undefined): RunSelection | undefined {
  if (!filter) return undefined;
  return {
    workflowName: filter.workflowName,
    statuses: statusesFromProto(filter.statuses),
    parentRunId: filter.parentRunId,
    scheduleId: filter.scheduleId,
    createdAfter: dateFromTimestamp(filter.createdAfter),
    createdBefore: dateFromTimestamp(filter.createdBefore),
    endedAfter: dateFromTimestamp(filter.endedAfter),
    endedBefore: dateFromTimestamp(filter.endedBefore),
    waitingFor: waitKindFromProto(filter.waitingFor),
    waitingEventType: filter.waitingEventType,
    waitingCorrelationId: filter.waitingCorrelationId,
    metadata: filter.metadata,
  };
}

function filterToProto(json: Record<string, unknown>): RunFilter {
  const f = filterFromJson(json);
  const ts = (d: Date | undefined) => (d ? timestampFromDate(d) : undefined);
  return create(RunFilterSchema, {
    workflowName: f.workflowName ?? "",
    statuses: f.statuses.map((s) => statusToProto[s]),
    parentRunId: f.parentRunId ?? "",
    scheduleId: f.scheduleId ?? "",
    createdAfter: ts(f.createdAfter),
    createdBefore: ts(f.createdBefore),
    endedAfter: ts(f.endedAfter),
    endedBefore: ts(f.endedBefore),
    waitingFor: f.waitingFor ? (waitKinds[f.waitingFor] ?? WaitKind.UNSPECIFIED) : WaitKind.UNSPECIFIED,
    waitingEventType: f.waitingEventType ?? "",
    waitingCorrelationId: f.waitingCorrelationId ?? "",
    metadata: f.metadata ?? {},
  });
}

export function batchToProto(row: BatchRow, failures: readonly BatchFailureRow[] = []): Batch {
  return create(BatchSchema, {
    batchId: row.id,
    operation: operations[row.operation],
    status: statuses[row.status],
    filter: filterToProto(row.filter),
    reason: row.reason,
    error: row.error ?? "",
    selectedCount: BigInt(row.selectedCount),
    processedCount: BigInt(row.processedCount),
    skippedCount: BigInt(row.skippedCount),
    failedCount: BigInt(row.failedCount),
    createdAt: timestampFromDate(row.createdAt),
    finishedAt: row.finishedAt ? timestampFromDate(row.finishedAt) : undefined,
    failures: failures.map((f) => create(BatchFailureSchema, { runId: f.runId, message: f.error })),
  });
}
