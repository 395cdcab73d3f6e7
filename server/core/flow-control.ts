/**
 * Flow control as the engine understands it (docs/flow-control.md): a workflow's declaration checked once at load,
 * and what a new run carries from it — keys evaluated once over the input, limits copied — so that the claim gate in
 * the database (migration 0018) needs nothing but the run row, on every process, whatever code it runs.
 */
import { parseDuration } from "./duration.js";

export const minPriority = -1000;
export const maxPriority = 1000;

type KeyFn = (input: unknown) => string;

/** A workflow's flow control, checked. */
export interface FlowControl {
  concurrency?: { limit: number; key?: KeyFn | undefined } | undefined;
  rateLimit?: { limit: number; periodMs: number; key?: KeyFn | undefined } | undefined;
  priority: number;
  debounce?: { periodMs: number; key?: KeyFn | undefined } | undefined;
}

/** What a run stores (columns of `runs`); null: the gate does not apply. */
export interface RunFlowControl {
  priority: number;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  rateKey: string | null;
  rateLimit: number | null;
  ratePeriodMs: number | null;
  debounceKey: string | null;
  delayMs: number | null;
  namespaceMaxRunning: number | null;
}

export class FlowControlError extends Error {
  override readonly name = "FlowControlError";
}

/** Checks `defineWorkflow`'s flow-control options; throws FlowControlError naming the option and the problem. */
export function parseFlowControl(options: { concurrency?: unknown; rateLimit?: unknown; priority?: unknown; debounce?: unknown }): FlowControl {
  const flow: FlowControl = { priority: 0 };
  if (options.concurrency !== undefined) {
    const c = record(options.concurrency, "concurrency", ["limit", "key"]);
    flow.concurrency = { limit: limit(c.limit, "concurrency.limit"), key: keyFn(c.key, "concurrency.key") };
  }
  if (options.rateLimit !== undefined) {
    const r = record(options.rateLimit, "rateLimit", ["limit", "period", "key"]);
    flow.rateLimit = { limit: limit(r.limit, "rateLimit.limit"), periodMs: period(r.period, "rateLimit.period"), key: keyFn(r.key, "rateLimit.key") };
  }
  if (options.priority !== undefined) flow.priority = priority(options.priority, "priority");
  if (options.debounce !== undefined) {
    const d = record(options.debounce, "debounce", ["period", "key"]);
    flow.debounce = { periodMs: period(d.period, "debounce.period"), key: keyFn(d.key, "debounce.key") };
  }
  return flow;
}

/** CreateRun's priority, or the workflow's: an integer in range, else FlowControlError. */
export function priority(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < minPriority || value > maxPriority) {
    throw new FlowControlError(`${what} must be an integer from ${minPriority} to ${maxPriority}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Evaluates the key functions over the input, once, at creation. A key function that throws or returns something
 * other than a string fails the creation (nothing stored): a run whose key cannot be known cannot be limited.
 */
export function runFlowControl(flow: FlowControl | undefined, input: unknown, options: { priority?: number | undefined; namespaceMaxRunning?: number | undefined }): RunFlowControl {
  return {
    priority: options.priority ?? flow?.priority ?? 0,
    concurrencyKey: flow?.concurrency ? evaluate(flow.concurrency.key, input, "concurrency.key") : null,
    concurrencyLimit: flow?.concurrency?.limit ?? null,
    rateKey: flow?.rateLimit ? evaluate(flow.rateLimit.key, input, "rateLimit.key") : null,
    rateLimit: flow?.rateLimit?.limit ?? null,
    ratePeriodMs: flow?.rateLimit?.periodMs ?? null,
    debounceKey: flow?.debounce ? evaluate(flow.debounce.key, input, "debounce.key") : null,
    delayMs: flow?.debounce?.periodMs ?? null,
    namespaceMaxRunning: options.namespaceMaxRunning ?? null,
  };
}

/**
 * Whether a run may be started eagerly (inserted already claimed): not a debounced one, which is due only a period
 * later. Limits do not stop it: the insert passes the same gate as a claim (migration 0018) and a run not admitted
 * is stored queued instead, which CreateRun sees.
 */
export function mayStartEagerly(flow: RunFlowControl): boolean {
  return flow.debounceKey === null;
}

function evaluate(fn: KeyFn | undefined, input: unknown, what: string): string {
  if (!fn) return "";
  let key: unknown;
  try {
    key = fn(input);
  } catch (error) {
    throw new FlowControlError(`${what} threw: ${(error as Error).message}`);
  }
  if (typeof key !== "string") throw new FlowControlError(`${what} must return a string, got ${key === null ? "null" : typeof key}`);
  if (key.length > 256) throw new FlowControlError(`${what} returned ${key.length} characters; at most 256`);
  return key;
}

function record(value: unknown, what: string, known: readonly string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new FlowControlError(`${what} must be an object`);
  for (const name of Object.keys(value)) {
    if (!known.includes(name)) throw new FlowControlError(`${what} has an unknown option "${name}" (known: ${known.join(", ")})`);
  }
  return value as Record<string, unknown>;
}

function limit(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new FlowControlError(`${what} must be a whole number more than zero, got ${JSON.stringify(value)}`);
  }
  return value;
}

function period(value: unknown, what: string): number {
  let ms: number;
  try {
    ms = parseDuration(value as never);
  } catch (error) {
    throw new FlowControlError(`${what} is not valid: ${(error as Error).message}`);
  }
  if (!(ms > 0)) throw new FlowControlError(`${what} must be more than zero, got ${JSON.stringify(value)}`);
  if (ms > 2_147_483_647) throw new FlowControlError(`${what} must be under 24 days`);
  return Math.round(ms);
}

function keyFn(value: unknown, what: string): KeyFn | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "function") throw new FlowControlError(`${what} must be a function of the input returning a string`);
  return value as KeyFn;
}
