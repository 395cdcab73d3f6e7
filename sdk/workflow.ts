/**
 * The authoring side of Cairn: what a workflow file sees. A workflow is a
 * handler `(input, ctx) => output`; every durable operation goes through `ctx`
 * and is named, so a replay can match it to its journal entry. This module is
 * types plus two tiny runtime helpers and imports nothing from the server, so
 * workflow files (and browsers) can depend on it freely.
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";

/** A value that survives JSON.stringify → JSON.parse unchanged. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`, a number of milliseconds, or `{ minutes: 5 }`. */
export type Duration =
  | string
  | number
  | { days?: number; hours?: number; minutes?: number; seconds?: number; milliseconds?: number };

/** Durations as workflow authors (and CreateRun's `timeout`) write them; the server parses them with this same function. */
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/** A duration that is negative, not finite or not parseable. */
export class InvalidDurationError extends Error {
  override readonly name = "InvalidDurationError";
}

/** `"30s"`, `"1h30m"`, `"250ms"`, a number of ms, or `{ minutes: 5 }` → ms. Throws InvalidDurationError (negative, NaN, unparseable). */
export function parseDuration(duration: Duration): number {
  if (typeof duration === "number") return checked(duration, duration);
  if (typeof duration === "string") {
    const text = duration.trim();
    let total = 0;
    part.lastIndex = 0;
    let consumed = 0;
    for (let match = part.exec(text); match; match = part.exec(text)) {
      total += Number(match[1]) * (unitMs[match[2] ?? ""] ?? Number.NaN);
      consumed = part.lastIndex;
    }
    if (text.length === 0 || consumed !== text.length) {
      throw new InvalidDurationError(`${JSON.stringify(duration)} is not a duration; write e.g. "250ms", "30s", "5m", "1h30m", "2d", a number of milliseconds, or { minutes: 5 }`);
    }
    return checked(total, duration);
  }
  if (typeof duration === "object" && duration !== null) {
    const { days = 0, hours = 0, minutes = 0, seconds = 0, milliseconds = 0, ...rest } = duration;
    const unknown = Object.keys(rest);
    if (unknown.length > 0) throw new InvalidDurationError(`unknown duration field ${unknown.join(", ")}; use days, hours, minutes, seconds, milliseconds`);
    return checked(days * unitMs.d! + hours * unitMs.h! + minutes * unitMs.m! + seconds * 1000 + milliseconds, duration);
  }
  throw new InvalidDurationError(`${String(duration)} is not a duration`);
}

function checked(ms: number, original: unknown): number {
  if (!Number.isFinite(ms)) throw new InvalidDurationError(`${JSON.stringify(original)} is not a finite duration`);
  if (ms < 0) throw new InvalidDurationError(`${JSON.stringify(original)} is negative; durations must be zero or more`);
  return Math.round(ms);
}

/** What a step's function receives. */
export interface StepContext {
  /** Stable for this run and step across attempts and replays: hand it to downstream APIs for exactly-once effects. */
  readonly idempotencyKey: string;
  /** 1 on the first attempt. */
  readonly attempt: number;
  /** Aborted when the run is cancelled, the attempt times out, or this process loses the run. */
  readonly signal: AbortSignal;
}

export interface RetryPolicy {
  maxAttempts?: number;
  initialInterval?: Duration;
  backoffCoefficient?: number;
  maxInterval?: Duration;
  /** 0..1: randomise each backoff by up to this fraction. */
  jitter?: number;
  /** Error names (`err.name`) that fail the step at once. */
  nonRetryableErrors?: string[];
}

export interface StepOptions {
  retry?: RetryPolicy;
  /** Per attempt; the step's `signal` aborts when it passes. */
  timeout?: Duration;
}

export interface WaitForEventOptions {
  /** Give up after this long: the wait resolves `null`. */
  timeout?: Duration;
  /** Which earlier events may match: `"run"` (default: since the run was created), `"all"` retained events, or a duration back from now. */
  lookback?: "run" | "all" | Duration;
}

export interface StartWorkflowOptions {
  /** Keep the child running when this run is cancelled. */
  detached?: boolean;
}

export interface AgentRequest {
  /** Which agent serves the turn (defaults to the operation name). */
  agent?: string;
  /** The prompt. */
  text: string;
  [param: string]: JsonValue | undefined;
}

export interface AgentWaitOptions {
  /** Give up waiting for a worker's result after this long (AgentTurnFailedError with name "AgentTimeoutError"). */
  timeout?: Duration;
}

