/**
 * Domain errors. They know nothing of Connect: `server/rpc/error-mapping.ts`
 * maps them to codes in one place, so the engine and store stay transport-free.
 */

export class WorkflowNotFoundError extends Error {
  override readonly name = "WorkflowNotFoundError";
  constructor(
    readonly workflowName: string,
    readonly knownNames: readonly string[],
    readonly workflowDirs: readonly string[],
  ) {
    const known = knownNames.length > 0 ? knownNames.join(", ") : "none";
    super(
      `unknown workflow "${workflowName}"; known workflows: ${known} (loaded from WORKFLOW_DIRS=${workflowDirs.join(":")})`,
    );
  }
}

export class InvalidInputError extends Error {
  override readonly name = "InvalidInputError";
  constructor(
    message: string,
    readonly violations: readonly string[] = [],
  ) {
    super(violations.length > 0 ? `${message}: ${violations.join("; ")}` : message);
  }
}

export class PayloadTooLargeError extends Error {
  override readonly name = "PayloadTooLargeError";
  constructor(
    readonly what: string,
    readonly sizeBytes: number,
    readonly limitBytes: number,
    readonly setting: string,
  ) {
    super(`${what} is ${sizeBytes} bytes, over the limit of ${limitBytes} bytes (${setting})`);
  }
}

export class RunNotFoundError extends Error {
  override readonly name = "RunNotFoundError";
  constructor(readonly runId: string) {
    super(`run "${runId}" not found`);
  }
}

export class BatchNotFoundError extends Error {
  override readonly name = "BatchNotFoundError";
  constructor(readonly batchId: string) {
    super(`batch "${batchId}" not found`);
  }
}

/** An idempotency key reused for a different request. */
export class IdempotencyConflictError extends Error {
  override readonly name = "IdempotencyConflictError";
  constructor(
    readonly idempotencyKey: string,
    readonly existingRunId: string,
  ) {
    super(
      `idempotency key "${idempotencyKey}" was already used by run ${existingRunId} with a different workflow or input; use a new key for a different request`,
    );
  }
}

/**
 * The handler did not do what its journal says it did last time: replay can't
 * continue safely. Fails the run; never caught by the handler's own try/catch.
 */
export class DeterminismError extends Error {
  override readonly name = "DeterminismError";
  constructor(
    readonly operationName: string,
    message: string,
  ) {
    super(message);
  }
}

/** A step result or run output that JSON can't carry unchanged. */
export class NonJsonValueError extends Error {
  override readonly name = "NonJsonValueError";
}

/** This process no longer holds the run's lease: another process owns it now, so nothing more may be written. */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  constructor(
    readonly runId: string,
    reason = "the write was refused (another process owns the run now)",
  ) {
    super(`lease on run ${runId} was lost; ${reason}`);
  }
}

/** CancelRun reached a running run: the activation stops and the run ends CANCELLED. */
export class RunCancelRequestedError extends Error {
  override readonly name = "CancelledError";
  constructor(
    readonly runId: string,
    readonly reason: string,
  ) {
    super(reason || "cancelled");
  }
}

/** CancelRun on a run that already ended. */
export class RunAlreadyFinishedError extends Error {
  override readonly name = "RunAlreadyFinishedError";
  constructor(
    readonly runId: string,
    readonly status: string,
  ) {
    super(`run ${runId} already ended (${status}); only queued, running or waiting runs can be cancelled`);
  }
}

/** PauseRun reached a running run: the activation stops at its next durable operation and the run is paused. */
export class RunPauseRequestedError extends Error {
  override readonly name = "RunPauseRequestedError";
  constructor(readonly runId: string) {
    super(`run ${runId} was paused`);
  }
}

/**
 * The run did not end by its run-level timeout (CreateRun's `timeout`, or `defineWorkflow({ timeout })`): it
 * fails with this error, whatever it was doing, and its children are cancelled.
 */
export class RunTimeoutError extends Error {
  override readonly name = "RunTimeoutError";
  constructor(
    readonly runId: string,
    /** The timeout as given: timeout_at minus created_at, in ms. */
    readonly timeoutMs: number,
  ) {
    super(`run ${runId} did not end within its timeout of ${formatMs(timeoutMs)}`);
  }
}

/** 1500 → "1.5s", 90000 → "1m30s", 250 → "250ms": how people write durations to Cairn. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const units: [string, number][] = [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]];
  let rest = ms;
  let text = "";
  for (const [unit, size] of units) {
    if (rest >= size) {
      text += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  if (rest > 0) text += `${rest / 1000}s`;
  return text;
}

/** PauseRun, ResumeRun or RetryRun on a run in a status it does not apply to; ForkRun from an operation the source never reached. */
export class RunControlRefusedError extends Error {
  override readonly name = "RunControlRefusedError";
  constructor(
    readonly runId: string,
    message: string,
  ) {
    super(message);
  }
}

/** The target of a targeted event does not exist in the caller's namespace. */
export class EventTargetNotFoundError extends Error {
  override readonly name = "EventTargetNotFoundError";
  constructor(readonly runId: string) {
    super(`run_id "${runId}" names no run; omit run_id to deliver to every run waiting on the key`);
  }
}

/** An agent turn id that does not exist in the caller's namespace. */
export class TurnNotFoundError extends Error {
  override readonly name = "TurnNotFoundError";
  constructor(readonly turnId: string) {
    super(`turn "${turnId}" not found`);
  }
}

/** A worker reports on a turn whose lease it no longer holds (lapsed and delivered again, or already finished). */
export class TurnLeaseLostError extends Error {
  override readonly name = "TurnLeaseLostError";
  constructor(
    readonly turnId: string,
    readonly reason: string,
  ) {
    const why = reason === "lease_lost" ? "this worker's lease on it lapsed and the turn was delivered again" : `the turn is already ${reason}`;
    super(`turn ${turnId} refused: ${why}; drop this result`);
  }
}
