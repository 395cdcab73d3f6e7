/**
 * `npm run bench`: the scoreboard of issue 7. On a fresh database of one
 * PostgreSQL server (the same settings for every figure), in this order:
 *
 * 1. pgbench one-row INSERT baselines at 1, 10 and 64 clients, before any
 *    Cairn server holds connections;
 * 2. server process A: W1 throughput through the SDK (and with --http both,
 *    once per HTTP version); then process B joins and W1 runs through both;
 * 3. on A: W2 start → result, W3 event → completion, W4 timer lateness,
 *    per-step cost of 10/100/1,000-step runs, and the extras; A stops;
 * 4. resume after restart: a server parks long runs and stops, a new one
 *    resumes them;
 * 5. on a fresh server: a cancel batch over N parked runs (runs/s);
 * 6. on a fresh server: `cairn deploy check` (the CLI process) over N parked
 *    runs against changed workflow code (runs/s, the divergent ones checked);
 * 7. on a fresh server: N parked runs (memory, idle CPU), which stay
 *    in the database until it is dropped; then run control on another;
 * 8. on a fresh database and server: a crowd of watch streams on parked runs, once per client (SDK, grpc-js)
 *    (memory, the idle database, one change delivered to all: bench/crowd.ts);
 * 9. last, the price of workflow isolation: a server with the workflow thread
 *    pool and one with CAIRN_WORKFLOW_THREADS=0, each on a fresh database of
 *    its own, taking turns at W1, W2 and W3 (bench/isolation.ts).
 *
 * Every server is a child process (bench/server.ts); this process is only
 * the load generator and the observer. See bench/README.md.
 */
import { execFileSync } from "node:child_process";
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { cpus, loadavg, platform, release, totalmem } from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { CairnClient } from "../sdk/client.js";
import { type BenchOptions, parseOptions, usage } from "./args.js";
import { type BatchBenchResult, cancelBatch } from "./batch.js";
import { type CrowdResult, watchCrowd } from "./crowd.js";
import { type DeployCheckBenchResult, deployCheckThroughput } from "./deploy-check.js";
import { type ScheduleBenchResult, scheduleLateness } from "./schedules.js";
import { describeHttp, type HttpVersion, sdkClient } from "./client.js";
import { agentRoundTrip, type AgentRoundTripResult, fanOut, type FanOutResult, warmUpComposition } from "./composition.js";
import { Admin, BenchProbe, findServer, redact, urlForDatabase } from "./database.js";
import { extrasReport } from "./extras-report.js";
import { type FlowControlResult, flowControlSummary, flowControlThroughput } from "./flow-control.js";
import { isolationCost, type IsolationResult } from "./isolation.js";
import { isolationReport } from "./isolation-report.js";
import { eventLatency, startLatency, warmUpLatency } from "./latency.js";
import { runPgbench } from "./pgbench.js";
import { resumeAfterRestart, stepCosts } from "./replay.js";
import { buildReport, type Environment, formatReport, type Measurements, type PgbenchReport, writeReport } from "./report.js";
import { type CpuShares, watchCpu } from "./resources.js";
import { ServerProcess, type ServerSettings, serverEnv, serverLogs } from "./server.js";
import { parkedRuns, type TimerLatenessResult, timerLateness } from "./waits.js";
import { listRunsByMetadata } from "./run-control.js";
import type { RunControlReport } from "./run-control-report.js";
import { watchDelay, type WatchDelayResult, warmUpWatch } from "./watch.js";
import { explainLatency, type ExplainLatencyResult } from "./explain.js";
import { runThroughput, stepsPerSecond, type ThroughputResult, warmUpThroughput } from "./workload.js";
import { describeWire, type WireClient, type WireName } from "./wire.js";
import { fetchWire } from "./wire-fetch.js";
import { grpcWire } from "./wire-grpc.js";
import { sdkWire } from "./wire-sdk.js";
import { measureWire, type WireResult } from "./wires.js";

