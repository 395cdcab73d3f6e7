// grpc.health.v1.Health, so that Kubernetes probes, load balancers and grpc_health_probe can ask
// whether this server (service "") or one named service is serving, over gRPC, gRPC-Web or Connect.
// Semantics follow grpc-go's health server: Check on an unknown service is NOT_FOUND; Watch sends
// the current status (SERVICE_UNKNOWN for an unknown service) and then every change; shutdown()
// flips everything to NOT_SERVING, ignores later updates and ends all Watch streams so that HTTP/2
// sessions can drain during a graceful stop.

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../sdk/gen/grpc/health/v1/health_pb.js";

export { Health, ServingStatus };

export interface HealthServiceOptions {
  /** Service names (fully qualified, e.g. "cairn.v1.WorkflowService") reported SERVING from the start. */
  services?: Iterable<string>;
}

export interface HealthService {
  /** Register with `router.service(Health, health.impl)`. */
  readonly impl: ServiceImpl<typeof Health>;
  /** Set the status of a service ("" is the whole server). Ignored after shutdown(). */
  setStatus(service: string, status: ServingStatus): void;
  /** Current status, or undefined when the service is unknown. */
  getStatus(service: string): ServingStatus | undefined;
  /** Mark everything NOT_SERVING, freeze statuses and end every Watch stream. Idempotent. */
  shutdown(): void;
}

export function createHealthService(options: HealthServiceOptions = {}): HealthService {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  for (const name of options.services ?? []) statuses.set(name, ServingStatus.SERVING);
  let closed = false;
  // Woken on every status change and on shutdown; each waiter re-reads the map itself.
  const waiters = new Set<() => void>();

  const notify = (): void => {
    for (const wake of [...waiters]) wake();
  };

  const nextChange = (signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });

  const response = (status: ServingStatus): HealthCheckResponse =>
    create(HealthCheckResponseSchema, { status });

  const impl: ServiceImpl<typeof Health> = {
    check(req: HealthCheckRequest): HealthCheckResponse {
      const status = statuses.get(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      }
      return response(status);
    },
    async *watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
      let sent: ServingStatus | undefined;
      for (;;) {
        const current = statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (current !== sent) {
          sent = current;
          yield response(current);
          continue; // the status may have changed while the consumer held us at yield
        }
        if (closed || ctx.signal.aborted) return;
        await nextChange(ctx.signal);
      }
    },
  };

  return {
    impl,
    setStatus(service, status) {
      if (closed || statuses.get(service) === status) return;
      statuses.set(service, status);
      notify();
    },
    getStatus: (service) => statuses.get(service),
    shutdown() {
      if (closed) return;
      for (const name of statuses.keys()) statuses.set(name, ServingStatus.NOT_SERVING);
      closed = true;
      notify();
    },
  };
}