/** Logs with run and workflow fields attached; silent while the run replays. */
export interface WorkflowLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** The durable primitives. Every `name` is the operation's identity inside the run and must be unique in it. */
export interface WorkflowContext {
  readonly runId: string;
  readonly workflowName: string;
  readonly log: WorkflowLogger;
  /** Runs `fn` once; its JSON result (or final error) is journaled and returned on every replay. */
  step<T>(name: string, fn: (step: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T>;
  sleep(name: string, duration: Duration): Promise<void>;
  sleepUntil(name: string, when: Date | string | number): Promise<void>;
  /** Resolves with the payload of the oldest matching unconsumed event, or `null` when `timeout` passes first. */
  waitForEvent<T = JsonValue>(
    name: string,
    eventType: string,
    correlationId: string,
    options?: WaitForEventOptions,
  ): Promise<T | null>;
  startWorkflow(name: string, workflowName: string, input?: JsonObject, options?: StartWorkflowOptions): Promise<string>;
  waitForWorkflow<T = JsonValue>(name: string, runId: string): Promise<T>;
  runWorkflow<T = JsonValue>(name: string, workflowName: string, input?: JsonObject, options?: StartWorkflowOptions): Promise<T>;
  /** Hands a turn to an agent worker (of `request.agent`, default: the operation name); resolves the turn id. */
  startAgent(name: string, request: AgentRequest): Promise<string>;
  /** startAgent, then waits for the worker's result (operation names `name` and `name/result`). Throws AgentTurnFailedError. */
  runAgent<T = JsonValue>(name: string, request: AgentRequest, options?: AgentWaitOptions): Promise<T>;
  /** The current time, journaled: a replay returns the same instant. Use it instead of `Date.now()` / `new Date()`. */
  now(): Date;
  /** A number in [0, 1), journaled: a replay returns the same one. Use it instead of `Math.random()`. */
  random(): number;
  /** A random UUID (v4), journaled: a replay returns the same one. Use it instead of `crypto.randomUUID()`. */
  uuid(): string;
  /**
   * True when this run reaches this point on code that has patch `id` (new runs, and runs that passed here
   * after the deploy); false when replaying history recorded before the patch. Branch on it to change code
   * under runs in flight: `if (ctx.patched("new-fee")) await ctx.step("fee", ...)`.
   */
  patched(id: string): boolean;
  /** Once no run that took the old branch of patch `id` is left: accepts journals with or without its marker; then drop the old branch. */
  deprecatePatch(id: string): void;
}

export type WorkflowHandler<I, O> = (input: I, ctx: WorkflowContext) => Promise<O> | O;

/**
 * Flow control (docs/flow-control.md). A `key` function of the input is evaluated once, when the run is created,
 * and stored on the run; without one, all runs of the workflow share one key. Limits and periods must be more
 * than zero (the server refuses to load the workflow otherwise).
 */
export interface FlowControlOptions<I = JsonObject> {
  /** At most `limit` runs of a key executing at once (a run waiting on a timer, event, child or agent does not count). */
  concurrency?: { limit: number; key?: (input: I) => string };
  /** At most `limit` runs of a key started in any window of `period`. */
  rateLimit?: { limit: number; period: Duration; key?: (input: I) => string };
  /** The default priority of its runs, an integer from -1000 to 1000 (default 0): higher is claimed first. CreateRun's `priority` overrides. */
  priority?: number;
  /** A burst of creations on one key, each within `period` of the last, gives one run, with the last input; it starts `period` after the last. */
  debounce?: { period: Duration; key?: (input: I) => string };
}

/** What a schedule does when a fire finds the schedule's previous run still going. */
export type ScheduleOverlap = "skip" | "buffer_one" | "allow_all" | "cancel_other";

/**
 * A schedule declared with the workflow (`defineWorkflow({ schedules: [...] })`), upserted in namespace "default"
 * at server start; see docs/schedules.md. Exactly one of `cron` and `every`.
 */
export interface WorkflowSchedule<I = JsonObject> {
  /** The schedule_id: unique per namespace. */
  id: string;
  /** A cron expression (5 fields, or 6 with seconds first), read in `timezone`. */
  cron?: string;
  /** IANA time zone of the cron (default UTC). */
  timezone?: string;
  /** Fire every interval instead of a cron. */
  every?: Duration;
  /** The runs' input (default {}). */
  input?: I;
  /** Delay each fire by a random 0..jitter. */
  jitter?: Duration;
  /** Default "skip". */
  overlap?: ScheduleOverlap;
  /** Fires missed while no server ran are made up if at most this late (default 1 minute). */
  catchupWindow?: Duration;
  metadata?: Record<string, string>;
}

/** A workflow made with `defineWorkflow`: carries its input and output types for typed clients. */
export interface WorkflowDefinition<I = JsonObject, O = unknown> {
  readonly kind: "cairn.workflow";
  readonly name: string;
  readonly input?: StandardSchemaV1<unknown, I>;
  /** Default run-level timeout: a run not ended this long after it was created fails with RunTimeoutError (CreateRun's `timeout` overrides). */
  readonly timeout?: Duration;
  readonly concurrency?: FlowControlOptions<I>["concurrency"];
  readonly rateLimit?: FlowControlOptions<I>["rateLimit"];
  readonly priority?: number;
  readonly debounce?: FlowControlOptions<I>["debounce"];
  /** Schedules that start this workflow, upserted at server start. */
  readonly schedules?: readonly WorkflowSchedule<I>[];
  readonly handler: WorkflowHandler<I, O>;
}

export function defineWorkflow<S extends StandardSchemaV1, O>(definition: {
  name: string;
  input: S;
  timeout?: Duration;
  schedules?: readonly WorkflowSchedule<StandardSchemaV1.InferOutput<S>>[];
} & FlowControlOptions<StandardSchemaV1.InferOutput<S>> & {
  handler: WorkflowHandler<StandardSchemaV1.InferOutput<S>, O>;
}): WorkflowDefinition<StandardSchemaV1.InferOutput<S>, O>;
export function defineWorkflow<I extends JsonObject, O>(definition: {
  name: string;
  timeout?: Duration;
  schedules?: readonly WorkflowSchedule<I>[];
} & FlowControlOptions<I> & {
  handler: WorkflowHandler<I, O>;
}): WorkflowDefinition<I, O>;
export function defineWorkflow<I, O>(definition: {
  name: string;
  input?: StandardSchemaV1<unknown, I>;
  timeout?: Duration;
  schedules?: readonly WorkflowSchedule<I>[];
} & FlowControlOptions<I> & {
  handler: WorkflowHandler<I, O>;
}): WorkflowDefinition<I, O> {
  checkOptionKeys(definition, workflowOptionKeys, `defineWorkflow options${typeof definition?.name === "string" ? ` of "${definition.name}"` : ""}`);
  return { kind: "cairn.workflow", ...definition };
}

/** A durable primitive or a workflow definition used wrongly (an unknown option key, a bad argument). */
export class InvalidOperationError extends Error {
  override readonly name = "InvalidOperationError";
}

/** Every key defineWorkflow takes: any other is a misspelling, refused when the workflow file loads. */
const workflowOptionKeys = ["name", "input", "timeout", "handler", "concurrency", "rateLimit", "priority", "debounce", "schedules"] as const;

/**
 * Throws InvalidOperationError for a key of `options` not in `known`: a misspelt option (`maxAttempt`) would
 * otherwise be ignored in silence. `what` names the options: "step options", "retry policy".
 */

export function checkOptionKeys(options: unknown, known: readonly string[], what: string): void {
  if (options === undefined) return;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new InvalidOperationError(`${what} must be an object (got ${Array.isArray(options) ? "an array" : String(options)}); known keys: ${known.join(", ")}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new InvalidOperationError(`unknown option ${key} in ${what}; known: ${known.join(", ")}`);
  }
}

/** Throw from a step to fail it without further retries. */
export class NonRetryableError extends Error {
  override readonly name: string = "NonRetryableError";
}

/** What `ctx.waitForWorkflow` / `ctx.runWorkflow` throw when the child run failed or was cancelled. */
export class ChildWorkflowFailedError extends Error {
  override readonly name: string = "ChildWorkflowFailedError";
  constructor(
    readonly childRunId: string,
    readonly workflowName: string,
    /** "failed" or "cancelled". */
    readonly status: string,
    /** The child's own error. */
    readonly failure: { name: string; message: string },
  ) {
    super(`child run ${childRunId} (${workflowName}) ${status}: ${failure.name}: ${failure.message}`);
  }
}

/** What `ctx.runAgent` throws when the worker failed the turn or the wait timed out. */
export class AgentTurnFailedError extends Error {
  override readonly name: string = "AgentTurnFailedError";
  constructor(
    readonly turnId: string,
    readonly agent: string,
    readonly failure: { name: string; message: string },
  ) {
    super(`agent turn ${turnId} (${agent}) failed: ${failure.name}: ${failure.message}`);
  }
}