/** Server settings that decide commit cost and capacity: recorded at the start and checked again at the end. */
const postgresSettings = [
  "synchronous_commit",
  "fsync",
  "full_page_writes",
  "wal_sync_method",
  "commit_delay",
  "commit_siblings",
  "wal_level",
  "wal_buffers",
  "wal_writer_delay",
  "max_wal_size",
  "checkpoint_timeout",
  "shared_buffers",
  "work_mem",
  "effective_cache_size",
  "max_connections",
  "jit",
  "huge_pages",
];

const benchStart = performance.now();

function log(message: string): void {
  console.error(`[bench ${((performance.now() - benchStart) / 1000).toFixed(1).padStart(5)} s] ${message}`);
}

const load1 = () => loadavg()[0] ?? Number.NaN;

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
    log("interrupted: stopping after the current step, then cleaning up");
    interrupt.abort();
  });
  const signal = interrupt.signal;
  // Every call in flight (64 and more) listens on it.
  setMaxListeners(0, signal);

  const startedAt = new Date();
  const loadAtStart = loadavg();
  const pgServer = await findServer();
  const admin = await Admin.connect(pgServer.adminUrl);
  try {
    const database = await admin.createDatabase();
    const databaseUrl = urlForDatabase(pgServer.adminUrl, database);
    log(`database ${database} on ${redact(pgServer.adminUrl)} (${pgServer.source})`);
    let probe: BenchProbe | undefined;
    try {
      const settingsAtStart = await admin.settings(postgresSettings);
      const failures: string[] = [];
      const settings: ServerSettings = {
        databaseUrl,
        poolSize: options.poolSize,
        maxConcurrentRuns: Math.max(100, options.concurrency, options.waitConcurrency),
        logLevel: process.env.BENCH_LOG_LEVEL || "warn",
      };

      const pgbench = await baselines(options, databaseUrl, failures, signal);

      probe = await BenchProbe.connect(databaseUrl);
      const measured = await measureOnServers(options, settings, probe, pgbench, failures, signal);
      const wires = await measureWires(options, settings, measured.http, probe, failures, signal);
      const resume =
        options.resumeSteps > 0 && !signal.aborted ? await measureResume(options, settings, measured.http, probe, failures, signal) : null;
      const batch = options.batchRuns > 0 && !signal.aborted ? await measureBatch(options, settings, measured.http, probe, failures, signal) : null;
      const schedules = options.schedules > 0 && !signal.aborted ? await measureSchedules(options, settings, measured.http, failures, signal) : null;
      const deployCheck = options.deployCheckRuns > 0 && !signal.aborted ? await measureDeployCheck(options, settings, measured.http, probe, failures, signal) : null;
      const parked = options.parkedRuns > 0 && !signal.aborted ? await measureParked(options, settings, measured.http, probe, failures, signal) : null;
      const runControl = await measureRunControl(options, settings, measured.http, failures, signal);
      const crowd = await measureCrowd(options, admin, pgServer.adminUrl, settings, failures, signal);
      const isolation = await measureIsolation(options, admin, pgServer.adminUrl, settings, measured.http, failures, signal);

      const settingsAtEnd = await admin.settings(postgresSettings);
      const environment: Environment = {
        versions: { node: process.version, postgres: await admin.version(), cairn: cairnVersion() },
        machine: {
          cores: cpus().length,
          cpuModel: cpus()[0]?.model.trim() ?? "unknown",
          os: `${platform()} ${release()}`,
          memoryBytes: totalmem(),
          loadAverage: { start: loadAtStart.map((l) => Math.round(l * 100) / 100), end: loadavg().map((l) => Math.round(l * 100) / 100) },
        },
        postgres: {
          source: pgServer.source,
          url: redact(pgServer.adminUrl),
          settings: settingsAtStart,
          changedDuringRun: Object.fromEntries(
            Object.entries(settingsAtStart)
              .filter(([name, value]) => settingsAtEnd[name] !== value)
              .map(([name, value]) => [name, { start: value, end: settingsAtEnd[name] ?? "?" }]),
          ),
        },
        servers: {
          command: "node --import tsx server/main.ts (one process per server)",
          env: { ...serverEnv({ ...settings, databaseUrl: "<bench db>" }, 0), PORT: "<free port>" },
          http: describeHttp(measured.http),
        },
        serverLogs: serverLogs(),
        deadlocks: await admin.deadlocks(database),
      };
      const measurements: Measurements = {
        startedAt,
        flags: options,
        environment,
        pgbench,
        ...measured.figures,
        resume,
        batch,
        schedules,
        deployCheck,
        parked,
        runControl,
        wires,
        isolation,
        crowd,
        failures,
      };
      const report = buildReport(measurements);
      console.log(formatReport(report));
      for (const failure of report.failures) console.error(`  failed: ${failure}`);
      log(`results written to ${await writeReport(report)}`);
      return report.failures.length === 0 && !signal.aborted ? 0 : 1;
    } finally {
      await probe?.close();
      await admin.dropDatabase(database);
      log(`dropped ${database}`);
    }
  } finally {
    await admin.close();
    await pgServer.stop();
  }
}

