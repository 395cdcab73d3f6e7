/**
 * Who presents which key: the one authentication step, shared by the HTTP key gate (server/http/key-gate.ts,
 * which runs it on the request headers before a body is read) and the auth interceptor (server/rpc/auth.ts,
 * which runs it for calls that did not pass the gate: in-memory transports in tests). Roles and rate limits are
 * the interceptor's; this only says whether the key verifies.
 *
 *   a peer address over its failed-auth limit  → RESOURCE_EXHAUSTED with `retry-after` (seconds) and
 *                                                `retry-after-ms`, before any key lookup (unless the key
 *                                                verifies from memory), so a flood of random keys costs a
 *                                                bounded number of database queries
 *   missing, malformed, unknown or revoked key → UNAUTHENTICATED (and a token of the peer's failed-auth budget)
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { parseApiKey } from "./api-key.js";
import type { KeyCache, VerifiedKey } from "./key-cache.js";
import type { RateLimiter } from "./rate-limit.js";

export type Authentication = { ok: true; key: VerifiedKey } | { ok: false; error: ConnectError; keyId?: string | undefined };

export interface Authenticator {
  keys: KeyCache;
  /** Failed authentications per peer address (CAIRN_AUTH_FAILURE_RPS / _BURST). */
  failedAuthLimiter?: RateLimiter | undefined;
}

/** May throw what the key store throws (a lookup that cannot reach the database): callers map it. */
export async function authenticate(presented: string | undefined, peer: string, { keys, failedAuthLimiter }: Authenticator): Promise<Authentication> {
  if (failedAuthLimiter) {
    // A key that verifies from memory costs nothing: it passes even from a peer that has failed a lot.
    const id = presented === undefined ? undefined : parseApiKey(presented)?.id;
    const waitMs = id !== undefined && keys.isCachedLive(id) ? 0 : failedAuthLimiter.peek(peer);
    if (waitMs > 0) {
      return {
        ok: false,
        error: new ConnectError(
          `too many failed authentications from ${peer} (limit CAIRN_AUTH_FAILURE_RPS=${failedAuthLimiter.rps}, ` +
            `CAIRN_AUTH_FAILURE_BURST=${failedAuthLimiter.burst}); retry after ${waitMs} ms with a valid API key`,
          Code.ResourceExhausted,
          { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))), "retry-after-ms": String(waitMs) },
        ),
      };
    }
  }
  const failed = (message: string, keyId?: string): Authentication => {
    failedAuthLimiter?.take(peer);
    return { ok: false, error: new ConnectError(message, Code.Unauthenticated), keyId };
  };
  if (presented === undefined) return failed("missing API key: send it in the X-Api-Key header (or as Authorization: Bearer <key>)");
  const verified = await keys.verify(presented);
  if (verified.ok) return { ok: true, key: verified.key };
  if (verified.reason === "malformed") return failed("malformed API key: Cairn keys look like cairn_<id>_<secret> (create one with `cairn keys create`)");
  if (verified.reason === "revoked") return failed(`API key ${verified.keyId} has been revoked`, verified.keyId);
  return failed(`API key ${verified.keyId} is not valid (no such key, or a wrong secret)`, verified.keyId);
}

/** X-Api-Key, else the token of `Authorization: Bearer …`; other Authorization schemes are not ours and are ignored. */
export function presentedKey(header: (name: string) => string | null | undefined): string | undefined {
  const apiKey = header("x-api-key")?.trim();
  if (apiKey) return apiKey;
  const authorization = header("authorization")?.trim();
  const bearer = authorization ? /^bearer\s+(.+)$/i.exec(authorization) : null;
  return bearer?.[1]?.trim() || undefined;
}
