/**
 * API keys as the rest of the server reaches them: the auth layer's key cache
 * reads and touches them, the key service and the start-up check count and
 * manage them. The SQL lives in store/api-keys.ts; this is the seam.
 */
export {
  apiKeysChannel,
  countActiveApiKeys,
  findApiKey,
  insertApiKey,
  listApiKeys,
  type NewApiKey,
  revokeApiKey,
  type RevokeResult,
  touchApiKeys,
} from "../store/api-keys.js";
export type { Database, Db } from "../store/database.js";
export type { ApiKeyRow } from "../store/schema.js";
