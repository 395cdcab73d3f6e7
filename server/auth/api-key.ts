/**
 * The API key format: `cairn_<id>_<secret>`.
 *
 * - `id` is 16 hex characters. It is not secret: it names the key in logs, in
 *   `cairn keys list` and in `cairn keys revoke <id>`, and it is how the server
 *   finds the key's row (one indexed lookup, then a cache hit).
 * - `secret` is 32 random bytes, base64url (43 characters). Only its SHA-256 is
 *   stored. With 256 bits of entropy a fast hash is enough: there is nothing to
 *   brute-force, so no bcrypt/scrypt cost on every cache miss.
 *
 * Comparison is constant time (`timingSafeEqual` of the two digests).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type ApiKeyRole, apiKeyRoles } from "../core/api-key-roles.js";

export const apiKeyPrefix = "cairn_";
const keyPattern = /^cairn_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const idPattern = /^[0-9a-f]{16}$/;

export interface GeneratedKey {
  id: string;
  /** The whole key, `cairn_<id>_<secret>`: shown once, never stored. */
  key: string;
  /** Hex SHA-256 of the secret part: what the database keeps. */
  secretHash: string;
}

export function generateApiKey(): GeneratedKey {
  const id = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { id, key: `${apiKeyPrefix}${id}_${secret}`, secretHash: hashSecret(secret).toString("hex") };
}

/** The id and secret of a well-formed key; undefined for anything else. */
export function parseApiKey(presented: string): { id: string; secret: string } | undefined {
  const match = keyPattern.exec(presented);
  if (!match) return undefined;
  return { id: match[1] as string, secret: match[2] as string };
}

export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** Constant-time check of a presented secret against a stored digest. */
export function secretMatches(secret: string, storedDigest: Buffer): boolean {
  const presented = hashSecret(secret);
  return storedDigest.length === presented.length && timingSafeEqual(presented, storedDigest);
}

/** Accepts a key id, or a whole key (its id is taken), for `cairn keys revoke`. */
export function keyIdOf(idOrKey: string): string | undefined {
  const trimmed = idOrKey.trim();
  if (idPattern.test(trimmed)) return trimmed;
  return parseApiKey(trimmed)?.id;
}

/** Namespaces: 1–63 characters, letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const namespacePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isRole(value: string): value is ApiKeyRole {
  return (apiKeyRoles as readonly string[]).includes(value);
}
