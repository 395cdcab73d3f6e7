/**
 * cairn.v1.WorkflowService: a thin transport over the runs service
 * (server/runs). It turns messages into plain requests and rows back into
 * messages; requests arrive already checked against their proto rules
 * (`validation.ts`), and domain errors are mapped to Connect codes by the
 * error-mapping interceptor.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import {
  AwaitRunResponseSchema,
  CancelRunResponseSchema,
  CreateRunResponseSchema,
  GetBatchResponseSchema,
  ListBatchesResponseSchema,
  StartBatchResponseSchema,
  GetRunHistoryResponseSchema,
  GetRunResponseSchema,
  ListRunsResponseSchema,
  PauseRunResponseSchema,
  ForkRunResponseSchema,
  RetryRunResponseSchema,
  ResumeRunResponseSchema,
  ExplainRunResponseSchema,
  NearMissReason,
  ListWorkflowsResponseSchema,
  SendEventResponseSchema,
  WatchRunResponseSchema,
  WatchRunsResponseSchema,
  WorkflowSchema,
  type WorkflowService,
} from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { InvalidInputError } from "../core/errors.js";
import { awaitRun } from "../runs/await-run.js";
import { cancelRun } from "../runs/cancel-run.js";
import { createRun } from "../runs/create-run.js";
import { getBatch, listBatches } from "../runs/get-batch.js";
import { getRunWithHold } from "../runs/get-run.js";
import { startBatch } from "../runs/start-batch.js";
import { listRuns } from "../runs/list-runs.js";
import { forkRun } from "../runs/fork-run.js";
import { pauseRun } from "../runs/pause-run.js";
import { retryRun } from "../runs/retry-run.js";
import { explainRun } from "../runs/explain-run.js";
import { resumeRun } from "../runs/resume-run.js";
import { runHistory, sequenceAfter } from "../runs/run-history.js";
import type { RunsDeps } from "../runs/runs-deps.js";
import { sendEvent } from "../runs/send-event.js";
import { watchRun } from "../runs/watch-run.js";
import { mapStream } from "./map-stream.js";
import { watchRuns } from "../runs/watch-runs.js";
import { inputJsonSchema } from "../workflows/json-schema.js";
import { callOf } from "./call-context.js";
import { traceParentKey } from "./tracing-interceptor.js";
import { batchToProto, filterFromProto, operationFromProto } from "./batch-convert.js";
import { dateFromTimestamp, entryToProto, jsonFromValue, runToProto, statusesFromProto, timestamp, waitKindFromProto, waitingOnToProto } from "./convert.js";
import type { RunExplanation } from "../runs/explain-run.js";
import type { NearMissReason as StoredNearMissReason } from "../runs/explain-lines.js";
import type { ProcessRow } from "../runs/types.js";

const defaultAwaitMs = 30_000;
const maxAwaitMs = 5 * 60_000;

export function createWorkflowService(deps: RunsDeps): ServiceImpl<typeof WorkflowService> {
  return {
    listWorkflows() {
      return create(ListWorkflowsResponseSchema, {
        workflows: deps.registry.list().map((w) =>
          create(WorkflowSchema, {
            name: w.name,
            sourceFile: w.file,
            hasInputSchema: w.input !== undefined,
            inputSchemaVendor: w.input?.["~standard"].vendor ?? "",
            inputJsonSchema: inputJsonSchema(w.input),
          }),
        ),
      });
    },

    async createRun(request, context) {
      const { run, deduplicated } = await createRun(deps, callOf(context), {
        workflowName: request.workflowName,
        input: request.input ? jsonFromValue(request.input, "input") : {},
        idempotencyKey: request.idempotencyKey,
        metadata: request.metadata,
        eagerStart: request.eagerStart,
        traceParent: context.values.get(traceParentKey),
        timeoutMs: request.timeout ? durationMs(request.timeout) : undefined,
        priority: request.priority,
      });
      return create(CreateRunResponseSchema, { run: runToProto(run), deduplicated });
    },

    async getRun(request, context) {
      const { run, hold } = await getRunWithHold(deps, callOf(context), request.runId);
      return create(GetRunResponseSchema, { run: runToProto(run, hold) });
    },

    async listRuns(request, context) {
      const page = await listRuns(deps, callOf(context), {
        workflowName: request.workflowName,
        statuses: statusesFromProto(request.statuses),
        parentRunId: request.parentRunId,
        scheduleId: request.scheduleId,
        createdAfter: dateFromTimestamp(request.createdAfter),
        createdBefore: dateFromTimestamp(request.createdBefore),
        endedAfter: dateFromTimestamp(request.endedAfter),
        endedBefore: dateFromTimestamp(request.endedBefore),
        waitingFor: waitKindFromProto(request.waitingFor),
        waitingEventType: request.waitingEventType,
        waitingCorrelationId: request.waitingCorrelationId,
        metadata: request.metadata,
        pageSize: request.pageSize,
        pageToken: request.pageToken,
      });
      return create(ListRunsResponseSchema, { runs: page.runs.map((row) => runToProto(row)), nextPageToken: page.nextPageToken });
    },

    async getRunHistory(request, context) {
      const history = await runHistory(deps, callOf(context), {
        runId: request.runId,
        afterSequence: sequenceAfter(request.afterSequence),
        pageSize: request.pageSize,
      });
      return create(GetRunHistoryResponseSchema, { entries: history.entries.map(entryToProto), hasMore: history.hasMore });
    },

    async cancelRun(request, context) {
      const run = await cancelRun(deps, callOf(context), { runId: request.runId, reason: request.reason, detachChildren: request.detachChildren });
      return create(CancelRunResponseSchema, { run: runToProto(run) });
    },

    async pauseRun(request, context) {
      const run = await pauseRun(deps, callOf(context), { runId: request.runId, reason: request.reason });
      return create(PauseRunResponseSchema, { run: runToProto(run) });
    },

    async resumeRun(request, context) {
      const run = await resumeRun(deps, callOf(context), { runId: request.runId, reason: request.reason });
      return create(ResumeRunResponseSchema, { run: runToProto(run) });
    },

    async retryRun(request, context) {
      const run = await retryRun(deps, callOf(context), { runId: request.runId, reason: request.reason });
      return create(RetryRunResponseSchema, { run: runToProto(run) });
    },

    async forkRun(request, context) {
      const run = await forkRun(deps, callOf(context), {
        runId: request.runId,
        fromOperation: request.fromOperation,
        input: request.input ? jsonFromValue(request.input, "input") : undefined,
      });
      return create(ForkRunResponseSchema, { run: runToProto(run) });
    },

    async startBatch(request, context) {
      const started = await startBatch(deps, callOf(context), {
        filter: filterFromProto(request.filter),
        operation: operationFromProto(request.operation),
        dryRun: request.dryRun,
        reason: request.reason,
      });
      return create(StartBatchResponseSchema, {
        batch: started.batch ? batchToProto(started.batch) : undefined,
        matchedCount: BigInt(started.matchedCount),
        sampleRunIds: started.sampleRunIds,
      });
    },

    async getBatch(request, context) {
      const { batch, failures } = await getBatch(deps, callOf(context), request.batchId);
      return create(GetBatchResponseSchema, { batch: batchToProto(batch, failures) });
    },

    async listBatches(request, context) {
      const rows = await listBatches(deps, callOf(context), request.pageSize);
      return create(ListBatchesResponseSchema, { batches: rows.map((row) => batchToProto(row)) });
    },

    async explainRun(request, context) {
      return explanationToProto(await explainRun(deps, callOf(context), request.runId));
    },

    async sendEvent(request, context) {
      const sent = await sendEvent(deps, callOf(context), {
        eventType: request.eventType,
        correlationId: request.correlationId,
        payload: request.payload ? jsonFromValue(request.payload, "payload") : null,
        runId: request.runId,
        idempotencyKey: request.idempotencyKey,
      });
      return create(SendEventResponseSchema, sent);
    },

    async awaitRun(request, context) {
      const run = await awaitRun(deps, callOf(context), { runId: request.runId, timeoutMs: awaitTimeoutMs(request.timeout) });
      return create(AwaitRunResponseSchema, { run: runToProto(run) });
    },

    watchRun(request, context) {
      // Mapped without a generator of its own (map-stream.ts): thousands of these stay open for hours.
      return mapStream(
        () => watchRun(deps, callOf(context), { runId: request.runId, afterSequence: sequenceAfter(request.afterSequence) }),
        (update) =>
          create(WatchRunResponseSchema, {
            update: update.kind === "run" ? { case: "run", value: runToProto(update.run) } : { case: "entry", value: entryToProto(update.entry) },
          }),
      );
    },

    async *watchRuns(request, context) {
      for await (const run of watchRuns(deps, callOf(context), { workflowName: request.workflowName, statuses: statusesFromProto(request.statuses) })) {
        yield create(WatchRunsResponseSchema, { run: runToProto(run) });
      }
    },
  };
}

/** A Duration in whole milliseconds (the validation rules already refused negative and zero ones). */
function durationMs(duration: Duration): number {
  return Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6);
}

