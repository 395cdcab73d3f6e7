/**
 * Verifies API keys without a database round trip per request.
 *
 * Verified rows are cached in memory by key id (namespace, role, the secret's
 * digest, whether revoked); a presented key is checked against the cached
 * digest in constant time. A miss costs one lookup by primary key, shared by
 * concurrent requests for the same id. Unknown ids are remembered in a separate,
 * smaller LRU (the negative cache, `maxUnknown`), so a client retrying with a
 * wrong key does not reach the database on every call, and a flood of random
 * ids cannot push real keys out of the cache. What bounds the lookups a flood
 * of *distinct* unknown ids costs is the failed-auth limit per peer (auth.ts).
 *
 * Revocation takes effect at once in every process: `cairn keys revoke` (and
 * create) NOTIFY `cairn_keys` with the key id in the revoking transaction, and
 * every process LISTENs and evicts that id. Two fallbacks cover lost notices:
 * entries expire after `ttlMs` (CAIRN_KEY_CACHE_TTL), and the whole cache is
 * dropped when the listener connection comes back after a drop. A load that
 * raced an eviction is used for the request in flight but not cached.
 *
 * Streams outlive the check at their start, so `watch(id)` lets a stream end when
 * its key is revoked: an eviction (or a reconnect, or every TTL) re-reads the
 * watched keys and tells the streams of those that no longer verify.
 *
 * `last_used_at` is written in batches, once per `touchIntervalMs`.
 */
import type { Logger } from "../logger.js";
import { apiKeysChannel, type Database, type Db, findApiKey, touchApiKeys } from "../runs/api-keys.js";
import type { ApiKeyRole } from "../core/api-key-roles.js";
import { parseApiKey, secretMatches } from "./api-key.js";

export interface VerifiedKey {
  id: string;
  namespace: string;
  role: ApiKeyRole;
}

export type Verification =
  | { ok: true; key: VerifiedKey }
  | { ok: false; reason: "malformed" }
  | { ok: false; reason: "invalid" | "revoked"; keyId: string };

interface Entry {
  /** Undefined: no key has this id. */
  key: { namespace: string; role: ApiKeyRole; digest: Buffer; revoked: boolean } | undefined;
  expiresAt: number;
}

export interface KeyCacheOptions {
  /** How long a cached row is trusted without hearing from the database (fallback for lost notices). */
  ttlMs: number;
  /** Most rows kept; the oldest are dropped beyond it. Default 10,000. */
  maxEntries?: number;
  /** Most unknown ids remembered (the negative cache); the least recently seen are dropped beyond it. Default 1,000. */
  maxUnknown?: number;
  /** How often `last_used_at` is written. Default 60 s. */
  touchIntervalMs?: number;
  logger?: Logger;
}

