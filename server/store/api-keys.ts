/**
 * API key rows. Creating and revoking a key NOTIFY `cairn_keys` with its id in
 * the same transaction, so every server process drops its cached copy the
 * moment the change commits (server/auth/key-cache.ts). Reads by id are the
 * only lookups on the request path, and they happen on cache misses only.
 */
import { asc, eq, inArray, isNull, sql } from "drizzle-orm";
import { type Db } from "./database.js";
import { type ApiKeyRole, type ApiKeyRow, apiKeys } from "./schema.js";

export const apiKeysChannel = "cairn_keys";

export interface NewApiKey {
  id: string;
  namespace: string;
  role: ApiKeyRole;
  secretHash: string;
  name: string;
}

export async function insertApiKey(db: Db, key: NewApiKey): Promise<ApiKeyRow> {
  return db.transaction(async (tx) => {
    const [row] = await tx.insert(apiKeys).values(key).returning();
    if (!row) throw new Error(`API key ${key.id} was not stored`);
    await tx.execute(sql`select pg_notify(${apiKeysChannel}, ${key.id})`);
    return row;
  });
}

export async function findApiKey(db: Db, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await db.select().from(apiKeys).where(eq(apiKeys.id, id));
  return row;
}

export async function listApiKeys(db: Db, namespace?: string): Promise<ApiKeyRow[]> {
  return db
    .select()
    .from(apiKeys)
    .where(namespace === undefined ? undefined : eq(apiKeys.namespace, namespace))
    .orderBy(asc(apiKeys.namespace), asc(apiKeys.createdAt), asc(apiKeys.id));
}

export type RevokeResult = { row: ApiKeyRow; alreadyRevoked: boolean } | undefined;

/** Revokes the key (idempotent: a revoked key keeps its first revocation time); undefined when no key has this id. */
export async function revokeApiKey(db: Db, id: string): Promise<RevokeResult> {
  return db.transaction(async (tx) => {
    const [before] = await tx.select({ revokedAt: apiKeys.revokedAt }).from(apiKeys).where(eq(apiKeys.id, id)).for("update");
    if (!before) return undefined;
    const [row] = await tx
      .update(apiKeys)
      .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` })
      .where(eq(apiKeys.id, id))
      .returning();
    if (!row) return undefined;
    // Delivered at commit to every listening server process, which evicts the key at once.
    await tx.execute(sql`select pg_notify(${apiKeysChannel}, ${id})`);
    return { row, alreadyRevoked: before.revokedAt !== null };
  });
}

/** Records that these keys were used (batched by the key cache, never per request). */
export async function touchApiKeys(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(inArray(apiKeys.id, [...ids]));
}

export async function countActiveApiKeys(db: Db): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(apiKeys).where(isNull(apiKeys.revokedAt));
  return row?.n ?? 0;
}
