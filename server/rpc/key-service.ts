// cairn.v1.KeyService: API keys through the API, so keys can be made and revoked while the server
// runs (the embedded store admits one process). Admin keys only (server/rpc/auth.ts lets the other
// roles call only their own services); an admin manages its own namespace's keys.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type ApiKey, ApiKeySchema, CreateKeyResponseSchema, type KeyService, ListKeysResponseSchema, RevokeKeyResponseSchema } from "../../sdk/gen/cairn/v1/keys_pb.js";
import { generateApiKey } from "../auth/api-key.js";
import type { ApiKeyRole } from "../core/api-key-roles.js";
import { type ApiKeyRow, type Database, insertApiKey, listApiKeys, revokeApiKey } from "../runs/api-keys.js";
import { callerOf } from "./auth.js";

function keyToProto(row: ApiKeyRow): ApiKey {
  return create(ApiKeySchema, {
    id: row.id,
    namespace: row.namespace,
    role: row.role,
    name: row.name,
    createdAt: timestampFromDate(row.createdAt),
    ...(row.lastUsedAt ? { lastUsedAt: timestampFromDate(row.lastUsedAt) } : {}),
    ...(row.revokedAt ? { revokedAt: timestampFromDate(row.revokedAt) } : {}),
  });
}

/**
 * `evict`: drops a revoked key from this process's key cache at once. Other processes evict it on the revocation's
 * NOTIFY; this one must not wait for its own notice, or a call right after RevokeKey could still pass.
 */
export function createKeyService(database: Database, evict: (keyId: string) => void = () => {}): ServiceImpl<typeof KeyService> {
  return {
    async createKey(request, context) {
      const { namespace } = callerOf(context);
      if (request.namespace && request.namespace !== namespace) {
        throw new ConnectError(`an admin key of namespace ${namespace} cannot make keys for namespace ${request.namespace}`, Code.PermissionDenied);
      }
      const generated = generateApiKey();
      const row = await insertApiKey(database.db, {
        id: generated.id,
        namespace,
        role: request.role as ApiKeyRole,
        secretHash: generated.secretHash,
        name: request.name,
      });
      return create(CreateKeyResponseSchema, { key: keyToProto(row), secretKey: generated.key });
    },
    async listKeys(_request, context) {
      const rows = await listApiKeys(database.db, callerOf(context).namespace);
      return create(ListKeysResponseSchema, { keys: rows.map(keyToProto) });
    },
    async revokeKey(request, context) {
      const { namespace } = callerOf(context);
      // Another namespace's key is NOT_FOUND, like a missing one.
      const owned = (await listApiKeys(database.db, namespace)).some((row) => row.id === request.keyId);
      const result = owned ? await revokeApiKey(database.db, request.keyId) : undefined;
      if (!result) throw new ConnectError(`no API key ${request.keyId} in namespace ${namespace}`, Code.NotFound);
      evict(request.keyId);
      return create(RevokeKeyResponseSchema, { key: keyToProto(result.row), alreadyRevoked: result.alreadyRevoked });
    },
  };
}