/** pgbench at 1, 10 and C clients, before any server opens its pool (64 clients plus the pools could pass max_connections). */
async function baselines(options: BenchOptions, databaseUrl: string, failures: string[], signal: AbortSignal): Promise<PgbenchReport[]> {
  const results: PgbenchReport[] = [];
  if (options.skipPgbench) return results;
  for (const clients of options.pgbenchClients) {
    if (signal.aborted) break;
    log(`pgbench: ${clients} client(s), ${options.pgbenchSeconds} s of one-row INSERTs`);
    const loadAverage = load1();
    try {
      results.push({ ...(await runPgbench({ databaseUrl, clients, seconds: options.pgbenchSeconds })), clients, seconds: options.pgbenchSeconds, loadAverage });
    } catch (error) {
      failures.push(`pgbench ${clients} clients: ${(error as Error).message}`);
    }
  }
  return results;
}

type Run<T> = { result: T; loadAverage: number };
type W1Round = { result: ThroughputResult; http: string; cpu: CpuShares };

/** Everything that runs on server A (and B for the two-server W1). */
async function measureOnServers(
  options: BenchOptions,
  settings: ServerSettings,
  probe: BenchProbe,
  pgbench: PgbenchReport[],
  failures: string[],
  signal: AbortSignal,
): Promise<{
  http: HttpVersion;
  figures: Pick<Measurements, "w1Http" | "w1" | "w1TwoServers" | "w2" | "w3" | "w4" | "replay" | "extras">;
}> {
  let http: HttpVersion = options.http === "both" ? "2" : options.http;
  const figures: Pick<Measurements, "w1Http" | "w1" | "w1TwoServers" | "w2" | "w3" | "w4" | "replay" | "extras"> = {
    w1Http: [],
    w1: null,
    w1TwoServers: null,
    w2: null,
    w3: null,
    w4: null,
    replay: null,
    extras: { fanOut: null, agent: null, watch: [], explain: null, flowControl: null },
  };
  const needsA =
    options.runs + options.startRuns + options.eventRuns + options.timerRuns + options.replayLengths.length + options.children + options.agentTurns + options.watchSteps + options.explainCalls > 0;
  if (!needsA) return { http, figures };

  log("starting server A");
  const a = await ServerProcess.start("server A", settings, log);
  log(`server A: pid ${a.pid}, ${a.url}, serving after ${a.startMs.toFixed(0)} ms`);
  try {
    // ── W1 ──
    if (options.runs > 0 && !signal.aborted) {
      const warmed = new Set<string>();
      const w1 = async (servers: ServerProcess[], version: HttpVersion, label: string): Promise<W1Round> => {
        const clients = servers.map((s) => sdkClient(s.url, version));
        const config = `${servers.length}/${version}`;
        if (!warmed.has(config)) {
          await warmUpThroughput(clients, options.steps, signal);
          warmed.add(config);
        }
        log(`W1 ${label}: ${options.runs} runs × ${options.steps} steps, ${options.concurrency} in flight, HTTP/${version}, load ${load1().toFixed(2)}`);
        const cpu = await watchCpu(servers, probe);
        const result = await runThroughput({ runs: options.runs, steps: options.steps, concurrency: options.concurrency, clients, runTimeoutMs: 300_000, signal });
        const shares: CpuShares = await cpu.stop();
        log(`W1 ${label}: ${stepsPerSecond(result).toFixed(0)} steps/s`);
        return { result, http: version, cpu: shares };
      };
      if (options.http === "both") {
        for (const version of ["1.1", "2"] as const) figures.w1Http.push(await w1([a], version, `1 server, HTTP/${version}`));
        const faster = [...figures.w1Http].sort((x, y) => stepsPerSecond(y.result) - stepsPerSecond(x.result))[0];
        if (faster) http = faster.http as HttpVersion;
        log(`W1: HTTP/${http} was faster; it is used for every other workload`);
      }
      // One server and two servers take turns, round after round, so that a
      // burst of load from elsewhere on the machine hits both alike; the
      // median round of each is the figure.
      let b: ServerProcess | undefined;
      try {
        if (options.twoServers && !signal.aborted) {
          log("starting server B");
          b = await ServerProcess.start("server B", settings, log);
        }
        figures.w1 = [];
        figures.w1TwoServers = b ? [] : null;
        for (let round = 1; round <= options.w1Rounds && !signal.aborted; round++) {
          figures.w1.push(await w1([a], http, `round ${round}, 1 server`));
          if (b && figures.w1TwoServers && !signal.aborted) figures.w1TwoServers.push(await w1([a, b], http, `round ${round}, 2 servers`));
        }
      } finally {
        await b?.close();
      }
    }
    const client = sdkClient(a.url, http);

    // ── W2, W3 ──
    if ((options.startRuns > 0 || options.eventRuns > 0) && !signal.aborted) {
      await probe.vacuumEngineTables();
      await warmUpLatency(client, probe, signal);
      if (options.startRuns > 0) {
        const loadAverage = load1();
        log(`W2: ${options.startRuns} sequential 1-step runs, load ${loadAverage.toFixed(2)}`);
        figures.w2 = { result: await startLatency(client, { runs: options.startRuns, signal }), loadAverage };
      }
      if (options.eventRuns > 0 && !signal.aborted) {
        const loadAverage = load1();
        log(`W3: ${options.eventRuns} sequential event → completion runs, load ${loadAverage.toFixed(2)}`);
        figures.w3 = { result: await eventLatency(client, probe, { runs: options.eventRuns, signal }), loadAverage };
      }
    }

    // ── W4 ──
    if (options.timerRuns > 0 && !signal.aborted) {
      const sizes = { sleepMs: options.timerMs, concurrency: options.waitConcurrency, signal };
      // The server's first timers fire on cold code (the claim, the wake, the thread's resume path): a series first,
      // reported apart, so that the figure is the steady one, as W1's and W2's warm-ups do for theirs.
      let cold: TimerLatenessResult | undefined;
      if (options.timerWarmup > 0) {
        log(`W4 warm-up: ${options.timerWarmup} runs sleeping ${options.timerMs} ms, reported apart as cold`);
        cold = await timerLateness(client, probe, { ...sizes, runs: options.timerWarmup });
      }
      const loadAverage = load1();
      log(`W4: ${options.timerRuns} runs sleeping ${options.timerMs} ms, ${options.waitConcurrency} creates in flight, load ${loadAverage.toFixed(2)}`);
      figures.w4 = { result: await timerLateness(client, probe, { ...sizes, runs: options.timerRuns }), loadAverage, ...(cold ? { cold } : {}) };
    }

    // ── replay: per-step cost ──
    if (options.replayLengths.length > 0 && !signal.aborted) {
      const loadAverage = load1();
      log(`replay: per-step cost of ${options.replayLengths.join(", ")}-step runs, load ${loadAverage.toFixed(2)}`);
      figures.replay = { result: await stepCosts(client, probe, { lengths: options.replayLengths, stepsPerLength: options.replayStepsPerLength, signal }), loadAverage };
    }

    // ── extras ──
    figures.extras = extrasReport(await measureExtras(options, a, client, probe, failures, signal));
  } finally {
    await a.close();
  }
  return { http, figures };
}

