/**
 * Sending an event: stored once per idempotency key and delivered in the same
 * transaction to the runs waiting on its type and correlation id. Runs it
 * wakes are claimed for this process as far as it has room, and start here at
 * once; the rest are queued for any worker.
 */
import { randomUUID } from "node:crypto";
import type { JsonValue } from "../../sdk/workflow.js";
import { EventTargetNotFoundError } from "../core/errors.js";
import { sendEvent as storeEvent } from "../store/events.js";
import { getRun } from "../store/runs/read.js";
import { normalizeRunId } from "./get-run.js";
import { checkPayload } from "./payload.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export interface SendEventRequest {
  eventType: string;
  correlationId: string;
  payload: JsonValue;
  runId?: string | undefined;
  idempotencyKey?: string | undefined;
}

/**
 * The most runs one send claims for this process (slots are held for the call's duration, so concurrent
 * sends must not hold them all); a wider fan-out queues the rest, which the worker then claims like any run.
 */
const deliveryClaimLimit = 16;

export async function sendEvent(deps: RunsDeps, call: Call, request: SendEventRequest): Promise<{ eventId: string; matchedRunIds: string[]; deduplicated: boolean }> {
  const { worker } = deps;
  checkPayload(request.payload, "payload", { bytes: deps.maxEventBytes, setting: "CAIRN_MAX_EVENT_BYTES" });
  let targetRunId: string | undefined;
  if (request.runId) {
    targetRunId = normalizeRunId(request.runId);
    if (!(await getRun(deps.store.db, call.namespace, targetRunId))) throw new EventTargetNotFoundError(request.runId);
  }
  call.throwIfDeadlinePassed();
  const slots = worker.reserveSlots(deliveryClaimLimit);
  const sentAt = Date.now();
  let result: Awaited<ReturnType<typeof storeEvent>>;
  try {
    result = await storeEvent(
      deps.store.db,
      {
        id: randomUUID(),
        namespace: call.namespace,
        eventType: request.eventType,
        correlationId: request.correlationId,
        payload: request.payload,
        targetRunId,
        idempotencyKey: request.idempotencyKey || undefined,
      },
      { owner: worker.owner, leaseMs: deps.leaseMs, limit: slots, workflowNames: deps.registry.list().map((w) => w.name) },
    );
  } catch (error) {
    worker.releaseSlots(slots);
    throw error;
  }
  if (!result.deduplicated) {
    deps.metrics?.eventsSent.inc();
    deps.metrics?.eventDeliveries.inc(result.matchedRunIds.length);
  }
  for (const { run, received } of result.claimed) worker.adoptDelivered(run, received, sentAt);
  worker.releaseSlots(slots - result.claimed.length);
  if (result.matchedRunIds.length > result.claimed.length) worker.wake();
  return { eventId: result.eventId, matchedRunIds: result.matchedRunIds, deduplicated: result.deduplicated };
}
