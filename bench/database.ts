/**
 * The PostgreSQL server the benchmark runs against, and the throwaway
 * database it creates there. Also the read-only probes the report needs
 * (version, settings, commit counter), all made from the admin database so
 * they do not count as commits of the bench database.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { postgresServerUrl, stopEmbeddedPostgres } from "../test/support/postgres.js";

const localUrl = "postgres://root@127.0.0.1:5432/test";

export interface PostgresServer {
  /** A database on the server to connect to for administration. */
  readonly adminUrl: string;
  /** Where the URL came from, for the report. */
  readonly source: "BENCH_DATABASE_URL" | "TEST_DATABASE_URL" | "local" | "embedded";
  /** Stops the embedded cluster, if one was started. */
  stop(): Promise<void>;
}

export async function findServer(env: NodeJS.ProcessEnv = process.env): Promise<PostgresServer> {
  const none = async () => {};
  const bench = env.BENCH_DATABASE_URL?.trim();
  if (bench) return { adminUrl: bench, source: "BENCH_DATABASE_URL", stop: none };
  const test = env.TEST_DATABASE_URL?.trim();
  if (test) return { adminUrl: test, source: "TEST_DATABASE_URL", stop: none };
  if (await reachable(localUrl)) return { adminUrl: localUrl, source: "local", stop: none };
  // test/support falls back to an embedded cluster when TEST_DATABASE_URL is unset.
  return { adminUrl: await postgresServerUrl(), source: "embedded", stop: stopEmbeddedPostgres };
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** An admin connection kept open for the whole run. */
export class Admin {
  private constructor(private readonly client: pg.Client) {}

  static async connect(url: string): Promise<Admin> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    return new Admin(client);
  }

  async close(): Promise<void> {
    await this.client.end();
  }

  async createDatabase(): Promise<string> {
    const name = `bench_${randomBytes(4).toString("hex")}`;
    await this.client.query(`create database ${this.client.escapeIdentifier(name)} template template0`);
    return name;
  }

  async dropDatabase(name: string): Promise<void> {
    const force = (await this.serverVersionNum()) >= 130000 ? " with (force)" : "";
    await this.client.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [name]);
    await this.client.query(`drop database if exists ${this.client.escapeIdentifier(name)}${force}`);
  }

  async version(): Promise<string> {
    const result = await this.client.query<{ version: string }>("select version()");
    return result.rows[0]?.version ?? "unknown";
  }

  async settings(names: readonly string[]): Promise<Record<string, string>> {
    const result = await this.client.query<{ name: string; setting: string; unit: string | null }>(
      "select name, setting, unit from pg_settings where name = any($1) order by name",
      [names],
    );
    return Object.fromEntries(result.rows.map((r) => [r.name, r.unit ? `${r.setting} (${r.unit})` : r.setting]));
  }

  /**
   * Committed transactions of `database` so far (read-only ones included).
   * Backends publish their counts when idle (at most once a second) or when
   * they exit, so read this after the workload's connections went quiet.
   */
  async commits(database: string): Promise<number> {
    await this.client.query("select pg_stat_clear_snapshot()");
    const result = await this.client.query<{ xact_commit: string }>(
      "select xact_commit from pg_stat_database where datname = $1",
      [database],
    );
    return Number(result.rows[0]?.xact_commit ?? Number.NaN);
  }

  /** Deadlocks PostgreSQL detected in `database` (pg_stat_database; complete once its backends have exited). */
  async deadlocks(database: string): Promise<number> {
    await this.client.query("select pg_stat_clear_snapshot()");
    const result = await this.client.query<{ deadlocks: string }>("select deadlocks from pg_stat_database where datname = $1", [database]);
    return Number(result.rows[0]?.deadlocks ?? Number.NaN);
  }

  private async serverVersionNum(): Promise<number> {
    const result = await this.client.query<{ server_version_num: string }>("show server_version_num");
    return Number(result.rows[0]?.server_version_num ?? 0);
  }
}

/** `serverUrl` with its database replaced by `database`. */
export function urlForDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The URL without its password, for reports. */
export function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

/** Runs by id, or runs of a workflow whose input `key` starts with a prefix (so the client need not hold 100,000 ids). */
export type RunSelector = { ids: readonly string[] } | { workflowName: string; keyPrefix: string } | { keyPrefix: string };

/** Cumulative scans of one table (pg_stat_user_tables). */
export interface TableScans {
  seqScans: number;
  seqRowsRead: number;
  indexScans: number;
  /** Live rows fetched from the table by index scans. */
  indexRowsFetched: number;
}

/** A journal entry's timing, from the database (created_at is the appending transaction's now(), 1 ms precision). */
export interface EntryTiming {
  sequence: number;
  kind: string;
  name: string;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms, timer_started only. */
  fireAt: number | null;
}

/**
 * A connection to the bench database itself: counting runs by status without
 * paginating the API, journal timestamps, table sizes, and the backends that
 * serve the database (for their CPU time). Read-only.
 */
export class BenchProbe {
  private constructor(private readonly client: pg.Client) {}

