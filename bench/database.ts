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

/** Runs by id, or runs of a workflow whose input `key` starts with a prefix (so the client need not hold 10,000 ids). */
export type RunSelector = { ids: readonly string[] } | { workflowName: string; keyPrefix: string };

/**
 * A connection to the bench database itself, for the wait workloads: counting
 * runs by status without paginating the API, and measuring table sizes. Only
 * opened after the step workload's commit count is taken.
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

  /** How many of the selected runs are in each status. */
  async statusCounts(selector: RunSelector): Promise<Record<string, number>> {
    const result =
      "ids" in selector
        ? await this.client.query<{ status: string; n: string }>(
            "select status, count(*) as n from runs where id = any($1::uuid[]) group by status",
            [selector.ids],
          )
        : await this.client.query<{ status: string; n: string }>(
            "select status, count(*) as n from runs where workflow_name = $1 and input->>'key' like $2 group by status",
            [selector.workflowName, `${selector.keyPrefix.replace(/[\\%_]/g, "\\$&")}%`],
          );
    return Object.fromEntries(result.rows.map((r) => [r.status, Number(r.n)]));
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
