/**
 * `ctx.step`: run a function once and journal its JSON result or its final
 * error. Failed attempts retry by policy (each failure journaled with the time
 * of the next attempt, see retry.ts); a `timeout` aborts the attempt's signal
 * and fails it whatever the function does. A step that already has an outcome
 * in the journal never runs again: replay hands back what was recorded.
 */
import { checkOptionKeys, type JsonValue, type StepContext, type StepOptions, type RetryPolicy } from "../../../sdk/workflow.js";
import { parseDuration } from "../duration.js";
import type { StepAttemptFailed, StepCompleted, StepFailed } from "../journal.js";
import { failureToError, type FailureInfo, stepResultLimit, storedJson, toFailureInfo } from "../json.js";
import { type ResolvedRetryPolicy, resolveRetryPolicy, retryDelayMs } from "../retry.js";
import type { StepAttemptScope, StepAttemptStart } from "../host.js";
import type { ContextMethods, EntryDescriptors, Operation, OperationKernel } from "./primitive.js";
import { attemptSuffix, failureText } from "./settled.js";

export const stepEntries: EntryDescriptors<"step_completed" | "step_failed" | "step_attempt_failed"> = {
  step_completed: {
    operation: "step",
    settle: (entry, operation) => operation.resolve(entry.result),
    summary: (entry) => `step ${entry.name} completed${attemptSuffix(entry.attempt)}`,
  },
  step_failed: {
    operation: "step",
    settle: (entry, operation) => operation.reject(failureToError(entry.error)),
    summary: (entry) => `step ${entry.name} failed${attemptSuffix(entry.attempt)}: ${failureText(entry.error)}`,
  },
  step_attempt_failed: {
    operation: "step",
    summary: (entry) => `step ${entry.name} attempt ${entry.attempt} failed, will retry: ${failureText(entry.error)}`,
  },
};

const stepOptionKeys = ["retry", "timeout"] as const satisfies readonly (keyof StepOptions)[];
const retryPolicyKeys = ["maxAttempts", "initialInterval", "backoffCoefficient", "maxInterval", "jitter", "nonRetryableErrors"] as const satisfies readonly (keyof RetryPolicy)[];

interface LiveStep {
  operation: Operation;
  fn: (step: StepContext) => unknown;
  policy: ResolvedRetryPolicy;
  timeoutMs: number | undefined;
  startedAt: Date;
}