async function measureExtras(
  options: BenchOptions,
  server: ServerProcess,
  client: CairnClient,
  probe: BenchProbe,
  failures: string[],
  signal: AbortSignal,
): Promise<{ fanOut: FanOutResult | null; agent: AgentRoundTripResult | null; watch: WatchDelayResult[]; explain: ExplainLatencyResult | null; flowControl: FlowControlResult | null }> {
  const result: { fanOut: FanOutResult | null; agent: AgentRoundTripResult | null; watch: WatchDelayResult[]; explain: ExplainLatencyResult | null; flowControl: FlowControlResult | null } = {
    fanOut: null,
    agent: null,
    watch: [],
    explain: null,
    flowControl: null,
  };
  const raw = client.raw.workflows;
  try {
    if ((options.children > 0 || options.agentTurns > 0) && !signal.aborted) {
      await warmUpComposition(raw, signal);
      if (options.children > 0) {
        log(`extras: fan-out of ${options.children} children`);
        result.fanOut = await fanOut(raw, { children: options.children, pollMs: options.compositionPollMs, timeoutMs: 300_000, signal });
      }
      if (options.agentTurns > 0 && !signal.aborted) {
        log(`extras: ${options.agentTurns} agent turns through a worker process`);
        result.agent = await agentRoundTrip(raw, probe, server.url, { runs: options.agentTurns, pollMs: options.compositionPollMs, signal, log });
      }
    }
    if (options.watchSteps > 0 && !signal.aborted) {
      // The watchers' streams get an HTTP/2 connection of their own.
      const watchClient = sdkClient(server.url, "2").raw.workflows;
      await warmUpWatch(raw, watchClient, signal);
      for (const watchers of [...new Set([1, options.watchers])]) {
        if (signal.aborted) break;
        log(`extras: watch delay with ${watchers} watcher(s)`);
        result.watch.push(await watchDelay(raw, watchClient, { watchers, steps: options.watchSteps, stepMs: options.watchStepMs, signal }));
      }
    }
  } catch (error) {
    failures.push(`extras: ${(error as Error).message}`);
  }
  if (options.explainCalls > 0 && !signal.aborted) {
    try {
      log(`explain: ${options.explainCalls} ExplainRun calls on a waiting run with ${options.explainNearMisses} near misses`);
      result.explain = await explainLatency(client, { calls: options.explainCalls, nearMisses: options.explainNearMisses, signal });
    } catch (error) {
      failures.push(`explain: ${(error as Error).message}`);
    }
  }
  if (options.flowControlRounds > 0 && options.runs > 0 && !signal.aborted) {
    try {
      log(`flow control: W1 without and with a concurrency key (limit 64), ${options.flowControlRounds} rounds each`);
      result.flowControl = await flowControlThroughput([client], { runs: options.runs, steps: options.steps, concurrency: options.concurrency, rounds: options.flowControlRounds, signal, log });
      const summary = flowControlSummary(result.flowControl);
      log(`flow control: plain ${summary.plain.toFixed(0)} steps/s, keyed ${summary.keyed.toFixed(0)} steps/s (${(summary.ratio * 100).toFixed(1)}%)`);
    } catch (error) {
      failures.push(`flow control: ${(error as Error).message}`);
    }
  }
  return result;
}

