/**
 * Opens the engine's database and brings its schema up to date. PostgreSQL
 * through `pg` when a URL is given; otherwise the embedded default, PGlite in
 * a data folder, so a fresh machine runs Cairn with nothing else installed.
 * Both are driven through one Drizzle type; raw SQL goes through `queryRows`.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { type SQL, sql } from "drizzle-orm";
import { drizzle as drizzleNodePg } from "drizzle-orm/node-postgres";
import { migrate as migrateNodePg } from "drizzle-orm/node-postgres/migrator";
import { NodePgSession, NodePgTransaction } from "drizzle-orm/node-postgres/session";
import type { PgDatabase, PgQueryResultHKT, PgTransactionConfig } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import { openPool } from "./pool.js";
import * as schema from "./schema.js";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Database {
  readonly db: Db;
  /**
   * Lease renewals and lapsed-lease sweeps (the heartbeat): on PostgreSQL a small pool of their own, so a request
   * flood that holds every client of the main pool cannot make this process lose its leases. PGlite: `db`.
   */
  readonly leaseDb: Db;
  /**
   * What watchers are told is read here (the shared tails' batched reads, the run feed's safety net): on PostgreSQL
   * a small pool of its own, so that a burst of writes queued for the main pool (a thousand CancelRuns, each waiting
   * its turn to commit) does not hold back the reads that deliver their changes to streams. PGlite: `db`.
   */
  readonly watchDb: Db;
  readonly kind: "postgres" | "pglite";
  /** A human description for logs, without credentials. */
  readonly description: string;
  /**
   * Calls `onMessage` for every NOTIFY on `channel`, from any process. On
   * PostgreSQL one dedicated connection listens and reconnects after a drop
   * (callers poll as a fallback, so nothing is lost while it is down).
   * `onReconnect` runs after the listener connection came back from a drop:
   * notices sent meanwhile were lost (never called on PGlite, which cannot drop).
   */
  listen(channel: string, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<void>;
  /** The connection pool's clients now (PostgreSQL only; PGlite has one in-process connection). */
  poolStats?(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres://... ; absent selects PGlite in `dataDir`. */
  url?: string;
  dataDir: string;
  poolSize?: number;
  /** Clients of the lease pool (default 2). */
  leasePoolSize?: number;
  /** Clients of the watchers' read pool (default 2). */
  watchPoolSize?: number;
  /** How long a query waits for a free pool client before failing (pg `connectionTimeoutMillis`); 0: forever. */
  acquireTimeoutMs?: number;
  /** `statement_timeout` of every pooled connection (ms; 0: none). Migrations run without it. */
  statementTimeoutMs?: number;
  /** How often the LISTEN connection proves it still hears (a self-NOTIFY that must come back in time; 0: never). */
  listenerCheckMs?: number;
}

const migrationsFolder = fileURLToPath(new URL("./migrations", import.meta.url));

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) {
    const url = options.url;
    const pool = openPool({ ...options, url }, options.poolSize ?? 10);
    const leasePool = openPool({ ...options, url }, options.leasePoolSize ?? 2);
    const watchPool = openPool({ ...options, url }, options.watchPoolSize ?? 2);
    const db = drizzleNodePg({ client: pool, schema, casing: "snake_case" });
    const leaseDb = drizzleNodePg({ client: leasePool, schema, casing: "snake_case" });
    const watchDb = drizzleNodePg({ client: watchPool, schema, casing: "snake_case" });
    await migrateExclusively(pool);
    const listener = new PostgresListener(options.url, {
      checkMs: options.listenerCheckMs ?? 10_000,
      notify: async (channel, payload) => {
        await pool.query("select pg_notify($1, $2)", [channel, payload]);
      },
    });
    return {
      db,
      leaseDb,
      watchDb,
      kind: "postgres",
      description: redactUrl(options.url),
      listen: (channel, onMessage, onReconnect) => listener.listen(channel, onMessage, onReconnect),
      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
      close: async () => {
        await listener.close();
        await pool.end();
        await leasePool.end();
        await watchPool.end();
      },
    };
  }
  mkdirSync(options.dataDir, { recursive: true });
  const unlock = lockDataDir(options.dataDir);
  let client: PGlite;
  let db: ReturnType<typeof drizzlePglite<typeof schema>>;
  try {
    client = await PGlite.create({ dataDir: options.dataDir });
    db = drizzlePglite({ client, schema, casing: "snake_case" });
    await migratePglite(db, { migrationsFolder });
  } catch (error) {
    unlock();
    throw error;
  }
  return {
    db,
    leaseDb: db,
    watchDb: db,
    kind: "pglite",
    description: `PGlite in ${options.dataDir}`,
    listen: async (channel, onMessage) => {
      await client.listen(channel, onMessage);
    },
    close: async () => {
      try {
        await client.close();
      } finally {
        unlock();
      }
    },
  };
}