export const stepContext: ContextMethods<"step"> = (kernel) => ({
  step: <T>(name: string, fn: (step: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T> => {
    const { operation, promise, recorded } = kernel.register<T>(name, "step");
    if (hasOutcome(recorded)) return promise;
    let policy: ResolvedRetryPolicy;
    let timeoutMs: number | undefined;
    try {
      checkOptionKeys(options, stepOptionKeys, "step options");
      checkOptionKeys(options?.retry, retryPolicyKeys, "retry policy");
      policy = resolveRetryPolicy(options?.retry);
      timeoutMs = options?.timeout === undefined ? undefined : parseDuration(options.timeout);
    } catch (error) {
      return kernel.invalid(name, "step", error);
    }
    // A live step's first attempt has nothing recorded: nothing to filter (a step's garbage is most of a run's).
    const failures = recorded.length === 0 ? [] : recorded.filter((e): e is typeof e & StepAttemptFailed => e.kind === "step_attempt_failed");
    const attempt = failures.length + 1;
    const startedAt = recorded[0]?.startedAt ?? kernel.host.now();
    const live: LiveStep = { operation, fn: fn as (step: StepContext) => unknown, policy, timeoutMs, startedAt };
    const retryAt = failures.length === 0 ? undefined : (failures[failures.length - 1] as StepAttemptFailed).fireAt;
    if (retryAt && retryAt.getTime() > kernel.host.now().getTime()) awaitRetry(kernel, live, attempt, retryAt);
    else runAttempt(kernel, live, attempt);
    return promise;
  },
});

/** The journal already holds the step's outcome: replay hands it back, the function never runs again. */
function hasOutcome(recorded: readonly { kind: string }[]): boolean {
  for (let i = 0; i < recorded.length; i++) {
    const kind = (recorded[i] as { kind: string }).kind;
    if (kind === "step_completed" || kind === "step_failed") return true;
  }
  return false;
}

/** Parks a step until its backoff passes; the run may suspend meanwhile (the backoff is durable). */
function awaitRetry(kernel: OperationKernel, live: LiveStep, attempt: number, retryAt: Date): void {
  live.operation.wait = { kind: "retry", name: live.operation.name, fireAt: retryAt, nextAttempt: attempt };
  live.operation.retry = () => runAttempt(kernel, live, attempt);
}

/** A step whose backoff has passed runs its next attempt now (nothing is journaled for the wake-up itself). */
export function startDueRetry(operations: Iterable<Operation>, now: Date): boolean {
  for (const operation of operations) {
    const wait = operation.wait;
    if (operation.settled || wait?.kind !== "retry" || wait.fireAt.getTime() > now.getTime() || !operation.retry) continue;
    const retry = operation.retry;
    delete operation.wait;
    delete operation.retry;
    retry();
    return true;
  }
  return false;
}

function runAttempt(kernel: OperationKernel, live: LiveStep, attempt: number): void {
  const { operation, policy, startedAt } = live;
  const name = operation.name;
  const lost = kernel.host.leaseLost?.();
  if (lost) {
    kernel.fail(lost, true);
    return;
  }
  const scope = kernel.host.stepAttempt?.(live.timeoutMs === undefined ? { name, attempt } : { name, attempt, timeout: overrun(name, attempt, live, startedAt) });
  kernel.track(
    runStep(kernel, name, live.fn, attempt, live.timeoutMs, scope).then((settled) => {
      if ("value" in settled) {
        scope?.end("completed");
        const entry: StepCompleted =
          settled.value === undefined ? { kind: "step_completed", name, attempt, startedAt } : { kind: "step_completed", name, attempt, startedAt, result: settled.value };
        kernel.write(entry, operation);
        return;
      }
      const delayMs = retryDelayMs(policy, attempt, settled.failure);
      scope?.end(delayMs === undefined ? "failed" : "retrying");
      if (delayMs === undefined) {
        const entry: StepFailed = { kind: "step_failed", name, error: settled.failure, attempt, startedAt };
        kernel.write(entry, operation);
        return;
      }
      const retryAt = new Date(kernel.host.now().getTime() + delayMs);
      kernel.write({ kind: "step_attempt_failed", name, error: settled.failure, attempt, startedAt, fireAt: retryAt }, operation);
      awaitRetry(kernel, live, attempt + 1, retryAt);
    }),
  );
}

function timeoutFailure(name: string, attempt: number, timeoutMs: number): Error {
  const error = new Error(`step "${name}" attempt ${attempt} timed out after ${timeoutMs} ms`);
  error.name = "StepTimeoutError";
  return error;
}

/** What the host journals if the attempt overruns its timeout without yielding (its watchdog stops the code). */
function overrun(name: string, attempt: number, live: LiveStep, startedAt: Date): NonNullable<StepAttemptStart["timeout"]> {
  const failure = toFailureInfo(timeoutFailure(name, attempt, live.timeoutMs as number));
  return { ms: live.timeoutMs as number, failure, retryDelayMs: retryDelayMs(live.policy, attempt, failure), startedAt };
}

/**
 * One attempt of a step's function; a timeout aborts its signal and fails the attempt whatever the function does,
 * even when the function never yielded to let the timer fire (a CPU burn that returns late is a timeout, not a result).
 */
async function runStep(
  kernel: OperationKernel,
  name: string,
  fn: (step: StepContext) => unknown,
  attempt: number,
  timeoutMs: number | undefined,
  scope: StepAttemptScope | undefined,
): Promise<{ value: JsonValue | undefined } | { failure: FailureInfo }> {
  if (timeoutMs !== undefined) return runStepWithTimeout(kernel, name, fn, attempt, timeoutMs, scope);
  // Most steps have no timeout: no timer, controller or race to build (a step's garbage is most of a run's).
  try {
    const signal = kernel.host.signal;
    const call = () => fn({ idempotencyKey: `${kernel.run.runId}:${name}`, attempt, signal });
    return stepValue(kernel, name, await (scope ? scope.run(call) : call()));
  } catch (error) {
    return { failure: toFailureInfo(error) };
  }
}

async function runStepWithTimeout(
  kernel: OperationKernel,
  name: string,
  fn: (step: StepContext) => unknown,
  attempt: number,
  timeoutMs: number,
  scope: StepAttemptScope | undefined,
): Promise<{ value: JsonValue | undefined } | { failure: FailureInfo }> {
  const timeout = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = timeoutFailure(name, attempt, timeoutMs);
      timeout.abort(error);
      reject(error);
    }, timeoutMs);
  });
  timedOut.catch(() => undefined);
  const signal = AbortSignal.any([kernel.host.signal, timeout.signal]);
  try {
    const call = () => fn({ idempotencyKey: `${kernel.run.runId}:${name}`, attempt, signal });
    const started = Date.now();
    const value = await Promise.race([scope ? scope.run(call) : call(), timedOut]);
    if (Date.now() - started > timeoutMs) throw timeoutFailure(name, attempt, timeoutMs);
    return stepValue(kernel, name, value);
  } catch (error) {
    return { failure: toFailureInfo(error) };
  } finally {
    clearTimeout(timer);
  }
}

/** A step function's value as the journal keeps it (throws what makes it unstorable). */
function stepValue(kernel: OperationKernel, name: string, value: unknown): { value: JsonValue | undefined } {
  if (value === undefined) return { value: undefined };
  return { value: storedJson(value, `step "${name}" result`, stepResultLimit(kernel.host.limits)) };
}
