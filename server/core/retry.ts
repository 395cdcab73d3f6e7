/**
 * Step retry policy: which failures retry, and when. A step without a
 * `retry` option runs once (its failure is thrown into the handler, as with
 * any function call); with one, these defaults fill the gaps.
 */
import type { RetryPolicy } from "../../sdk/workflow.js";
import { parseDuration } from "./duration.js";
import type { FailureInfo } from "./json.js";

export interface ResolvedRetryPolicy {
  maxAttempts: number;
  initialIntervalMs: number;
  backoffCoefficient: number;
  maxIntervalMs: number;
  jitter: number;
  nonRetryableErrors: ReadonlySet<string>;
}

export const retryDefaults = {
  maxAttempts: 3,
  initialInterval: "1s",
  backoffCoefficient: 2,
  maxInterval: "1m",
  jitter: 0,
} as const;

/** Failures that no retry can fix: thrown on purpose, or a bug in the workflow's use of ctx. */
const alwaysFinal = ["NonRetryableError", "NonJsonValueError", "PayloadTooLargeError", "InvalidOperationError", "DeterminismError"];

export const noRetry: ResolvedRetryPolicy = {
  maxAttempts: 1,
  initialIntervalMs: 0,
  backoffCoefficient: 1,
  maxIntervalMs: 0,
  jitter: 0,
  nonRetryableErrors: new Set(alwaysFinal),
};

export function resolveRetryPolicy(policy: RetryPolicy | undefined): ResolvedRetryPolicy {
  if (!policy) return noRetry;
  const maxAttempts = policy.maxAttempts ?? retryDefaults.maxAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new Error(`retry.maxAttempts must be an integer of at least 1 (got ${maxAttempts})`);
  const backoffCoefficient = policy.backoffCoefficient ?? retryDefaults.backoffCoefficient;
  if (!Number.isFinite(backoffCoefficient) || backoffCoefficient < 1) throw new Error(`retry.backoffCoefficient must be 1 or more (got ${backoffCoefficient})`);
  const jitter = policy.jitter ?? retryDefaults.jitter;
  if (!Number.isFinite(jitter) || jitter < 0 || jitter > 1) throw new Error(`retry.jitter must be between 0 and 1 (got ${jitter})`);
  return {
    maxAttempts,
    initialIntervalMs: parseDuration(policy.initialInterval ?? retryDefaults.initialInterval),
    backoffCoefficient,
    maxIntervalMs: parseDuration(policy.maxInterval ?? retryDefaults.maxInterval),
    jitter,
    nonRetryableErrors: new Set([...alwaysFinal, ...(policy.nonRetryableErrors ?? [])]),
  };
}

/** The delay before attempt `attempt + 1`, or undefined when `failure` on `attempt` is final. */
export function retryDelayMs(policy: ResolvedRetryPolicy, attempt: number, failure: FailureInfo, random = Math.random): number | undefined {
  if (attempt >= policy.maxAttempts || policy.nonRetryableErrors.has(failure.name)) return undefined;
  const base = Math.min(policy.initialIntervalMs * policy.backoffCoefficient ** (attempt - 1), policy.maxIntervalMs);
  // The delay is journaled with the failure, so randomness here cannot break replay.
  return Math.round(base * (1 - policy.jitter * random()));
}