export class DataDirInUseError extends Error {
  override readonly name = "DataDirInUseError";
}

/**
 * PGlite has no lock of its own, and two processes opening one data folder
 * corrupt it. A `cairn.lock` file holding the owner's pid keeps a second
 * server, or `cairn keys` while a server runs, out; a lock whose process is
 * gone (a crash) is taken over.
 */
function lockDataDir(dataDir: string): () => void {
  const path = join(dataDir, "cairn.lock");
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: "wx" });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw error;
      const owner = Number.parseInt(readFileSync(path, "utf8"), 10);
      if (Number.isInteger(owner) && owner !== process.pid && processAlive(owner)) {
        throw new DataDirInUseError(
          `the embedded database in ${dataDir} is in use by process ${owner} (a Cairn server or command); ` +
            `stop it first, or delete ${path} if that process is not Cairn`,
        );
      }
      rmSync(path, { force: true });
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    rmSync(path, { force: true });
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * drizzle-orm's pooled `transaction()` (0.45.x, unfixed upstream) sends BEGIN before the try/finally that
 * releases the pool client. A BEGIN that fails (the connection was cut, PostgreSQL is restarting) therefore
 * never gives its client back: each such failure costs a pool slot for good, until every query waits for a
 * client forever. It also hands a client whose ROLLBACK failed back to the pool as healthy. This is the same
 * method with BEGIN inside the try, and the client released with the error, so that the pool destroys it,
 * when the transaction failed at the connection (no BEGIN, or no ROLLBACK). The caller gets the original error.
 */
function releaseClientsOfFailedTransactions(): void {
  interface SessionInternals {
    client: pg.Pool | pg.PoolClient;
    dialect: unknown;
    schema: unknown;
    options: unknown;
  }
  type Transaction = NodePgTransaction<Record<string, unknown>, never> & { getTransactionConfigSQL(config: PgTransactionConfig): SQL };
  const Session = NodePgSession as unknown as new (client: unknown, dialect: unknown, schema: unknown, options: unknown) => SessionInternals;
  const Tx = NodePgTransaction as unknown as new (dialect: unknown, session: unknown, schema: unknown) => Transaction;
  (NodePgSession.prototype as unknown as { transaction: unknown }).transaction = async function <T>(
    this: SessionInternals,
    transaction: (tx: Transaction) => Promise<T>,
    config?: PgTransactionConfig,
  ): Promise<T> {
    const isPool = this.client instanceof pg.Pool || Object.getPrototypeOf(this.client).constructor.name.includes("Pool");
    const session = isPool ? new Session(await (this.client as pg.Pool).connect(), this.dialect, this.schema, this.options) : this;
    const tx = new Tx(this.dialect, session, this.schema);
    let began = false;
    let broken: unknown;
    try {
      await tx.execute(sql`begin${config ? sql` ${tx.getTransactionConfigSQL(config)}` : undefined}`);
      began = true;
      const result = await transaction(tx);
      await tx.execute(sql`commit`);
      return result;
    } catch (error) {
      if (!began) broken = error;
      else await tx.execute(sql`rollback`).catch((rollbackError: unknown) => (broken = rollbackError));
      throw error;
    } finally {
      if (isPool) (session.client as pg.PoolClient).release(broken === undefined ? undefined : broken instanceof Error ? broken : new Error(String(broken)));
    }
  };
}
releaseClientsOfFailedTransactions();

/** The channel the listener's self-check NOTIFYs itself on (payload: a per-process nonce and a counter). */
const listenerCheckChannel = "cairn_listener_check";

/**
 * One LISTEN connection per process, shared by every channel; reconnects with backoff after a drop. TCP keepalive
 * lets the kernel notice a peer that vanished; a connection that stays up but hears nothing (a proxy or NAT that
 * dropped it silently, a half-open socket) is caught by a self-check: every `checkMs` a NOTIFY is sent through
 * the pool, and if it has not come back within the next `checkMs` the connection is dropped and made again (and
 * `onReconnect` runs, since notices may have been lost).
 */
class PostgresListener {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private readonly handlers = new Map<string, (payload: string) => void>();
  private readonly reconnectHandlers = new Map<string, () => void>();
  private closed = false;
  private retryMs = 100;
  private checkTimer: NodeJS.Timeout | undefined;
  /** The self-check sent and not heard yet (its payload), with the client it was for. */
  private pendingCheck: { payload: string; client: pg.Client } | undefined;
  private checks = 0;
  private readonly nonce = Math.random().toString(36).slice(2);

  constructor(
    private readonly url: string,
    private readonly check: { checkMs: number; notify: (channel: string, payload: string) => Promise<void> },
  ) {}