const wireClients: Record<WireName, (baseUrl: string) => WireClient> = { "grpc-js": grpcWire, fetch: fetchWire, sdk: sdkWire };

/** The wire table, on a server of its own: every wire and way of seeing an end runs W1–W4 against it in turn. */
async function measureWires(options: BenchOptions, settings: ServerSettings, http: HttpVersion, probe: BenchProbe, failures: string[], signal: AbortSignal): Promise<WireResult[]> {
  const results: WireResult[] = [];
  if (options.wires.length === 0 || options.observations.length === 0 || signal.aborted) return results;
  log("starting server W for the wire table");
  const w = await ServerProcess.start("server W", settings, log);
  try {
    const sizes = {
      runs: options.wireRuns,
      w1Rounds: options.w1Rounds,
      steps: options.steps,
      concurrency: options.concurrency,
      startRuns: options.wireStartRuns,
      startWarmup: options.wireStartRuns > 0 ? options.wireStartWarmup : 0,
      eventRuns: options.wireEventRuns,
      timerRuns: options.wireTimerRuns,
      timerWarmup: options.wireTimerRuns > 0 ? options.timerWarmup : 0,
      timerMs: options.timerMs,
      createConcurrency: options.waitConcurrency,
    };
    if (options.wireRuns > 0 && !signal.aborted) {
      // A fresh process runs its first thousands of steps colder (the JIT, the pools): one W1 round through the SDK
      // first, as the SDK section's rounds have had theirs, so the first wire measured is not the one that pays it.
      log(`wires: warming server W up with one W1 round through the SDK`);
      const warm = sdkClient(w.url, http);
      await runThroughput({ runs: options.wireRuns, steps: options.steps, concurrency: options.concurrency, clients: [warm], runTimeoutMs: 120_000, signal });
    }
    for (const wire of options.wires) {
      for (const how of options.observations) {
        if (signal.aborted) break;
        log(`wires: ${wire} (${describeWire(wire)}), end seen by ${how === "await" ? "AwaitRun" : "WatchRun"}, load ${load1().toFixed(2)}`);
        try {
          await probe.vacuumEngineTables();
          const result = await measureWire(() => wireClients[wire](w.url), how, w, probe, sizes, signal, load1);
          results.push(result);
          log(
            `wires: ${wire}/${how}: W1 ${result.w1?.stepsPerSec.toFixed(0) ?? "—"} steps/s (rounds ${result.w1?.roundsStepsPerSec.map((v) => v.toFixed(0)).join(", ") ?? "—"}), W2 p50 ${median(result.w2?.latenciesMs)} ms, W3 p50 ${median(result.w3?.latenciesMs)} ms, W4 p50 ${median(result.w4?.latenessMs)} ms`,
          );
        } catch (error) {
          failures.push(`wires ${wire}/${how}: ${(error as Error).message}`);
        }
      }
    }
  } finally {
    await w.close();
  }
  return results;
}

