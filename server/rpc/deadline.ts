/**
 * Call deadlines (Connect `connect-timeout-ms`, gRPC `grpc-timeout`). When one
 * passes, Connect aborts the handler's signal with DEADLINE_EXCEEDED but still
 * sends whatever the handler returns later. Handlers call this before each
 * write, and long polls and streams when they stop waiting, so a call whose
 * deadline passed ends with DEADLINE_EXCEEDED and stores nothing more.
 *
 * Other aborts (the client went away, the server is draining for shutdown)
 * keep their old meaning: in-flight writes finish, long polls answer empty.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export function deadlinePassed(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof ConnectError && signal.reason.code === Code.DeadlineExceeded;
}

export function throwIfDeadlinePassed(signal: AbortSignal): void {
  if (deadlinePassed(signal)) throw signal.reason;
}

/** A call that arrives with its deadline already passed (e.g. `connect-timeout-ms: 0`) does no work at all. */
export function deadlineInterceptor(): Interceptor {
  return (next) => async (request) => {
    throwIfDeadlinePassed(request.signal);
    return next(request);
  };
}