export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** Bumped by every eviction: a load that started before one must not be cached. */
  private generation = 0;
  private readonly used = new Set<string>();
  private touchTimer: NodeJS.Timeout | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;
  /** Open streams by key id: told when their key stops verifying. */
  private readonly watchers = new Map<string, Set<() => void>>();
  private readonly maxEntries: number;
  /** Ids no key has, with when to ask again: apart from `entries`, so they never evict a real key. */
  private readonly unknown = new Map<string, number>();
  private readonly maxUnknown: number;

  constructor(
    private readonly db: Db,
    private readonly options: KeyCacheOptions,
  ) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxUnknown = options.maxUnknown ?? 1_000;
  }

  /** Subscribes to key changes. If the listener cannot start, the TTL alone bounds how long a revoked key works. */
  async start(database: Database): Promise<void> {
    try {
      await database.listen(apiKeysChannel, (id) => this.evict(id), () => this.clear());
    } catch (error) {
      this.options.logger?.warn(
        { err: error, ttlMs: this.options.ttlMs },
        "API key change notices are not heard; a revoked key keeps working here until its cache entry expires",
      );
    }
    this.touchTimer = setInterval(() => void this.flushUsage(), this.options.touchIntervalMs ?? 60_000);
    this.touchTimer.unref();
    // Streams of keys whose notice was lost still end within about a TTL.
    this.recheckTimer = setInterval(() => this.recheck([...this.watchers.keys()]), Math.max(1000, this.options.ttlMs));
    this.recheckTimer.unref();
  }

  /** Stops the usage timer and writes the last usage (before the store closes). */
  async stop(): Promise<void> {
    clearInterval(this.touchTimer);
    clearInterval(this.recheckTimer);
    await this.flushUsage();
  }

  evict(id: string): void {
    this.generation++;
    this.entries.delete(id);
    this.unknown.delete(id);
    this.loading.delete(id);
    if (this.watchers.has(id)) this.recheck([id]);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
    this.unknown.clear();
    this.loading.clear();
    this.recheck([...this.watchers.keys()]);
  }

  /**
   * Calls `onInvalid` once if key `id` (verified when the stream started) is revoked or
   * deleted while the stream runs. Returns the function that stops watching.
   */
  watch(id: string, onInvalid: () => void): () => void {
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(onInvalid);
    return () => {
      set.delete(onInvalid);
      if (set.size === 0 && this.watchers.get(id) === set) this.watchers.delete(id);
    };
  }

  private recheck(ids: readonly string[]): void {
    for (const id of ids) {
      void (async () => {
        let entry: Entry;
        try {
          entry = await this.lookup(id);
        } catch {
          return; // the store is unreachable: the next eviction or tick tries again
        }
        if (entry.key && !entry.key.revoked) return;
        const set = this.watchers.get(id);
        this.watchers.delete(id);
        for (const onInvalid of set ?? []) onInvalid();
      })();
    }
  }

  async verify(presented: string): Promise<Verification> {
    const parsed = parseApiKey(presented);
    if (!parsed) return { ok: false, reason: "malformed" };
    const entry = await this.lookup(parsed.id);
    // The digest is compared before anything about the key is told: without the secret, revoked and unknown look alike.
    if (!entry.key || !secretMatches(parsed.secret, entry.key.digest)) return { ok: false, reason: "invalid", keyId: parsed.id };
    if (entry.key.revoked) return { ok: false, reason: "revoked", keyId: parsed.id };
    this.used.add(parsed.id);
    return { ok: true, key: { id: parsed.id, namespace: entry.key.namespace, role: entry.key.role } };
  }

  /** True when `id` verifies from memory alone as a live key (no database work): the failed-auth limit lets it by. */
  isCachedLive(id: string): boolean {
    const cached = this.entries.get(id);
    return cached !== undefined && cached.expiresAt > Date.now() && cached.key !== undefined && !cached.key.revoked;
  }

  private lookup(id: string): Promise<Entry> | Entry {
    const now = Date.now();
    const cached = this.entries.get(id);
    if (cached && cached.expiresAt > now) return cached;
    const unknownUntil = this.unknown.get(id);
    if (unknownUntil !== undefined) {
      this.unknown.delete(id);
      if (unknownUntil > now) {
        this.unknown.set(id, unknownUntil); // most recently seen last
        return { key: undefined, expiresAt: unknownUntil };
      }
    }
    let pending = this.loading.get(id);
    if (!pending) {
      const generation = this.generation;
      const load = (async (): Promise<Entry> => {
        const row = await findApiKey(this.db, id);
        const entry: Entry = {
          key: row && {
            namespace: row.namespace,
            role: row.role,
            digest: Buffer.from(row.secretHash, "hex"),
            revoked: row.revokedAt !== null,
          },
          expiresAt: Date.now() + this.options.ttlMs,
        };
        if (this.generation === generation) this.remember(id, entry);
        return entry;
      })();
      pending = load.finally(() => {
        if (this.loading.get(id) === pending) this.loading.delete(id);
      });
      this.loading.set(id, pending);
    }
    return pending;
  }

  private remember(id: string, entry: Entry): void {
    if (!entry.key) {
      this.unknown.delete(id);
      this.unknown.set(id, entry.expiresAt);
      while (this.unknown.size > this.maxUnknown) {
        const oldest = this.unknown.keys().next().value;
        if (oldest === undefined) break;
        this.unknown.delete(oldest);
      }
      return;
    }
    this.entries.delete(id);
    this.entries.set(id, entry);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  private async flushUsage(): Promise<void> {
    if (this.used.size === 0) return;
    const ids = [...this.used];
    this.used.clear();
    try {
      await touchApiKeys(this.db, ids);
    } catch (error) {
      this.options.logger?.debug({ err: error }, "could not record API key usage");
    }
  }
}
