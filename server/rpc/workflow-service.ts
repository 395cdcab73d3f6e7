/**
 * cairn.v1.WorkflowService: calls the store and the scheduler, converts rows
 * to messages. Requests arrive already checked against their proto rules
 * (`validation.ts`); what the proto cannot say (JSON sizes and shapes, the
 * workflow's schema) is checked here. Domain errors are thrown as they are and
 * mapped to Connect codes by the error-mapping interceptor. A call whose
 * deadline has passed writes nothing more: writes check the signal first.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { WaitKind } from "../../sdk/gen/cairn/v1/types_pb.js";
import {
  AwaitRunResponseSchema,
  CancelRunResponseSchema,
  CreateRunResponseSchema,
  GetRunHistoryResponseSchema,
  GetRunResponseSchema,
  ListRunsResponseSchema,
  ListWorkflowsResponseSchema,
  SendEventResponseSchema,
  WatchRunResponseSchema,
  WatchRunsResponseSchema,
  WorkflowSchema,
  type WorkflowService,
} from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { Duration, Value } from "@bufbuild/protobuf/wkt";
import type { JsonValue } from "../../sdk/workflow.js";
import {
  EventTargetNotFoundError,
  IdempotencyConflictError,
  InvalidInputError,
  PayloadTooLargeError,
  RunAlreadyFinishedError,
  RunNotFoundError,
} from "../core/errors.js";
import { sendEvent } from "../store/events.js";
import { requestJsonProblem, sameJson } from "../core/json.js";
import { ChangeSignal, type RunFeed } from "../runs/run-feed.js";
import { RunTails } from "../runs/run-tail.js";
import type { Worker } from "../worker/worker.js";
import { type RunRow, terminalStatuses } from "../store/schema.js";
import type { Db } from "../store/database.js";
import { listJournal } from "../store/journal.js";
import { inputJsonSchema } from "../workflows/json-schema.js";
import { cancellableChildren, cancelRun, getRun, getRuns, insertRun, listRuns, type RunCursor, type RunFilter } from "../store/runs.js";
import { validateInput, type WorkflowRegistry } from "../workflows/registry.js";
import { callerOf } from "./auth.js";
import { throwIfDeadlinePassed } from "./deadline.js";
import { dateFromTimestamp, entryToProto, runToProto, statusFromProto, valueToJson } from "./convert.js";

export interface WorkflowServiceDeps {
  db: Db;
  registry: WorkflowRegistry;
  scheduler: Worker;
  leaseMs: number;
  maxInputBytes: number;
  maxEventBytes: number;
  /** Caps on page_size (CAIRN_MAX_LIST_RUNS_PAGE_SIZE, CAIRN_MAX_HISTORY_PAGE_SIZE). */
  maxListRunsPageSize: number;
  maxHistoryPageSize: number;
  /** Which runs changed, for WatchRun and WatchRuns. */
  feed: RunFeed;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Entries a watcher reads per round trip. */
const watchPageSize = 500;
/**
 * The most runs one SendEvent claims for this process (slots are held for the call's duration, so concurrent
 * sends must not hold them all); a wider fan-out queues the rest, which the scheduler then claims like any run.
 */
const deliveryClaimLimit = 16;
/** A watcher re-reads the store at least this often, covering notifications lost while a listener reconnects. */
const watchRecheckMs = 1000;
const defaultAwaitMs = 30_000;
const maxAwaitMs = 5 * 60_000;


function waitKindFromProto(kind: WaitKind): "timer" | "event" | "retry" | "child" | "agent" | undefined {
  switch (kind) {
    case WaitKind.UNSPECIFIED:
      return undefined;
    case WaitKind.TIMER:
      return "timer";
    case WaitKind.EVENT:
      return "event";
    case WaitKind.RETRY:
      return "retry";
    case WaitKind.CHILD:
      return "child";
    case WaitKind.AGENT:
      return "agent";
    default:
      throw new InvalidInputError(`waiting_for ${kind} is not a known wait kind`);
  }
}