function median(sorted: number[] | undefined): string {
  return sorted && sorted.length > 0 ? (sorted[Math.floor(sorted.length / 2)] as number).toFixed(1) : "—";
}

async function measureResume(
  options: BenchOptions,
  settings: ServerSettings,
  http: HttpVersion,
  probe: BenchProbe,
  failures: string[],
  signal: AbortSignal,
): Promise<Run<Awaited<ReturnType<typeof resumeAfterRestart>>> | null> {
  const loadAverage = load1();
  log(`resume: ${options.resumeSteps}-step runs parked, server restarted, then resumed; load ${loadAverage.toFixed(2)}`);
  try {
    return { result: await resumeAfterRestart(settings, http, probe, { longSteps: options.resumeSteps, shortSteps: 10, signal, log }), loadAverage };
  } catch (error) {
    failures.push(`resume: ${(error as Error).message}`);
    return null;
  }
}

async function measureSchedules(
  options: BenchOptions,
  settings: ServerSettings,
  http: HttpVersion,
  failures: string[],
  signal: AbortSignal,
): Promise<Run<ScheduleBenchResult> | null> {
  log("starting servers S1, S2, S3 for the schedules");
  const servers = await Promise.all(["server S1", "server S2", "server S3"].map((name) => ServerProcess.start(name, settings, log)));
  try {
    const loadAverage = load1();
    const result = await scheduleLateness(sdkClient(servers[0]!.url, http), settings.databaseUrl, {
      schedules: options.schedules,
      everyMs: options.scheduleEveryMs,
      cycles: options.scheduleCycles,
      signal,
      log,
    });
    log(`schedules: lateness p50 ${result.latenessP50Ms} ms, p99 ${result.latenessP99Ms} ms over ${result.fires} fires`);
    return { result, loadAverage };
  } catch (error) {
    failures.push(`schedules: ${(error as Error).message}`);
    return null;
  } finally {
    await Promise.all(servers.map((s) => s.close()));
  }
}

