/**
 * Errors thrown by the Cairn client. Every one is a `CairnError` carrying a Connect `code`:
 * RPC failures keep the server's code and message; the outcome of a run awaited with
 * `waitForResult` is a `RunFailedError` or `RunCancelledError` carrying the run's failure; a wait
 * that runs out of time is a `WaitTimeoutError`. No Node-only imports: this runs in browsers.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { JsonValue } from "./workflow.js";

export { Code };

/** An error recorded in a run (the run's `error`): what the handler threw, or the cancel reason. */
export interface RunFailure {
  /** The error's class name, e.g. "TypeError" or "NonRetryableError". */
  name: string;
  message: string;
  /** JavaScript stack trace where one was recorded; for people, not for matching. */
  stack?: string;
  /** Extra JSON data the error carried. */
  details?: JsonValue;
}

/** `Code.InvalidArgument` → `"invalid_argument"`, the spelling of Connect's error JSON. */
export function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase();
}

export interface CairnErrorOptions {
  /** The message without the `[code]` prefix. */
  rawMessage?: string;
  /** Response headers and trailers of the failed call. */
  metadata?: Headers;
  cause?: unknown;
}

export class CairnError extends Error {
  override name: string = "CairnError";
  /** The Connect code (`Code.NotFound`, ...). */
  readonly code: Code;
  /** The message as the server sent it, without the `[code]` prefix. */
  readonly rawMessage: string;
  /** Response headers and trailers of the failed call (empty for errors made by the client). */
  readonly metadata: Headers;

  constructor(message: string, code: Code = Code.Unknown, options: CairnErrorOptions = {}) {
    super(`[${codeName(code)}] ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.rawMessage = options.rawMessage ?? message;
    this.metadata = options.metadata ?? new Headers();
  }

  /** `"not_found"`, `"invalid_argument"`, ...: the code as Connect's JSON and the REST routes spell it. */
  get codeName(): string {
    return codeName(this.code);
  }

  /** Converts anything thrown by a Connect client (or fetch) to a CairnError; CairnErrors pass through. */
  static from(error: unknown): CairnError {
    if (error instanceof CairnError) return error;
    const connect = ConnectError.from(error);
    return new CairnError(connect.rawMessage, connect.code, { metadata: connect.metadata, cause: error });
  }
}

/** `waitForResult`: the run ended FAILED. `failure` is what its handler threw. */
export class RunFailedError extends CairnError {
  override name = "RunFailedError";
  constructor(
    readonly runId: string,
    readonly failure: RunFailure,
  ) {
    super(`run ${runId} failed: ${failure.name ? `${failure.name}: ` : ""}${failure.message}`, Code.Aborted);
  }
}

/** `waitForResult`: the run ended CANCELLED. `failure.message` holds the cancel reason. */
export class RunCancelledError extends CairnError {
  override name = "RunCancelledError";
  constructor(
    readonly runId: string,
    readonly failure: RunFailure | undefined,
  ) {
    super(`run ${runId} was cancelled${failure?.message ? `: ${failure.message}` : ""}`, Code.Canceled);
  }
}

/** `waitForResult`: the run had not ended when `timeoutMs` passed. The run itself goes on. */
export class WaitTimeoutError extends CairnError {
  override name = "WaitTimeoutError";
  constructor(
    readonly runId: string,
    readonly timeoutMs: number,
    /** The run's status at the last poll ("running", "waiting", ...). */
    readonly lastStatus: string,
  ) {
    super(`run ${runId} did not finish within ${timeoutMs} ms (last status: ${lastStatus})`, Code.DeadlineExceeded);
  }
}
