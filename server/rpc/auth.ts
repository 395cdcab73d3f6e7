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
 * Roles: admin calls everything; client calls WorkflowService; worker calls
 * AgentService. Health and reflection need no key unless configured otherwise
 * (then any valid key will do).
 */
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { ScheduleService } from "../../sdk/gen/cairn/v1/schedules_pb.js";
import { parseApiKey } from "../auth/api-key.js";
import type { KeyCache } from "../auth/key-cache.js";
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
  const open = new Set([...(options.openHealth ? [healthService] : []), ...(options.openReflection ? reflectionServices : [])]);
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
    const refuse = (message: string, code: Code, keyId?: string): never => {
      logger.info({ keyId, procedure, code: Code[code], peer }, "request refused");
      if (code === Code.Unauthenticated) failedAuthLimiter?.take(peer);
      throw new ConnectError(message, code);
    };

    const presented = presentedKey(request.header);
    if (failedAuthLimiter) {
      // A key that verifies from memory costs nothing: it passes even from a peer that has failed a lot.
      const id = presented === undefined ? undefined : parseApiKey(presented)?.id;
      const waitMs = id !== undefined && (keys as KeyCache).isCachedLive(id) ? 0 : failedAuthLimiter.peek(peer);
      if (waitMs > 0) {
        logger.info({ peer, procedure, retryAfterMs: waitMs }, "request refused: too many failed authentications");
        throw new ConnectError(
          `too many failed authentications from ${peer} (limit CAIRN_AUTH_FAILURE_RPS=${failedAuthLimiter.rps}, ` +
            `CAIRN_AUTH_FAILURE_BURST=${failedAuthLimiter.burst}); retry after ${waitMs} ms with a valid API key`,
          Code.ResourceExhausted,
          { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))), "retry-after-ms": String(waitMs) },
        );
      }
    }
    if (presented === undefined) {
      return refuse("missing API key: send it in the X-Api-Key header (or as Authorization: Bearer <key>)", Code.Unauthenticated);
    }
    const verified = await (keys as KeyCache).verify(presented);
    if (!verified.ok) {
      if (verified.reason === "malformed") {
        return refuse("malformed API key: Cairn keys look like cairn_<id>_<secret> (create one with `cairn keys create`)", Code.Unauthenticated);
      }
      if (verified.reason === "revoked") return refuse(`API key ${verified.keyId} has been revoked`, Code.Unauthenticated, verified.keyId);
      return refuse(`API key ${verified.keyId} is not valid (no such key, or a wrong secret)`, Code.Unauthenticated, verified.keyId);
    }
    const { key } = verified;
    const allowed = roleServices[key.role];
    if (allowed !== "all" && !allowed.includes(service) && !infrastructure.has(service)) {
      return refuse(
        `API key ${key.id} has role ${key.role}, which cannot call ${procedure}; ${key.role} keys may call ${allowed.join(", ")} only`,
        Code.PermissionDenied,
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

/** X-Api-Key, else the token of `Authorization: Bearer …`; other Authorization schemes are not ours and are ignored. */
function presentedKey(header: Headers): string | undefined {
  const apiKey = header.get("x-api-key")?.trim();
  if (apiKey) return apiKey;
  const authorization = header.get("authorization")?.trim();
  const bearer = authorization ? /^bearer\s+(.+)$/i.exec(authorization) : null;
  return bearer?.[1]?.trim() || undefined;
}
