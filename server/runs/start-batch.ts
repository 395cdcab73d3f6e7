/**
 * StartBatch: one operation over every run a filter selects. The selection is frozen when the batch is stored
 * (store/batches/start.ts); a batch runner on any server works through it (worker/batch-runner.ts). A dry run
 * answers the count and a sample and stores nothing.
 */
import { randomUUID } from "node:crypto";
import { InvalidInputError } from "../core/errors.js";
import { previewBatch, startBatch as storeBatch } from "../store/batches/start.js";
import type { RunFilter } from "../store/runs/read.js";
import { type BatchOperation, batchOperations, type BatchRow } from "../store/schema.js";
import { runFilterOf, type RunSelection } from "./list-runs.js";
import type { Call, RunsDeps } from "./runs-deps.js";

const sampleSize = 20;

export interface StartBatchRequest {
  filter: RunSelection | undefined;
  operation: BatchOperation | undefined;
  dryRun: boolean;
  reason: string;
}

export async function startBatch(
  deps: RunsDeps,
  call: Call,
  request: StartBatchRequest,
): Promise<{ batch?: BatchRow; matchedCount: number; sampleRunIds: string[] }> {
  const operation = request.operation;
  if (!operation || !batchOperations.includes(operation)) {
    throw new InvalidInputError(`operation must be one of ${batchOperations.join(", ")}`);
  }
  const filter = request.filter ? runFilterOf(request.filter) : {};
  if (!hasCondition(filter)) {
    throw new InvalidInputError(
      "filter has no condition, so it would select every run; give at least one of workflow_name, statuses, metadata, " +
        "parent_run_id, created_after/before, ended_after/before, waiting_for, waiting_event_type, waiting_correlation_id",
    );
  }
  if (request.dryRun) {
    const preview = await previewBatch(deps.store.db, call.namespace, filter, sampleSize);
    return { matchedCount: preview.count, sampleRunIds: preview.sample };
  }
  call.throwIfDeadlinePassed();
  const batch = await storeBatch(deps.store.db, {
    id: randomUUID(),
    namespace: call.namespace,
    operation,
    filter,
    filterJson: filterToJson(filter),
    reason: request.reason,
  });
  return { batch, matchedCount: batch.selectedCount, sampleRunIds: [] };
}

function hasCondition(filter: RunFilter): boolean {
  return Object.values(filter).some((value) => (Array.isArray(value) ? value.length > 0 : value !== undefined));
}

/** As stored in batches.filter: the set conditions only, instants as ISO strings. */
function filterToJson(filter: RunFilter): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(filter)) {
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    json[key] = value instanceof Date ? value.toISOString() : value;
  }
  return json;
}

/** The stored filter back in RunSelection's shape (GetBatch shows it). */
export function filterFromJson(json: Record<string, unknown>): RunSelection {
  const date = (v: unknown) => (typeof v === "string" ? new Date(v) : undefined);
  return {
    workflowName: json.workflowName as string | undefined,
    statuses: (json.statuses as RunSelection["statuses"] | undefined) ?? [],
    parentRunId: json.parentRunId as string | undefined,
    scheduleId: json.scheduleId as string | undefined,
    createdAfter: date(json.createdAfter),
    createdBefore: date(json.createdBefore),
    endedAfter: date(json.endedAfter),
    endedBefore: date(json.endedBefore),
    waitingFor: json.waitingFor as RunSelection["waitingFor"],
    waitingEventType: json.waitingEventType as string | undefined,
    waitingCorrelationId: json.waitingCorrelationId as string | undefined,
    metadata: json.metadata as Record<string, string> | undefined,
  };
}