export function createWorkflowService(deps: WorkflowServiceDeps): ServiceImpl<typeof WorkflowService> {
  const { db, registry, scheduler, feed } = deps;
  const tails = new RunTails(db, feed);

  /** Children started without { detached: true } end with their parent, and theirs with them. */
  async function cancelDescendants(namespace: string, runId: string, reason: string): Promise<void> {
    for (const childId of await cancellableChildren(db, runId)) {
      const result = await cancelRun(db, namespace, childId, reason);
      if (result?.outcome === "requested") await scheduler.announceCancel(childId).catch(() => undefined);
      await cancelDescendants(namespace, childId, reason);
    }
  }

  /** The run, if it exists in the caller's namespace: another tenant's run is NOT_FOUND, like a missing one. */
  async function findRun(namespace: string, runId: string) {
    const row = await getRun(db, namespace, requireRunId(runId));
    if (!row) throw new RunNotFoundError(runId);
    return row;
  }

  return {
    listWorkflows() {
      return create(ListWorkflowsResponseSchema, {
        workflows: registry.list().map((w) =>
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
      const { namespace } = callerOf(context);
      const workflow = registry.get(request.workflowName);
      const input: JsonValue = request.input ? jsonOf(request.input, "input") : {};
      if (typeof input !== "object" || input === null || Array.isArray(input)) {
        const got = input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`;
        throw new InvalidInputError(`input must be a JSON object, got ${got}; wrap it in an object, e.g. {"value": ...}`);
      }
      const text = JSON.stringify(input);
      const size = Buffer.byteLength(text);
      if (size > deps.maxInputBytes) throw new PayloadTooLargeError("input", size, deps.maxInputBytes, "CAIRN_MAX_INPUT_BYTES");
      const problem = requestJsonProblem(input, text, "input");
      if (problem) throw new InvalidInputError(problem);
      await validateInput(workflow, input);
      // Past the caller's deadline nothing is stored: the call ends DEADLINE_EXCEEDED instead.
      throwIfDeadlinePassed(context.signal);

      // At its concurrency limit this process queues the run instead: any process with room picks it up.
      const eager = request.eagerStart && scheduler.reserveSlot();
      let created: Awaited<ReturnType<typeof insertRun>>;
      try {
        created = await insertRun(
          db,
          {
            id: randomUUID(),
            namespace,
            workflowName: workflow.name,
            input,
            idempotencyKey: request.idempotencyKey || undefined,
            metadata: request.metadata,
          },
          eager ? { owner: scheduler.owner, leaseMs: deps.leaseMs } : undefined,
        );
      } catch (error) {
        if (eager) scheduler.releaseSlot();
        throw error;
      }
      const { run, deduplicated } = created;
      if (deduplicated) {
        if (eager) scheduler.releaseSlot();
        if (run.workflowName !== workflow.name || !sameJson(run.input, input)) {
          throw new IdempotencyConflictError(request.idempotencyKey, run.id);
        }
      } else if (eager) {
        // Committed as claimed by this process: start it here, now (if we die first, the lease lapses and others resume it).
        scheduler.adopt(run);
      } else {
        // Already durable; a lost notification only delays the run until some process polls.
        await scheduler.announce().catch(() => undefined);
      }
      return create(CreateRunResponseSchema, { run: runToProto(run), deduplicated });
    },

    async getRun(request, context) {
      return create(GetRunResponseSchema, { run: runToProto(await findRun(callerOf(context).namespace, request.runId)) });
    },

    async listRuns(request, context) {
      const { namespace } = callerOf(context);
      const pageSize = clampPageSize(request.pageSize, 50, deps.maxListRunsPageSize);
      const statuses = request.statuses.map((s) => {
        const stored = statusFromProto(s);
        if (!stored) throw new InvalidInputError(`statuses contains an unknown status (${s})`);
        return stored;
      });
      const filter: RunFilter = {
        workflowName: request.workflowName || undefined,
        statuses,
        parentRunId: request.parentRunId ? requireRunId(request.parentRunId) : undefined,
        createdAfter: dateFromTimestamp(request.createdAfter),
        createdBefore: dateFromTimestamp(request.createdBefore),
        waitingFor: waitKindFromProto(request.waitingFor),
        waitingEventType: request.waitingEventType || undefined,
        waitingCorrelationId: request.waitingCorrelationId || undefined,
        metadata: Object.keys(request.metadata).length > 0 ? request.metadata : undefined,
      };
      const rows = await listRuns(db, namespace, filter, pageSize, decodePageToken(request.pageToken));
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      const more = rows.length > pageSize && last;
      return create(ListRunsResponseSchema, {
        runs: page.map(runToProto),
        nextPageToken: more ? encodePageToken({ createdAt: last.createdAt, id: last.id }) : "",
      });
    },

    async getRunHistory(request, context) {
      const { namespace } = callerOf(context);
      const run = await findRun(namespace, request.runId);
      const pageSize = clampPageSize(request.pageSize, 1000, deps.maxHistoryPageSize);
      const entries = await listJournal(db, namespace, run.id, sequenceAfter(request.afterSequence), pageSize);
      return create(GetRunHistoryResponseSchema, {
        entries: entries.slice(0, pageSize).map(entryToProto),
        hasMore: entries.length > pageSize,
      });
    },

    async cancelRun(request, context) {
      const { namespace } = callerOf(context);
      const runId = requireRunId(request.runId);
      const reason = request.reason || "cancelled by request";
      throwIfDeadlinePassed(context.signal);
      const result = await cancelRun(db, namespace, runId, reason);
      if (!result) throw new RunNotFoundError(request.runId);
      if (result.outcome === "finished") {
        // A repeated cancel (e.g. a retry after a lost reply) is answered like the first; other ends are final.
        if (result.run.status === "cancelled") return create(CancelRunResponseSchema, { run: runToProto(result.run) });
        throw new RunAlreadyFinishedError(runId, result.run.status.toUpperCase());
      }
      // The request is durable; the notice only makes a running holder stop sooner than its next durable operation.
      if (result.outcome === "requested") await scheduler.announceCancel(runId).catch(() => undefined);
      else feed.publishLocal(runId);
      if (!request.detachChildren) await cancelDescendants(namespace, runId, `parent run ${runId} was cancelled: ${reason}`);
      return create(CancelRunResponseSchema, { run: runToProto(result.run) });
    },

    async sendEvent(request, context) {
      const { namespace } = callerOf(context);
      const payload: JsonValue = request.payload ? jsonOf(request.payload, "payload") : null;
      const text = JSON.stringify(payload);
      const size = Buffer.byteLength(text);
      if (size > deps.maxEventBytes) throw new PayloadTooLargeError("payload", size, deps.maxEventBytes, "CAIRN_MAX_EVENT_BYTES");
      const problem = requestJsonProblem(payload, text, "payload");
      if (problem) throw new InvalidInputError(problem);
      let targetRunId: string | undefined;
      if (request.runId) {
        targetRunId = requireRunId(request.runId);
        if (!(await getRun(db, namespace, targetRunId))) throw new EventTargetNotFoundError(request.runId);
      }
      throwIfDeadlinePassed(context.signal);
      // Runs the event is delivered to are claimed for this process, as many as it has room for, and start here
      // at once; the others are queued for any process (and this one looks too: it may have room by then).
      const slots = scheduler.reserveSlots(deliveryClaimLimit);
      const sentAt = Date.now();
      let result: Awaited<ReturnType<typeof sendEvent>>;
      try {
        result = await sendEvent(
          db,
          {
            id: randomUUID(),
            namespace,
            eventType: request.eventType,
            correlationId: request.correlationId,
            payload,
            targetRunId,
            idempotencyKey: request.idempotencyKey || undefined,
          },
          { owner: scheduler.owner, leaseMs: deps.leaseMs, limit: slots, workflowNames: registry.list().map((w) => w.name) },
        );
      } catch (error) {
        scheduler.releaseSlots(slots);
        throw error;
      }
      for (const { run, received } of result.claimed) scheduler.adoptDelivered(run, received, sentAt);
      scheduler.releaseSlots(slots - result.claimed.length);
      if (result.matchedRunIds.length > result.claimed.length) scheduler.wake();
      return create(SendEventResponseSchema, {
        eventId: result.eventId,
        matchedRunIds: result.matchedRunIds,
        deduplicated: result.deduplicated,
      });
    },

    async awaitRun(request, context) {
      const { namespace } = callerOf(context);
      const runId = requireRunId(request.runId);
      const deadline = Date.now() + awaitTimeoutMs(request.timeout);
      const changes = new ChangeSignal();
      // A run executed here announces its end without a round trip; only a run that may end elsewhere needs the store's notices.
      let ended: RunRow | undefined;
      const unsubscribeLocal = feed.subscribeLocal(runId, (_id, row) => {
        if (row && terminalStatuses.includes(row.status)) ended = row;
        changes.notify();
      });
      let unsubscribeRemote: (() => void) | undefined;
      try {
        // Executing here (say, created a moment ago with eager_start): its row as claimed says it exists and whose it is.
        const local = scheduler.activeRun(runId);
        let run = local?.namespace === namespace ? local : await findRun(namespace, runId);
        while (!terminalStatuses.includes(run.status) && !context.signal.aborted) {
          const remaining = deadline - Date.now();
          if (remaining <= 0) break;
          if (!unsubscribeRemote && !(run.status === "running" && scheduler.isActive(runId))) {
            unsubscribeRemote = await feed.subscribe(runId, changes.notify);
            // It may have ended elsewhere before the registration counted: look once more.
            changes.notify();
          }
          await changes.next(Math.min(remaining, watchRecheckMs), context.signal);
          // Ended here: the final row came with the notice (same run, already checked to be the caller's).
          run = ended ?? (await findRun(namespace, runId));
        }
        return create(AwaitRunResponseSchema, { run: runToProto(run) });
      } finally {
        unsubscribeLocal();
        unsubscribeRemote?.();
      }
    },

    async *watchRun(request, context) {
      const { namespace } = callerOf(context);
      const run = await findRun(namespace, request.runId);
      // One shared reader per run in this process; this stream only keeps its own position.
      const { tail, signal, release } = await tails.acquire(namespace, run.id);
      try {
        let status = (tail.run ?? run).status;
        yield create(WatchRunResponseSchema, { update: { case: "run", value: runToProto(tail.run ?? run) } });
        let cursor = sequenceAfter(request.afterSequence);
        while (!context.signal.aborted) {
          const first = tail.window[0];
          if (cursor < tail.lastSequence && (!first || cursor + 1 < first.sequence)) {
            // Behind the shared window (a new watcher of a long run, or a slow one): catch up from the store.
            const older = await listJournal(db, namespace, run.id, cursor, watchPageSize);
            for (const entry of older.slice(0, watchPageSize)) {
              if (first && entry.sequence >= first.sequence) break;
              cursor = entry.sequence;
              yield create(WatchRunResponseSchema, { update: { case: "entry", value: entryToProto(entry) } });
            }
            continue;
          }
          for (const entry of tail.window) {
            if (entry.sequence <= cursor) continue;
            if (entry.sequence > tail.lastSequence) break;
            cursor = entry.sequence;
            yield create(WatchRunResponseSchema, { update: { case: "entry", value: entryToProto(entry) } });
          }
          const latest = tail.run;
          if (latest && latest.status !== status) {
            status = latest.status;
            yield create(WatchRunResponseSchema, { update: { case: "run", value: runToProto(latest) } });
          }
          // The final entry and the final status commit together: a final status with nothing after the cursor ends the stream.
          if (latest && terminalStatuses.includes(latest.status) && cursor >= tail.lastSequence) return;
          if (cursor < tail.lastSequence) continue;
          await signal.next(watchRecheckMs, context.signal);
        }
        // The deadline passed before the run ended: DEADLINE_EXCEEDED, not a clean end.
        throwIfDeadlinePassed(context.signal);
      } finally {
        release();
      }
    },

    async *watchRuns(request, context) {
      const { namespace } = callerOf(context);
      const statuses = request.statuses.map((s) => {
        const stored = statusFromProto(s);
        if (!stored) throw new InvalidInputError(`statuses contains an unknown status (${s})`);
        return stored;
      });
      const matches = (row: RunRow) =>
        (!request.workflowName || row.workflowName === request.workflowName) && (statuses.length === 0 || statuses.includes(row.status));
      const changed = new Set<string>();
      const changes = new ChangeSignal();
      const unsubscribe = await feed.subscribe("*", (runId) => {
        changed.add(runId);
        changes.notify();
      });
      try {
        const current = await listRuns(db, namespace, { workflowName: request.workflowName || undefined, statuses }, watchPageSize);
        for (const row of current.slice(0, watchPageSize).reverse()) yield create(WatchRunsResponseSchema, { run: runToProto(row) });
        while (!context.signal.aborted) {
          await changes.next(watchRecheckMs * 30, context.signal);
          const ids = [...changed];
          changed.clear();
          for (const row of await getRuns(db, namespace, ids)) {
            if (matches(row)) yield create(WatchRunsResponseSchema, { run: runToProto(row) });
          }
        }
        throwIfDeadlinePassed(context.signal);
      } finally {
        unsubscribe();
      }
    },
  };
}

/** A protobuf Value that carries no JSON (e.g. an unset kind from a gRPC client) is the caller's mistake. */
function jsonOf(value: Value, field: string): JsonValue {
  try {
    return valueToJson(value);
  } catch (error) {
    throw new InvalidInputError(`${field} is not a JSON value: ${(error as Error).message}`);
  }
}

/** Run ids are UUIDs (the proto rules check the format); stored in lower case. */
function requireRunId(runId: string): string {
  return runId.toLowerCase();
}

function awaitTimeoutMs(timeout: Duration | undefined): number {
  if (!timeout) return defaultAwaitMs;
  const ms = Number(timeout.seconds) * 1000 + Math.floor(timeout.nanos / 1e6);
  if (ms < 0) throw new InvalidInputError("timeout must not be negative");
  return ms === 0 ? defaultAwaitMs : Math.min(ms, maxAwaitMs);
}

/**
 * A client's after_sequence (int64, not negative per the proto) as a journal position. Sequences are 32-bit in the
 * store, so anything above the largest one means "after every entry" (fuzz finding: it reached SQL out of range).
 */
function sequenceAfter(afterSequence: bigint): number {
  return afterSequence > maxSequence ? Number(maxSequence) : Number(afterSequence);
}
const maxSequence = 2n ** 31n - 1n;

/** 0 asks for the default; the proto rules refuse negative sizes. */
function clampPageSize(requested: number, fallback: number, max: number): number {
  return Math.min(requested === 0 ? fallback : requested, max);
}

function encodePageToken(cursor: RunCursor): string {
  return Buffer.from(JSON.stringify({ c: cursor.createdAt.toISOString(), i: cursor.id })).toString("base64url");
}

function decodePageToken(token: string): RunCursor | undefined {
  if (!token) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { c?: unknown; i?: unknown };
    const createdAt = typeof parsed.c === "string" ? new Date(parsed.c) : undefined;
    // Years 1 to 9999, like every timestamp this server hands out: others would reach SQL out of range (fuzz finding).
    const year = createdAt?.getUTCFullYear() ?? Number.NaN;
    if (createdAt && year >= 1 && year <= 9999 && typeof parsed.i === "string" && uuidPattern.test(parsed.i)) {
      return { createdAt, id: parsed.i };
    }
  } catch {
    // fall through to the error below
  }
  throw new InvalidInputError("page_token is not one this server issued; pass next_page_token from a ListRuns response unchanged");
}
