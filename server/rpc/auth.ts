/**
 * API-key authentication and authorization, as a Connect interceptor: it runs
 * for every procedure on every protocol (gRPC metadata, Connect and gRPC-Web
 * headers) and for the REST routes, which call the service through a router
 * with the same interceptors.
 *
 * The key comes from `X-Api-Key`, or `Authorization: Bearer <key>`. It resolves
 * (from memory, see server/auth/key-cache.ts) to a caller: namespace, role and
 * key id, which handlers read with `callerOf(context)` and use to scope every
 * read and write. Keys are logged by id only.
 *
 *   missing, malformed, unknown or revoked key  → UNAUTHENTICATED
 *   a role that may not call the procedure      → PERMISSION_DENIED
 *   over the key's rate limit                   → RESOURCE_EXHAUSTED, with `retry-after` (seconds)
 *                                                 and `retry-after-ms` headers (trailers on gRPC)
 *   a peer address over its failed-auth limit   → RESOURCE_EXHAUSTED with the same headers, before any key
 *                                                 lookup (unless the key verifies from memory), so a flood of
 *                                                 random keys costs a bounded number of database queries
 *
 * The key itself is checked by server/auth/authenticate.ts. On the API port that happens in the HTTP key gate
 * (server/http/key-gate.ts), from the headers, before a body is read or decoded; the gate hands the verified key
 * on as a context value and this interceptor does not look it up again. Calls that reach the services another
 * way (the in-memory router transports of tests) are authenticated here.
 *
 * Roles: admin calls everything; client calls WorkflowService; worker calls
 * AgentService. Health and reflection need no key unless configured otherwise
 * (then any valid key will do).
 */
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { ScheduleService } from "../../sdk/gen/cairn/v1/schedules_pb.js";
import { authenticate, presentedKey } from "../auth/authenticate.js";
import type { KeyCache, VerifiedKey } from "../auth/key-cache.js";
import type { RateLimiter } from "../auth/rate-limit.js";
import type { AuthMode } from "../config.js";
import type { Logger } from "../logger.js";
import type { ApiKeyRole } from "../core/api-key-roles.js";
import { peerOf } from "./peer.js";

/** Who is calling. In open mode: admin of "default", without a key. */
export interface Caller {
  namespace: string;
  role: ApiKeyRole;
  /** The API key's id; undefined in open mode. */
  keyId: string | undefined;
}

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "cairn caller" });

/** The key the HTTP key gate verified (server/http/key-gate.ts); absent for calls that did not pass it. */
export const verifiedKeyKey = createContextKey<VerifiedKey | undefined>(undefined, { description: "cairn key verified at the HTTP layer" });

export const openModeCaller: Caller = Object.freeze({ namespace: "default", role: "admin", keyId: undefined });

/** The caller the auth interceptor resolved. Fails closed if it did not run. */
export function callerOf(context: HandlerContext): Caller {
  const caller = context.values.get(callerKey);
  if (!caller) throw new ConnectError("no authenticated caller for this request (the auth interceptor is not installed)", Code.Internal);
  return caller;
}

/** Which services each role may call (health and reflection: any valid key). */
const roleServices: Record<ApiKeyRole, readonly string[] | "all"> = {
  admin: "all",
  client: [WorkflowService.typeName, ScheduleService.typeName],
  worker: [AgentService.typeName],
};

const healthService = "grpc.health.v1.Health";
const reflectionServices = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/** The services a call to which needs no key (health and reflection, unless configured otherwise). */
export function servicesWithoutKey(options: { openHealth: boolean; openReflection: boolean }): Set<string> {
  return new Set([...(options.openHealth ? [healthService] : []), ...(options.openReflection ? reflectionServices : [])]);
}