async function measureBatch(
  options: BenchOptions,
  settings: ServerSettings,
  http: HttpVersion,
  probe: BenchProbe,
  failures: string[],
  signal: AbortSignal,
): Promise<Run<BatchBenchResult> | null> {
  log("starting server D for the batch");
  const d = await ServerProcess.start("server D", settings, log);
  try {
    const loadAverage = load1();
    log(`batch: cancel over ${options.batchRuns} parked runs, load ${loadAverage.toFixed(2)}`);
    const result = await cancelBatch(sdkClient(d.url, http), probe, { runs: options.batchRuns, concurrency: options.waitConcurrency, signal, log });
    log(`batch: ${result.runsPerSec.toFixed(0)} runs/s`);
    return { result, loadAverage };
  } catch (error) {
    failures.push(`batch: ${(error as Error).message}`);
    return null;
  } finally {
    await d.close();
  }
}

async function measureDeployCheck(
  options: BenchOptions,
  settings: ServerSettings,
  http: HttpVersion,
  probe: BenchProbe,
  failures: string[],
  signal: AbortSignal,
): Promise<Run<DeployCheckBenchResult> | null> {
  log("starting server E for the deploy check");
  const e = await ServerProcess.start("server E", settings, log);
  try {
    const loadAverage = load1();
    log(`deploy check: ${options.deployCheckRuns} runs parked, then cairn deploy check over them, load ${loadAverage.toFixed(2)}`);
    const result = await deployCheckThroughput(sdkClient(e.url, http), probe, e, { runs: options.deployCheckRuns, concurrency: options.waitConcurrency, signal, log });
    log(`deploy check: ${result.runsPerSec.toFixed(0)} runs/s, ${result.diverging} of ${result.checked} diverging`);
    return { result, loadAverage };
  } catch (error) {
    failures.push(`deploy check: ${(error as Error).message}`);
    return null;
  } finally {
    await e.close();
  }
}

async function measureParked(
  options: BenchOptions,
  settings: ServerSettings,
  http: HttpVersion,
  probe: BenchProbe,
  failures: string[],
  signal: AbortSignal,
): Promise<Run<Awaited<ReturnType<typeof parkedRuns>>> | null> {
  log("starting server C for the parked runs");
  const c = await ServerProcess.start("server C", settings, log);
  try {
    const loadAverage = load1();
    log(`parked: ${options.parkedRuns} runs, ${options.waitConcurrency} creates in flight, load ${loadAverage.toFixed(2)}`);
    return { result: await parkedRuns(sdkClient(c.url, http), c, probe, { runs: options.parkedRuns, concurrency: options.waitConcurrency, idleSeconds: options.idleSeconds, signal, log }), loadAverage };
  } catch (error) {
    failures.push(`parked: ${(error as Error).message}`);
    return null;
  } finally {
    await c.close();
  }
}

