/**
 * Opening the store for a server process: the database (PostgreSQL or the
 * embedded PGlite) and the `Store` that owns its batchers. The composition
 * root (server/app.ts) gets everything store-shaped from here.
 */
import { type Database, DataDirInUseError, openDatabase, redactUrl } from "../store/database.js";
import { Store } from "../store/store.js";

export type { Database };
/** The CLI's offline key commands open the database directly (no server running). */
export { DataDirInUseError, openDatabase, redactUrl, Store };
export { describeFirstStore } from "../store/first-store.js";

export async function openStore(options: Parameters<typeof openDatabase>[0]): Promise<Store> {
  return new Store(await openDatabase(options));
}