export interface AuthOptions {
  mode: AuthMode;
  /** Required in "keys" mode. */
  keys: KeyCache | undefined;
  /** Health needs no key. */
  openHealth: boolean;
  /** Reflection needs no key. */
  openReflection: boolean;
  rateLimiter?: RateLimiter | undefined;
  /** Failed authentications per peer address (CAIRN_AUTH_FAILURE_RPS / _BURST). */
  failedAuthLimiter?: RateLimiter | undefined;
  logger: Logger;
}

export function authInterceptor(options: AuthOptions): Interceptor {
  const { keys, rateLimiter, failedAuthLimiter, logger } = options;
  if (options.mode === "keys" && !keys) throw new Error("authInterceptor: keys mode needs a KeyCache");
  const open = servicesWithoutKey(options);
  const infrastructure = new Set([healthService, ...reflectionServices]);

  return (next) => async (request) => {
    const service = request.service.typeName;
    if (options.mode === "open") {
      request.contextValues.set(callerKey, openModeCaller);
      return next(request);
    }
    if (open.has(service)) return next(request);

    const procedure = `${service}/${request.method.name}`;
    const peer = peerOf(request.contextValues);
    const refuse = (error: ConnectError, keyId?: string): never => {
      logger.info({ keyId, procedure, code: Code[error.code], peer, retryAfterMs: error.metadata.get("retry-after-ms") ?? undefined }, "request refused");
      throw error;
    };

    // The HTTP key gate verified the key from the headers before the body was read: not looked up twice.
    let key = request.contextValues.get(verifiedKeyKey);
    if (!key) {
      const authentication = await authenticate(presentedKey((name) => request.header.get(name)), peer, { keys: keys as KeyCache, failedAuthLimiter });
      if (!authentication.ok) return refuse(authentication.error, authentication.keyId);
      key = authentication.key;
    }
    const allowed = roleServices[key.role];
    if (allowed !== "all" && !allowed.includes(service) && !infrastructure.has(service)) {
      return refuse(
        new ConnectError(`API key ${key.id} has role ${key.role}, which cannot call ${procedure}; ${key.role} keys may call ${allowed.join(", ")} only`, Code.PermissionDenied),
        key.id,
      );
    }
    if (rateLimiter) {
      const waitMs = rateLimiter.take(key.id);
      if (waitMs > 0) {
        logger.info({ keyId: key.id, procedure, retryAfterMs: waitMs }, "request rate limited");
        throw new ConnectError(
          `API key ${key.id} is over its rate limit of ${rateLimiter.rps} requests/s (burst ${rateLimiter.burst}, CAIRN_RATE_LIMIT_RPS); retry after ${waitMs} ms`,
          Code.ResourceExhausted,
          { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))), "retry-after-ms": String(waitMs) },
        );
      }
    }
    request.contextValues.set(callerKey, { namespace: key.namespace, role: key.role, keyId: key.id });
    const response = await next(request);
    // A stream (WatchRun, WatchRuns, ReceiveTurns) may run for hours: it ends when its key is revoked.
    if (!response.stream) return response;
    return { ...response, message: untilRevoked(response.message, keys as KeyCache, key.id) };
  };
}

async function* untilRevoked<T>(messages: AsyncIterable<T>, keys: KeyCache, keyId: string): AsyncIterable<T> {
  let revoke: (() => void) | undefined;
  const revoked = new Promise<never>((_, reject) => {
    revoke = () => reject(new ConnectError(`API key ${keyId} has been revoked`, Code.Unauthenticated));
  });
  revoked.catch(() => undefined);
  const unwatch = keys.watch(keyId, () => revoke?.());
  const iterator = messages[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = iterator.next();
      next.catch(() => undefined); // abandoned after a revocation: its outcome no longer matters
      const result = await Promise.race([next, revoked]);
      if (result.done) return;
      yield result.value;
    }
  } finally {
    unwatch();
    // Not awaited: a handler busy in an await stops at its next yield or when its signal aborts.
    iterator.return?.()?.catch(() => undefined);
  }
}
