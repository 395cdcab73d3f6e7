/**
 * The one place domain errors become Connect codes. Anything unrecognised is
 * an INTERNAL error: logged with its cause, never sent to the client.
 */
import { ScheduleExistsError, ScheduleNotFoundError } from "../core/schedule-errors.js";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  DeterminismError,
  EventTargetNotFoundError,
  RunAlreadyFinishedError,
  RunControlRefusedError,
  IdempotencyConflictError,
  InvalidInputError,
  PayloadTooLargeError,
  RunNotFoundError,
  BatchNotFoundError,
  TurnLeaseLostError,
  TurnNotFoundError,
  WorkflowNotFoundError,
} from "../core/errors.js";
import type { Logger } from "../logger.js";
import { callerKey } from "./auth.js";

export function toConnectError(error: unknown, logger: Logger, procedure: string, keyId?: string): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof WorkflowNotFoundError || error instanceof RunNotFoundError || error instanceof BatchNotFoundError) {
    return new ConnectError(error.message, Code.NotFound);
  }
  if (error instanceof InvalidInputError || error instanceof PayloadTooLargeError) {
    return new ConnectError(error.message, Code.InvalidArgument);
  }
  if (error instanceof IdempotencyConflictError) return new ConnectError(error.message, Code.AlreadyExists);
  if (error instanceof ScheduleNotFoundError) return new ConnectError(error.message, Code.NotFound);
  if (error instanceof ScheduleExistsError) return new ConnectError(error.message, Code.AlreadyExists);
  if (error instanceof EventTargetNotFoundError) return new ConnectError(error.message, Code.NotFound);
  if (error instanceof RunAlreadyFinishedError) return new ConnectError(error.message, Code.FailedPrecondition);
  if (error instanceof RunControlRefusedError) return new ConnectError(error.message, Code.FailedPrecondition);
  if (error instanceof DeterminismError) return new ConnectError(error.message, Code.FailedPrecondition);
  if (error instanceof TurnNotFoundError) return new ConnectError(error.message, Code.NotFound);
  if (error instanceof TurnLeaseLostError) return new ConnectError(error.message, Code.FailedPrecondition);
  const sqlState = postgresCode(error);
  if (sqlState === "40001" || sqlState === "40P01") {
    return new ConnectError("the database asked to retry a conflicting transaction; retry the call", Code.Aborted);
  }
  if (sqlState === "22P05" || sqlState === "22021") {
    return new ConnectError("text and JSON values cannot contain NUL (\\u0000) characters", Code.InvalidArgument);
  }
  if (isConnectionFailure(error)) {
    return new ConnectError("the database is unavailable; retry the call", Code.Unavailable);
  }
  logger.error({ err: error, procedure, ...(keyId ? { keyId } : {}) }, "internal error");
  return new ConnectError("internal error (the server logged the cause)", Code.Internal);
}

const connectionErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

/**
 * The database could not be reached, or dropped the connection (restarting, shutting down, the backend
 * terminated, out of connection slots): the call may succeed once it is back. The pool reports some of these
 * without a SQLSTATE (a refused connection, "Connection terminated unexpectedly").
 */
function isConnectionFailure(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && (connectionErrnos.has(code) || code.startsWith("08") || code.startsWith("57P") || code === "53300")) return true;
    if (current instanceof Error && /^Connection terminated|timeout exceeded when trying to connect|is not queryable$/.test(current.message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** SQLSTATE of a pg error, directly or wrapped by Drizzle (`err.cause.code`). */
function postgresCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 3; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export function errorMappingInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    // The auth interceptor (inside this one) records the caller in the shared context values: logs name its key id.
    const keyId = () => request.contextValues.get(callerKey)?.keyId;
    try {
      const response = await next(request);
      // A server stream fails while it is read, after `next` returned: map those errors too.
      if (!response.stream) return response;
      return { ...response, message: mapStreamErrors(response.message, logger, request.url, keyId) };
    } catch (error) {
      throw toConnectError(error, logger, request.url, keyId());
    }
  };
}

async function* mapStreamErrors<T>(messages: AsyncIterable<T>, logger: Logger, procedure: string, keyId: () => string | undefined): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw toConnectError(error, logger, procedure, keyId());
  }
}