function awaitTimeoutMs(timeout: Duration | undefined): number {
  if (!timeout) return defaultAwaitMs;
  const ms = Number(timeout.seconds) * 1000 + Math.floor(timeout.nanos / 1e6);
  if (ms < 0) throw new InvalidInputError("timeout must not be negative");
  return ms === 0 ? defaultAwaitMs : Math.min(ms, maxAwaitMs);
}

const nearMissReasons: Record<StoredNearMissReason, NearMissReason> = {
  other_correlation_id: NearMissReason.OTHER_CORRELATION_ID,
  before_lookback: NearMissReason.BEFORE_LOOKBACK,
  already_consumed: NearMissReason.ALREADY_CONSUMED,
  targeted_at_other_run: NearMissReason.TARGETED_AT_OTHER_RUN,
};

function processToProto(p: ProcessRow) {
  return { id: p.id, host: p.host, pid: p.pid, version: p.version, startedAt: timestamp(p.startedAt), lastSeenAt: timestamp(p.lastSeenAt) };
}

function explanationToProto(explained: RunExplanation) {
  const { facts } = explained;
  const run = facts.run;
  return create(ExplainRunResponseSchema, {
    run: runToProto(run, facts.flowHold),
    waits: explained.waits.map((wait) => ({
      wait: waitingOnToProto(wait.record),
      lookbackFrom: timestamp(wait.lookbackFrom),
      nearMisses: wait.nearMisses.map((miss) => ({
        eventId: miss.event.id,
        eventType: miss.event.eventType,
        correlationId: miss.event.correlationId,
        sentAt: timestamp(miss.event.createdAt),
        reason: nearMissReasons[miss.reason],
        targetRunId: miss.event.targetRunId ?? "",
        explanation: miss.explanation,
      })),
    })),
    ...(facts.runsAhead !== undefined ? { queue: { runsAhead: BigInt(facts.runsAhead), availableAt: timestamp(run.availableAt) } } : {}),
    ...(run.status === "running"
      ? {
          lease: {
            owner: run.leaseOwner ?? "",
            leaseExpiresAt: timestamp(run.leaseExpiresAt),
            lastHeartbeatAt: timestamp(facts.holder?.lastSeenAt),
            ownerLive: facts.holder?.live ?? false,
            pendingRequest: explained.pendingRequest ?? "",
          },
        }
      : {}),
    loadedBy: facts.loadedBy.map(processToProto),
    pauseReason: run.status === "paused" ? (facts.pauseReason ?? "") : "",
    abnormalActivations: run.abnormalActivations,
    timeoutAt: timestamp(run.timeoutAt),
    lines: explained.lines,
  });
}