/** Last, on a server of its own: it seeds its runs into the shared bench database, which no later workload reads. */
async function measureRunControl(options: BenchOptions, settings: ServerSettings, http: HttpVersion, failures: string[], signal: AbortSignal): Promise<RunControlReport> {
  const report: RunControlReport = { listRunsByMetadata: null };
  if (options.runControlRuns === 0 || signal.aborted) return report;
  log("starting server D for run control");
  const d = await ServerProcess.start("server D", settings, log);
  try {
    const loadAverage = load1();
    log(`run control: ListRuns by metadata over ${options.runControlRuns} seeded runs, load ${loadAverage.toFixed(2)}`);
    const result = await listRunsByMetadata(sdkClient(d.url, http), d.url, settings.databaseUrl, { runs: options.runControlRuns, calls: options.runControlCalls, signal });
    report.listRunsByMetadata = { ...result, loadAverage };
  } catch (error) {
    failures.push(`run control: ${(error as Error).message}`);
  } finally {
    await d.close();
  }
  return report;
}

/** Last, on two servers with fresh databases of their own: nothing else runs on them, and they leave the bench database alone. */
async function measureIsolation(
  options: BenchOptions,
  admin: Admin,
  adminUrl: string,
  settings: ServerSettings,
  http: HttpVersion,
  failures: string[],
  signal: AbortSignal,
): Promise<IsolationResult | null> {
  if (options.isolationRounds === 0 || signal.aborted) return null;
  log(`isolation: ${options.isolationRounds} round${options.isolationRounds === 1 ? "" : "s"} of W1, W2 and W3 on server T (workflow thread pool) and server I (CAIRN_WORKFLOW_THREADS=0), load ${load1().toFixed(2)}`);
  try {
    const result = await isolationCost(admin, adminUrl, settings, http, {
      rounds: options.isolationRounds,
      warmupRounds: options.isolationWarmupRounds,
      runs: options.isolationRuns,
      steps: options.steps,
      concurrency: options.concurrency,
      latencyRuns: options.isolationLatencyRuns,
      signal,
      log,
    });
    const summary = isolationReport(result);
    log(
      `isolation: W1 T ${summary.threaded.w1.stepsPerSec.toFixed(0)} / I ${summary.inThread.w1.stepsPerSec.toFixed(0)} steps/s (${summary.w1Ratio.toFixed(3)}; the rounds' own T/I, median ${summary.w1RoundRatioMedian.toFixed(3)}); W2 p50 T − I ${summary.w2P50DeltaMs.toFixed(2)} ms; W3 p50 T − I ${summary.w3P50DeltaMs.toFixed(2)} ms`,
    );
    return result;
  } catch (error) {
    failures.push(`isolation: ${(error as Error).message}`);
    return null;
  }
}

/** The crowd of watch streams, once per client, each on a database and server of its own (the parked runs of earlier sections stay in theirs). */
async function measureCrowd(
  options: BenchOptions,
  admin: Admin,
  adminUrl: string,
  settings: ServerSettings,
  failures: string[],
  signal: AbortSignal,
): Promise<CrowdResult[]> {
  const results: CrowdResult[] = [];
  if (options.crowdStreams === 0) return results;
  const { databaseUrl: _, ...serverSettings } = settings;
  for (const wire of options.crowdWires) {
    if (signal.aborted) break;
    log(`crowd: ${options.crowdStreams} WatchRun streams through ${wire} on as many parked runs, load ${load1().toFixed(2)}`);
    try {
      results.push(
        await watchCrowd(admin, adminUrl, { ...serverSettings, maxConcurrentRuns: Math.max(settings.maxConcurrentRuns, 200) }, {
          streams: options.crowdStreams,
          wire,
          runs: options.crowdStreams,
          perConnection: 500,
          idleSeconds: options.idleSeconds,
          change: "batch",
          cancellers: 100,
          chunkSize: 200,
          signal,
          log,
        }),
      );
    } catch (error) {
      failures.push(`crowd ${wire}: ${(error as Error).message}`);
    }
  }
  return results;
}

function cairnVersion(): { version: string; commit: string } {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const { version } = JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { version: string };
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: root, encoding: "utf8" }).trim();
    if (dirty) commit += "+changes";
  } catch {
    // not a git checkout
  }
  return { version, commit };
}

process.exitCode = await main(process.argv.slice(2));
