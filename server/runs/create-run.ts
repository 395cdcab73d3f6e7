/**
 * Creating a run: check the input (size, shape, the workflow's schema), store
 * the run once per idempotency key, and start it here at once when asked and
 * this process has room (eager start) or announce it to every worker.
 */
import { randomUUID } from "node:crypto";
import type { JsonValue } from "../../sdk/workflow.js";
import { IdempotencyConflictError, InvalidInputError } from "../core/errors.js";
import { sameJson } from "../core/json.js";
import { insertRun } from "../store/runs/create.js";
import type { RunRow } from "../store/schema.js";
import { validateInput } from "../workflows/registry.js";
import { FlowControlError, type FlowControl, mayStartEagerly, priority as checkPriority, type RunFlowControl, runFlowControl } from "../core/flow-control.js";
import { checkPayload } from "./payload.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export interface CreateRunRequest {
  workflowName: string;
  input: JsonValue;
  idempotencyKey?: string | undefined;
  metadata: Record<string, string>;
  eagerStart: boolean;
  /** The creating call's span (W3C traceparent), when tracing is on: the run's trace continues it. */
  traceParent?: string | undefined;
  /** Run-level timeout in ms (absent: the workflow's `defineWorkflow({ timeout })`, if any); must be more than 0. */
  timeoutMs?: number | undefined;
  /** Claim order over the workflow's default priority (-1000..1000; higher first). */
  priority?: number | undefined;
}

export async function createRun(deps: RunsDeps, call: Call, request: CreateRunRequest): Promise<{ run: RunRow; deduplicated: boolean }> {
  const { worker } = deps;
  const workflow = deps.registry.get(request.workflowName);
  const input = request.input;
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    const got = input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`;
    throw new InvalidInputError(`input must be a JSON object, got ${got}; wrap it in an object, e.g. {"value": ...}`);
  }
  checkPayload(input, "input", { bytes: deps.maxInputBytes, setting: "CAIRN_MAX_INPUT_BYTES" });
  await validateInput(workflow, input);
  if (request.timeoutMs !== undefined && !(Number.isFinite(request.timeoutMs) && request.timeoutMs > 0)) {
    throw new InvalidInputError(`timeout must be more than zero, got ${request.timeoutMs} ms`);
  }
  const timeoutMs = request.timeoutMs ?? workflow.timeoutMs;
  const flow = flowOf(workflow.flow, input, request.priority, deps.namespaceMaxRunning);
  if (flow.debounceKey !== null && request.idempotencyKey) {
    // Its debounce key already folds repeated creations into one run; two deduplication rules would disagree.
    throw new InvalidInputError(`workflow ${workflow.name} is debounced: its debounce key deduplicates creations; leave idempotency_key empty`);
  }
  // Past the caller's deadline nothing is stored: the call ends DEADLINE_EXCEEDED instead.
  call.throwIfDeadlinePassed();

  // At its concurrency limit this process queues the run instead: any process with room picks it up.
  const eager = request.eagerStart && mayStartEagerly(flow) && worker.reserveSlot();
  let created: Awaited<ReturnType<typeof insertRun>>;
  try {
    created = await insertRun(
      deps.store,
      { id: randomUUID(), namespace: call.namespace, workflowName: workflow.name, input, idempotencyKey: request.idempotencyKey || undefined, metadata: request.metadata, traceParent: request.traceParent, timeoutMs, flow },
      eager ? { owner: worker.owner, leaseMs: deps.leaseMs } : undefined,
    );
  } catch (error) {
    if (eager) worker.releaseSlot();
    throw error;
  }
  const { run, deduplicated, debounced } = created;
  if (debounced) {
    // Folded into the key's run that has not started yet: nothing new to announce, it is due one period from now.
    return { run, deduplicated: true };
  }
  if (deduplicated) {
    if (eager) worker.releaseSlot();
    if (run.workflowName !== workflow.name || !sameJson(run.input, input)) throw new IdempotencyConflictError(request.idempotencyKey ?? "", run.id);
    return { run, deduplicated };
  }
  deps.metrics?.runsCreated.inc({ workflow: workflow.name, origin: "api" });
  // This process fires the timeout on time; others find it at their next poll (if this one dies first).
  if (run.timeoutAt) worker.noteTimeout(run.timeoutAt);
  if (eager && run.status !== "running") {
    // Flow control's gate stored it queued (held, or its key was being admitted elsewhere that instant).
    worker.releaseSlot();
    await worker.announce().catch(() => undefined);
  } else if (eager) {
    // Committed as claimed by this process: start it here, now (if we die first, the lease lapses and others resume it).
    worker.adopt(run);
  } else {
    // Already durable; a lost notification only delays the run until some process polls.
    await worker.announce().catch(() => undefined);
  }
  return { run, deduplicated };
}

/** The run's flow control, evaluated once here; a bad priority or a key function that fails stores nothing. */
function flowOf(flow: FlowControl | undefined, input: JsonValue, priority: number | undefined, namespaceMaxRunning: number | undefined): RunFlowControl {
  try {
    if (priority !== undefined) checkPriority(priority, "priority");
    return runFlowControl(flow, input, { priority, namespaceMaxRunning });
  } catch (error) {
    if (error instanceof FlowControlError) throw new InvalidInputError(error.message);
    throw error;
  }
}
