/**
 * `npm run bench`: measures Cairn's step throughput and run latency against
 * a real PostgreSQL, next to a pgbench one-row-INSERT baseline on the same
 * server; then its durable waits: event → resume latency, timer lateness and
 * the memory a parked run costs; then composition (child fan-out, agent turns
 * through a real worker process) and the WatchRun delay. See bench/README.md
 * for what the figures mean.
 */
import { loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { parseOptions, usage, type BenchOptions } from "./args.js";
import type { Config } from "../server/config.js";
import { Admin, BenchProbe, findServer, redact, urlForDatabase } from "./database.js";
import { runPgbench, type PgbenchResult } from "./pgbench.js";
import { allFailures, buildReport, type CommitCount, environmentBasics, formatReport, writeReport } from "./report.js";
import { benchConfig, startBenchServer } from "./server.js";
import { agentRoundTrip, type AgentRoundTripResult, fanOut, type FanOutResult, warmUpComposition } from "./composition.js";
import { eventLatency, type EventLatencyResult, parkedMemory, type ParkedMemoryResult, timerLateness, type TimerLatenessResult, warmUpWaits } from "./waits.js";
import { watchDelay, type WatchDelayResult, warmUpWatch } from "./watch.js";
import { connect, runWorkload, warmUp, type WorkloadResult } from "./workload.js";

/**
 * Parked runs are created with eager_start: the creating request claims the
 * run and parks it without a scheduler round trip (measured faster than
 * queueing them and letting the claim loop pick them up).
 */
const parkedEagerStart = process.env.BENCH_PARKED_EAGER !== "0";

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
  const loadAtStart = loadavg()[0] ?? Number.NaN;
  const pgServer = await findServer();
  const admin = await Admin.connect(pgServer.adminUrl);
  try {
    const database = await admin.createDatabase();
    const databaseUrl = urlForDatabase(pgServer.adminUrl, database);
    log(`database ${database} on ${redact(pgServer.adminUrl)} (${pgServer.source})`);
    try {
      const steps = options.skipSteps ? null : await measureCairn(options, admin, database, databaseUrl, interrupt.signal);
      const pgbench = steps ? await baseline(options, databaseUrl, interrupt.signal) : null;
      const waits = await measureWaits(options, databaseUrl, interrupt.signal);
      const composition = await measureComposition(options, databaseUrl, interrupt.signal);
      const watch = await measureWatch(options, databaseUrl, interrupt.signal);
      const config = steps?.config ?? waits.config ?? composition.config ?? watch.config ?? benchConfig(databaseUrl, options.concurrency);
      const report = buildReport({
        startedAt,
        flags: options,
        steps,
        pgbench,
        waits,
        composition,
        watch: watch.results,
        environment: {
          ...environmentBasics(loadAtStart),
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
      const failures = allFailures(report);
      for (const failure of failures) console.error(`  failed: ${failure}`);
      log(`results written to ${await writeReport(report)}`);
      return failures.length === 0 && !interrupt.signal.aborted ? 0 : 1;
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

/**
 * The wait workloads, after the step workload's commit count is taken: event
 * latency and timers on one server, parked memory on a fresh one so its
 * baseline holds nothing of theirs.
 */
async function measureWaits(
  options: BenchOptions,
  databaseUrl: string,
  signal: AbortSignal,
): Promise<{ eventLatency: EventLatencyResult | null; timers: TimerLatenessResult | null; parked: ParkedMemoryResult | null; config: Config | null }> {
  const result: Awaited<ReturnType<typeof measureWaits>> = { eventLatency: null, timers: null, parked: null, config: null };
  if (options.eventRuns + options.timerRuns + options.parkedRuns === 0 || signal.aborted) return result;
  const maxRuns = Math.max(options.concurrency, options.waitConcurrency);
  const probe = await BenchProbe.connect(databaseUrl);
  try {
    if (options.eventRuns > 0 || options.timerRuns > 0) {
      const { server, config } = await startBenchServer(databaseUrl, maxRuns);
      result.config = config;
      try {
        const client = connect(server.url);
        await warmUpWaits(client, signal);
        if (options.eventRuns > 0 && !signal.aborted) {
          log(`event → resume: ${options.eventRuns} sequential runs, GetRun every ${options.eventPollMs} ms`);
          result.eventLatency = await eventLatency(client, { runs: options.eventRuns, pollMs: options.eventPollMs, signal });
        }
        if (options.timerRuns > 0 && !signal.aborted) {
          log(`timers: ${options.timerRuns} runs sleeping ${options.timerMs} ms, ${options.waitConcurrency} creates in flight`);
          result.timers = await timerLateness(client, server, probe, { runs: options.timerRuns, sleepMs: options.timerMs, concurrency: options.waitConcurrency, signal });
        }
      } finally {
        await server.close();
      }
    }
    if (options.parkedRuns > 0 && !signal.aborted) {
      const { server, config } = await startBenchServer(databaseUrl, maxRuns);
      result.config ??= config;
      try {
        log(`parked: ${options.parkedRuns} runs waiting on distinct event keys, ${options.waitConcurrency} creates in flight`);
        result.parked = await parkedMemory(connect(server.url), server, probe, {
          runs: options.parkedRuns,
          concurrency: options.waitConcurrency,
          eagerStart: parkedEagerStart,
          signal,
          log,
        });
      } finally {
        await server.close();
      }
    }
  } finally {
    await probe.close();
  }
  return result;
}

/** Child fan-out and agent turns, on a fresh server. */
async function measureComposition(
  options: BenchOptions,
  databaseUrl: string,
  signal: AbortSignal,
): Promise<{ fanOut: FanOutResult | null; agent: AgentRoundTripResult | null; config: Config | null }> {
  const result: Awaited<ReturnType<typeof measureComposition>> = { fanOut: null, agent: null, config: null };
  if ((options.children === 0 && options.agentTurns === 0) || signal.aborted) return result;
  const { server, config } = await startBenchServer(databaseUrl, Math.max(options.concurrency, options.waitConcurrency));
  result.config = config;
  const probe = await BenchProbe.connect(databaseUrl);
  try {
    const client = connect(server.url);
    await warmUpComposition(client, signal);
    if (options.children > 0 && !signal.aborted) {
      log(`fan-out: 1 bench_fan_out run × ${options.children} bench_child runs, GetRun every ${options.compositionPollMs} ms`);
      result.fanOut = await fanOut(client, { children: options.children, pollMs: options.compositionPollMs, timeoutMs: 300_000, signal });
    }
    if (options.agentTurns > 0 && !signal.aborted) {
      log(`agent: ${options.agentTurns} sequential bench_agent runs through a worker process, GetRun every ${options.compositionPollMs} ms`);
      result.agent = await agentRoundTrip(client, probe, server.url, { runs: options.agentTurns, pollMs: options.compositionPollMs, signal, log });
    }
  } finally {
    await probe.close();
    await server.close();
  }
  return result;
}

/** WatchRun delay with one watcher, then with --watchers, each on a fresh run; one fresh server for both. */
async function measureWatch(
  options: BenchOptions,
  databaseUrl: string,
  signal: AbortSignal,
): Promise<{ results: WatchDelayResult[]; config: Config | null }> {
  if (options.watchSteps === 0 || signal.aborted) return { results: [], config: null };
  const { server, config } = await startBenchServer(databaseUrl, Math.max(options.concurrency, options.waitConcurrency));
  const results: WatchDelayResult[] = [];
  try {
    const client = connect(server.url);
    // The watchers' streams get an HTTP/2 connection of their own.
    const watchClient = connect(server.url);
    await warmUpWatch(client, watchClient, signal);
    for (const watchers of [...new Set([1, options.watchers])]) {
      if (signal.aborted) break;
      log(`watch: ${watchers} watcher(s) of a ${options.watchSteps}-step bench_watched run (${options.watchStepMs} ms per step)`);
      results.push(await watchDelay(client, watchClient, { watchers, steps: options.watchSteps, stepMs: options.watchStepMs, signal }));
    }
  } finally {
    await server.close();
  }
  return { results, config };
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
