/**
 * A PostgreSQL connection pool as every pool of this server is set up: the main thread's pools (database.ts) and a
 * workflow thread's own journal pool (worker/threads/thread-journal.ts), which is why this file needs nothing but pg.
 */
import pg from "pg";

export interface PoolOptions {
  /** postgres://... */
  url: string;
  /** How long a query waits for a free pool client before failing (pg `connectionTimeoutMillis`); 0: forever. */
  acquireTimeoutMs?: number | undefined;
  /** `statement_timeout` of every pooled connection (ms; 0: none). */
  statementTimeoutMs?: number | undefined;
  /** What `pg_stat_activity` shows for these connections (absent: pg's default). */
  applicationName?: string | undefined;
}

/**
 * A pool with an acquire timeout (a query that cannot get a client within it fails, instead of queueing without
 * end behind a flood) and a server-side `statement_timeout` (a statement stuck on a lock or a runaway plan gives
 * its client back).
 */
export function openPool(options: PoolOptions, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max,
    connectionTimeoutMillis: options.acquireTimeoutMs ?? 10_000,
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    ...(options.applicationName ? { application_name: options.applicationName } : {}),
  });
  // An idle client losing its connection (server restart, pg_terminate_backend) must not crash the process.
  pool.on("error", () => {});
  // Nor may a client that loses it while checked out (inside a transaction): pg reports the lost connection
  // as an 'error' event on the client, which pg-pool handles only while the client is idle, so the event
  // would be unhandled and end the process. The statement in flight fails on its own, and the pool drops
  // the dead client when it is released.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}