  static async connect(url: string): Promise<BenchProbe> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    return new BenchProbe(client);
  }

  async close(): Promise<void> {
    await this.client.end();
  }

  private where(selector: RunSelector): { sql: string; params: unknown[] } {
    if ("ids" in selector) return { sql: "id = any($1::uuid[])", params: [selector.ids] };
    const like = `${selector.keyPrefix.replace(/[\\%_]/g, "\\$&")}%`;
    if ("workflowName" in selector) return { sql: "workflow_name = $1 and input->>'key' like $2", params: [selector.workflowName, like] };
    return { sql: "input->>'key' like $1", params: [like] };
  }

  /** How many of the selected runs are in each status. */
  async statusCounts(selector: RunSelector): Promise<Record<string, number>> {
    const { sql, params } = this.where(selector);
    const result = await this.client.query<{ status: string; n: string }>(`select status, count(*) as n from runs where ${sql} group by status`, params);
    return Object.fromEntries(result.rows.map((r) => [r.status, Number(r.n)]));
  }

  /**
   * What pgbench does before it measures: VACUUM (ANALYZE) the tables the workload writes, so the thousands of
   * rows W1 just wrote do not set autovacuum off in the middle of the latency workloads that follow.
   */
  async vacuumEngineTables(): Promise<void> {
    await this.client.query("vacuum (analyze) runs, journal_entries, events, waits");
  }

  /** Runs RUNNING right now (activations in some process's memory), of every workflow. */
  async runningCount(): Promise<number> {
    const result = await this.client.query<{ n: string }>("select count(*) as n from runs where status = 'running'");
    return Number(result.rows[0]?.n ?? Number.NaN);
  }

  /** A run's journal, in sequence order. */
  async journal(runId: string): Promise<EntryTiming[]> {
    const result = await this.client.query<{ sequence: number; kind: string; name: string; created_ms: number; fire_ms: number | null }>(
      `select sequence, kind, name, extract(epoch from created_at) * 1000 as created_ms, extract(epoch from fire_at) * 1000 as fire_ms
       from journal_entries where run_id = $1 order by sequence`,
      [runId],
    );
    return result.rows.map((r) => ({ sequence: r.sequence, kind: r.kind, name: r.name, createdAt: Number(r.created_ms), fireAt: r.fire_ms === null ? null : Number(r.fire_ms) }));
  }

  /** Per run: timer_started.fire_at and timer_fired.created_at (epoch ms) of its timer `name`. */
  /**
   * Each run's timer `name`: when it was due, when its timer_fired entry's transaction began, and when the run
   * completed (NaN while it has not). A run that returns right after the timer writes timer_fired with its end.
   */
  async timerTimes(ids: readonly string[], name: string): Promise<{ runId: string; fireAt: number; firedAt: number; completedAt: number }[]> {
    const result = await this.client.query<{ run_id: string; fire_ms: number; fired_ms: number; completed_ms: number | null }>(
      `select s.run_id, extract(epoch from s.fire_at) * 1000 as fire_ms, extract(epoch from f.created_at) * 1000 as fired_ms,
              extract(epoch from r.completed_at) * 1000 as completed_ms
       from journal_entries s join journal_entries f on f.run_id = s.run_id and f.name = s.name and f.kind = 'timer_fired'
       join runs r on r.id = s.run_id
       where s.run_id = any($1::uuid[]) and s.kind = 'timer_started' and s.name = $2`,
      [ids, name],
    );
    return result.rows.map((r) => ({ runId: r.run_id, fireAt: Number(r.fire_ms), firedAt: Number(r.fired_ms), completedAt: r.completed_ms === null ? Number.NaN : Number(r.completed_ms) }));
  }

  /**
   * Scans of the engine's tables so far (pg_stat_user_tables: published by
   * each backend at most once a second while it is busy, so a delta over a
   * window of several seconds is close).
   */
  async tableScans(): Promise<Record<string, TableScans>> {
    // This connection's own scans (status counts) are published when it next goes idle, not 10 s later.
    await this.client.query("select pg_stat_force_next_flush()").catch(() => undefined);
    await this.client.query("select pg_stat_clear_snapshot()");
    const result = await this.client.query<{ relname: string; seq_scan: string; seq_tup_read: string; idx_scan: string | null; idx_tup_fetch: string | null }>(
      "select relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch from pg_stat_user_tables where relname in ('runs', 'journal_entries', 'waits', 'events', 'agent_turns')",
    );
    return Object.fromEntries(
      result.rows.map((r) => [
        r.relname,
        { seqScans: Number(r.seq_scan), seqRowsRead: Number(r.seq_tup_read), indexScans: Number(r.idx_scan ?? 0), indexRowsFetched: Number(r.idx_tup_fetch ?? 0) },
      ]),
    );
  }

  /** PIDs of the PostgreSQL backends connected to this database (this connection's own excluded). */
  async backendPids(): Promise<number[]> {
    const result = await this.client.query<{ pid: number }>("select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()");
    return result.rows.map((r) => r.pid);
  }

  /** The (first) agent turn of a run: when it was created and when its worker's result committed. */
  async agentTurn(runId: string): Promise<{ createdAt: Date; completedAt: Date | null; attempt: number } | undefined> {
    const result = await this.client.query<{ created_at: Date; completed_at: Date | null; attempt: number }>(
      "select created_at, completed_at, attempt from agent_turns where run_id = $1 order by created_at limit 1",
      [runId],
    );
    const row = result.rows[0];
    return row ? { createdAt: row.created_at, completedAt: row.completed_at, attempt: row.attempt } : undefined;
  }

  /** Bytes of the engine's tables with their indexes and TOAST. */
  async engineTableBytes(): Promise<number> {
    const result = await this.client.query<{ bytes: string }>(
      `select coalesce(sum(pg_total_relation_size(c.oid)), 0) as bytes from pg_class c
       where c.relkind = 'r' and c.relname in ('runs', 'journal_entries', 'waits', 'events')
         and c.relnamespace = 'public'::regnamespace`,
    );
    return Number(result.rows[0]?.bytes ?? Number.NaN);
  }
}
