/**
 * The first admin key of a keys-mode server on the embedded store. `cairn keys create` needs the
 * store, which the running server holds (one process per embedded store), so when no key exists
 * the server makes an admin key itself and writes it to a file only its user can read, next to the
 * data. On PostgreSQL, `cairn keys create` works beside a running server, so nothing is written.
 */
import { chmodSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Logger } from "../logger.js";
import { type Database, insertApiKey } from "../runs/api-keys.js";
import { generateApiKey } from "./api-key.js";

export const bootstrapKeyFile = "bootstrap-admin-key";

/** Creates and writes the key; returns the file's path. */
export async function writeBootstrapKey(database: Database, dataDir: string, logger: Logger): Promise<string> {
  const generated = generateApiKey();
  const path = resolve(join(dataDir, bootstrapKeyFile));
  // Written before the key exists in the store, so a key is never valid without its file.
  writeFileSync(path, `${generated.key}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  await insertApiKey(database.db, { id: generated.id, namespace: "default", role: "admin", secretHash: generated.secretHash, name: "bootstrap" });
  logger.warn(
    { file: path, keyId: generated.id },
    `no API key existed: created an admin key for namespace "default" in ${path} (mode 0600). ` +
      "Use it as CAIRN_API_KEY (cairn keys create --role ... makes more through the server); delete the file once you have admin keys of your own",
  );
  return path;
}
