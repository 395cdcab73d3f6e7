/**
 * `npm run bench`: measures Cairn's step throughput and run latency against
 * a real PostgreSQL, next to a pgbench one-row-INSERT baseline on the same
 * server. See bench/README.md for what the figures mean.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseOptions, usage, type BenchOptions } from "./args.js";
import { Admin, findServer, redact, urlForDatabase } from "./database.js";
import { runPgbench, type PgbenchResult } from "./pgbench.js";
import { buildReport, type CommitCount, environmentBasics, formatReport, writeReport } from "./report.js";
import { startBenchServer } from "./server.js";
import { connect, runWorkload, warmUp, type WorkloadResult } from "./workload.js";

const postgresSettings = [
  "synchronous_commit",
  "fsync",
  "full_page_writes",
  "wal_sync_method",
  "commit_delay",
  "shared_buffers",
  "max_connections",
  "wal_level",
];

async function main(argv: string[]): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseOptions(argv);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  if (options === "help") {
    console.log(usage);
    return 0;
  }

  const interrupt = new AbortController();
  process.once("SIGINT", () => {
    console.error("interrupted: finishing in-flight runs, then cleaning up");
    interrupt.abort();
  });

  const startedAt = new Date();
  const pgServer = await findServer();
  const admin = await Admin.connect(pgServer.adminUrl);
  try {
    const database = await admin.createDatabase();
    const databaseUrl = urlForDatabase(pgServer.adminUrl, database);
    log(`database ${database} on ${redact(pgServer.adminUrl)} (${pgServer.source})`);
    try {
      const { workload, commits, config } = await measureCairn(options, admin, database, databaseUrl, interrupt.signal);
      const pgbench = await baseline(options, databaseUrl, interrupt.signal);
      const report = buildReport({
        startedAt,
        flags: options,
        workload,
        commits,
        pgbench,
        environment: {
          ...environmentBasics(),
          postgres: await admin.version(),
          postgresSource: pgServer.source,
          postgresUrl: redact(pgServer.adminUrl),
          postgresSettings: await admin.settings(postgresSettings),
          cairn: {
            databasePoolSize: config.databasePoolSize,
            maxConcurrentRuns: config.maxConcurrentRuns,
            leaseMs: config.leaseMs,
            pollIntervalMs: config.pollIntervalMs,
          },
        },
      });
      console.log(formatReport(report));
      for (const failure of report.cairn.failures) console.error(`  failed: ${failure}`);
      log(`results written to ${await writeReport(report)}`);
      return workload.failures.length === 0 && !interrupt.signal.aborted ? 0 : 1;
    } finally {
      await admin.dropDatabase(database);
      log(`dropped ${database}`);
    }
  } finally {
    await admin.close();
    await pgServer.stop();
  }
}

/**
 * Commit counting: backends publish their counts to pg_stat_database lazily
 * (when idle, at most once a second, sometimes 10 s later) but always when
 * they exit. So the warm-up runs on a first server that is closed before the
 * "before" read, and the workload on a second one that is closed before the
 * "after" read: every commit is counted, and only the workload's (plus the
 * second server's start-up check and background polls) fall in the window.
 */
async function measureCairn(options: BenchOptions, admin: Admin, database: string, databaseUrl: string, signal: AbortSignal) {
  const warm = await startBenchServer(databaseUrl, options.concurrency);
  try {
    log(`warming up (migrations, module loading, JIT) on ${warm.server.url}`);
    await warmUp(connect(warm.server.url), options.steps, signal);
  } finally {
    await warm.server.close();
  }
  const before = await settledCommits(admin, database);

  const { server, config } = await startBenchServer(databaseUrl, options.concurrency);
  let workload: WorkloadResult;
  try {
    log(`running ${options.runs} runs × ${options.steps} steps, ${options.concurrency} in flight, on ${server.url}`);
    workload = await runWorkload(connect(server.url), {
      runs: options.runs,
      steps: options.steps,
      concurrency: options.concurrency,
      pollMs: options.pollMs,
      runTimeoutMs: 120_000,
      signal,
    });
  } finally {
    await server.close();
  }
  const after = await settledCommits(admin, database);
  const total = after - before;
  const commits: CommitCount = { total, engine: total - workload.getRunCalls };
  return { workload, commits, config };
}

async function baseline(options: BenchOptions, databaseUrl: string, signal: AbortSignal): Promise<PgbenchResult | null> {
  if (options.skipPgbench || signal.aborted) return null;
  log(`pgbench: ${options.concurrency} clients, ${options.pgbenchSeconds} s of one-row INSERTs`);
  return runPgbench({ databaseUrl, clients: options.concurrency, seconds: options.pgbenchSeconds });
}

/** Reads the commit counter until two reads agree (the last backends have reported), for at most ~5 s. */
async function settledCommits(admin: Admin, database: string): Promise<number> {
  let previous = await admin.commits(database);
  for (let i = 0; i < 10; i++) {
    await sleep(500);
    const current = await admin.commits(database);
    if (current === previous) return current;
    previous = current;
  }
  return previous;
}

function log(message: string): void {
  console.error(`[bench] ${message}`);
}

process.exitCode = await main(process.argv.slice(2));