  private startChecks(): void {
    if (this.checkTimer || this.check.checkMs <= 0) return;
    this.checkTimer = setInterval(() => void this.selfCheck(), this.check.checkMs);
    this.checkTimer.unref();
  }

  private async selfCheck(): Promise<void> {
    const client = this.client;
    if (!client || this.closed) return;
    if (this.pendingCheck && this.pendingCheck.client === client) {
      // The last check did not come back within a whole interval: this connection is deaf.
      this.pendingCheck = undefined;
      this.reconnect(client);
      return;
    }
    const payload = `${this.nonce}:${++this.checks}`;
    this.pendingCheck = { payload, client };
    // A failed send proves nothing about the listener (the pool may be busy or down): the next tick retries.
    await this.check.notify(listenerCheckChannel, payload).catch(() => {
      if (this.pendingCheck?.payload === payload) this.pendingCheck = undefined;
    });
  }

  async listen(channel: string, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<void> {
    this.handlers.set(channel, onMessage);
    if (onReconnect) this.reconnectHandlers.set(channel, onReconnect);
    await this.connect();
    await this.client?.query(`listen ${pg.escapeIdentifier(channel)}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.checkTimer);
    await this.client?.end().catch(() => undefined);
  }

  private connect(): Promise<void> {
    if (this.client) return Promise.resolve();
    this.connecting ??= (async () => {
      // Keepalive: a peer that vanished without a FIN is noticed by the kernel, not never.
      const client = new pg.Client({ connectionString: this.url, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
      client.on("notification", (message) => {
        if (message.channel === listenerCheckChannel) {
          if (this.pendingCheck?.payload === message.payload) this.pendingCheck = undefined;
          return;
        }
        this.handlers.get(message.channel)?.(message.payload ?? "");
      });
      client.on("error", () => this.reconnect(client));
      client.on("end", () => this.reconnect(client));
      await client.connect();
      for (const channel of [...this.handlers.keys(), ...(this.check.checkMs > 0 ? [listenerCheckChannel] : [])]) {
        await client.query(`listen ${pg.escapeIdentifier(channel)}`);
      }
      this.client = client;
      this.pendingCheck = undefined;
      this.retryMs = 100;
      this.startChecks();
    })().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private reconnect(dropped: pg.Client): void {
    if (this.client !== dropped || this.closed) return;
    this.client = undefined;
    dropped.end().catch(() => undefined);
    const retry = () => {
      if (this.closed) return;
      this.connect().then(() => {
        for (const onReconnect of this.reconnectHandlers.values()) onReconnect();
      }, () => {
        this.retryMs = Math.min(this.retryMs * 2, 5000);
        setTimeout(retry, this.retryMs).unref();
      });
    };
    setTimeout(retry, this.retryMs).unref();
  }
}

/** Any fixed number: replicas starting together on an empty database take turns migrating it. */
const migrationLockKey = 7_420_113;

async function migrateExclusively(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    // Waiting for another replica's migration, or a migration building an index on a big table, may take long.
    await client.query("set statement_timeout = 0");
    await client.query("select pg_advisory_lock($1)", [migrationLockKey]);
    try {
      await migrateNodePg(drizzleNodePg({ client, casing: "snake_case" }), { migrationsFolder });
    } finally {
      await client.query("select pg_advisory_unlock($1)", [migrationLockKey]);
      // Back to the pool's statement_timeout before the client serves anything else.
      await client.query("reset statement_timeout");
    }
  } finally {
    client.release();
  }
}

/**
 * Rows of a raw parameterised statement on `db`'s own client, without query
 * building: for hot paths. With `name`, PostgreSQL prepares the statement
 * once per connection and reuses its plan (PGlite ignores the name).
 */
export async function rawQuery<R>(db: Db, text: string, values: unknown[], name?: string): Promise<R[]> {
  const client = ownClient(db);
  // A transaction's handle has no client of its own: a raw query would silently run outside the transaction.
  if (!client) throw new Error("rawQuery needs the database handle, not a transaction");
  if (client instanceof pg.Pool) return (await client.query({ text, values, name })).rows as R[];
  return (await client.query<R>(text, values)).rows;
}

/** The pool (or PGlite) behind the top-level handle; undefined for a transaction's handle. */
export function ownClient(db: Db): pg.Pool | PGlite | undefined {
  return (db as unknown as { $client?: pg.Pool | PGlite }).$client;
}

/** Rows of a raw statement; both drivers return `{ rows }`. */
export async function queryRows<T>(db: Db, query: SQL): Promise<T[]> {
  const result: unknown = await db.execute(query);
  return (result as { rows: T[] }).rows;
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "postgres (unparseable URL)";
  }
}
