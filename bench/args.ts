/** Command-line flags of `npm run bench`. */
import { parseArgs } from "node:util";
import type { CrowdWire } from "./crowd.js";
import { type HttpVersion, httpVersions } from "./client.js";
import { type Observation, observations, type WireName, wireNames } from "./wire.js";

export interface BenchOptions {
  quick: boolean;
  /** The SDK's wire for every workload; "both" measures W1 on one server with each and uses the faster for the rest. */
  http: HttpVersion | "both";
  /** DATABASE_POOL_SIZE of every server process. */
  poolSize: number;

  pgbenchSeconds: number;
  /** pgbench client counts (1, 10 and the W1 concurrency). */
  pgbenchClients: number[];
  skipPgbench: boolean;

  /** W1 (0 runs: skipped). */
  runs: number;
  steps: number;
  concurrency: number;
  /** W1 through two server processes as well. */
  twoServers: boolean;
  /** Rounds of W1 (one server, then two, per round); the median round is reported. */
  w1Rounds: number;

  /** W2: sequential 1-step runs (0: skipped). */
  startRuns: number;
  /** W3: sequential event → completion runs (0: skipped). */
  eventRuns: number;

  /** W4 (0: skipped). */
  timerRuns: number;
  timerMs: number;
  /**
   * W4 runs before the measured ones, on the same server and (in the wire table) the same wire: a process's first
   * timers, and a wire's first burst of observers, are reported apart as the cold figures (0: none).
   */
  timerWarmup: number;
  /** CreateRun calls in flight for W4 and the parked runs. */
  waitConcurrency: number;

  /** Parked runs (0: skipped) and the idle window measured with them parked. */
  parkedRuns: number;
  idleSeconds: number;

  /** Replay: run lengths for per-step cost (empty: skipped), steps per length (repetitions = this ÷ length, 1 to 20), and the resumed run's steps (0: skipped). */
  replayLengths: number[];
  replayStepsPerLength: number;
  resumeSteps: number;

  /** The batch section: a cancel batch over this many parked runs (0: skipped). */
  batchRuns: number;
  /** The deploy-check section: `cairn deploy check` over this many parked runs (0: skipped). */
  deployCheckRuns: number;
  /** The schedules section: this many schedules (0: skipped) every scheduleEveryMs, measured over scheduleCycles cycles. */
  schedules: number;
  scheduleEveryMs: number;
  scheduleCycles: number;

  /** Extras: child fan-out, agent turns, watch delay (0: skipped). */
  children: number;
  agentTurns: number;
  compositionPollMs: number;
  watchSteps: number;
  watchStepMs: number;
  watchers: number;

  /** Run control: runs seeded for ListRuns by metadata (0: skipped), and calls per measured query. */
  runControlRuns: number;
  runControlCalls: number;
  /** ExplainRun latency: calls measured (0: skipped) and near-miss events stored for the explained run. */
  explainCalls: number;
  /** Flow control's cost: W1 rounds over bench_steps and bench_steps_keyed alternately (0: skipped). */
  flowControlRounds: number;
  explainNearMisses: number;

  /** The wire table: W1–W4 through these independent clients (empty: skipped), each with the end seen these ways. */
  wires: WireName[];
  observations: Observation[];
  /** Sizes of the wire table's W1 (runs), W2, W3 and W4 (0: that column skipped); steps, concurrency and timer-ms are shared. */
  wireRuns: number;
  wireStartRuns: number;
  /** W2 runs before the measured ones on each wire: the JIT's warm-up, reported apart as the cold figures (0: none). */
  wireStartWarmup: number;
  wireEventRuns: number;
  wireTimerRuns: number;

  /**
   * The price of workflow isolation: rounds (0: skipped) of W1, W2 and W3 on a server with the default workflow thread
   * pool and on one with CAIRN_WORKFLOW_THREADS=0, alternating; W1 runs (its own size, so --skip-w1 leaves it alone)
   * and the runs of each W2 and W3 series.
   */
  isolationRounds: number;
  /** Uncounted W1 rounds on each server before the measured ones: the JIT's warm-up, printed as the cold figures. */
  isolationWarmupRounds: number;
  isolationRuns: number;
  isolationLatencyRuns: number;
  /** The crowd of watch streams (bench/crowd.ts): streams on as many parked runs (0: skipped), once per client. */
  crowdStreams: number;
  crowdWires: CrowdWire[];
}

export const usage = `usage: npm run bench -- [--quick] [flags]

The scoreboard of issue 7: every figure is measured through the SDK against
Cairn server processes (node --import tsx server/main.ts) on a fresh database,
next to pgbench on the same PostgreSQL in the same run. See bench/README.md.

General:
  --quick               small sizes for a smoke run (~2 min); explicit flags still win
  --http V              the SDK's wire: 2 (h2c, the SDK's node:http2 transport), 2-connect (h2c,
                        the connect-node transport), 1.1 (the SDK's fetch transport, keep-alive
                        pool), or both (W1 on one server with 1.1 and 2; the faster is used for
                        everything else) (default both; quick 2)
  --pool-size N         DATABASE_POOL_SIZE of every server process (default 20)
  --pgbench-seconds T   duration of each pgbench baseline (default 10; quick 1)
  --skip-pgbench        no baselines (no ratios)

W1 throughput (bench_steps):
  --runs N              runs (default 1000; quick 100; 0 skips W1)
  --steps S             sequential steps per run (default 10)
  --concurrency C       runs in flight; also pgbench's largest client count (default 64)
  --skip-w1             same as --runs 0
  --skip-two-servers    W1 through one server process only
  --w1-rounds R         rounds of W1, one server then two servers in each; the median
                        round is the figure (default 3; quick 1)

Latency (one run at a time):
  --start-runs N        W2: 1-step runs, create → result (default 200; quick 20; 0 skips)
  --event-runs N        W3: event → completion (default 200; quick 20; 0 skips)
  --skip-latency        both of them

W4 timers (bench_sleep):
  --timer-runs N        runs (default 500; quick 50; 0 skips); 1000 gives the older variant
  --timer-ms MS         how long each sleeps (default 2000; quick 1000)
  --timer-warmup N      W4 runs before the measured ones, the same way (each wire of the wire table
                        too): a process's first timers fire on cold code, and a wire's first 500
                        observers open their connections; reported apart as the cold figures
                        (default 500; quick 0)
  --wait-concurrency C  creates in flight for timers and parked runs (default 64)
  --skip-timers         same as --timer-runs 0

Parked runs (memory and idle CPU):
  --parked-runs N       runs parked, half on events, half on 1-hour timers (default 100000; quick 500)
  --idle-seconds T      idle window measured with them parked (default 10; quick 2)
  --skip-parked         same as --parked-runs 0

Replay (bench_replay):
  --replay-steps LIST   run lengths for per-step cost (default 10,100,1000)
  --replay-budget N     steps per length; repetitions = N ÷ length, 1..20 (default 2000; quick 300)
  --resume-steps N      steps of the run resumed after a restart (default 1000; quick 300; 0 skips)
  --skip-replay         neither

Batch (StartBatch):
  --batch-runs N        a cancel batch over N runs parked on events; runs/s (default 10000; quick 500; 0 skips)
  --skip-batch          same as --batch-runs 0
  --deploy-check-runs N cairn deploy check (the CLI process) over N runs parked on events, against
                        bench/changed-workflows, where a tenth of them diverge; runs/s (default 10000;
                        quick 500; 0 skips)
  --skip-deploy-check   same as --deploy-check-runs 0
  --schedules N         fire lateness p50/p99 of N schedules every 10 s on three servers
                        (default 1000; quick 100; 0 skips)
  --schedule-cycles C   fire cycles measured (default 3; quick 1)
  --skip-schedules      same as --schedules 0

Extras (kept from the earlier bench; skipped by --quick unless given):
  --children N          children of one bench_fan_out run (default 100; 0 skips)
  --agent-turns N       sequential bench_agent runs through a worker process (default 200; 0 skips)
  --composition-poll-ms GetRun poll interval of those two (default 1)
  --watch-steps S       steps of the watched run (default 50; 0 skips)
  --watch-step-ms MS    how long each of them sleeps (default 20)
  --watchers W          watchers of the crowded watch measurement (default 200)
  --skip-extras         none of them

Run control (on a fresh server, after the parked runs):
  --run-control-runs N  ended runs seeded for ListRuns by metadata (default 100000; quick 5000; 0 skips)
  --run-control-calls N ListRuns calls per measured query (default 200; quick 50)
  --skip-run-control    same as --run-control-runs 0
ExplainRun (also with --quick):
  --explain-calls N     sequential ExplainRun calls on a waiting run (default 300; 0 skips)
  --explain-near-misses K  other-correlation events stored for it (default 5)
  --skip-explain        same as --explain-calls 0
  --flow-control-rounds N  W1 rounds without and with a concurrency key (limit 64), alternating (default 3)
  --skip-flow-control   same as --flow-control-rounds 0

Wires (issue 18; on a fresh server, after the SDK workloads; --steps, --concurrency, --timer-ms
and --wait-concurrency as above):
  --wires LIST          independent clients: grpc-js (@grpc/grpc-js + proto-loader on proto/),
                        fetch (Connect JSON over plain fetch, HTTP/1.1), sdk (default all three)
  --observe LIST        how each learns of a run's end: await (AwaitRun), watch (WatchRun)
                        (default await,watch); W4 holds one observer per run (500 at once)
  --wire-runs N         W1 runs per wire and observation (default 1000; quick 100; 0 skips)
  --wire-start-runs N   W2 runs (default 200; quick 20; 0 skips)
  --wire-start-warmup N W2 runs before those, on the same wire (the JIT's warm-up: a fresh path
                        takes ~2,000 runs to reach its steady CPU); reported apart as the cold
                        figures (default 2000; quick 0)
  --wire-event-runs N   W3 runs (default 200; quick 20; 0 skips)
  --wire-timer-runs N   W4 runs, each with its own observer (default 500; quick 50; 0 skips)
  --skip-wires          no wire table

The price of workflow isolation (two fresh databases, a server on each: T with the default
workflow thread pool, I with CAIRN_WORKFLOW_THREADS=0; alternating rounds; --steps and
--concurrency as above):
  --isolation-rounds R  rounds of W1, W2 and W3 on T and on I (default 6, so each goes first in
                        as many rounds; quick 1; 0 skips)
  --isolation-warmup-rounds W  uncounted W1 rounds on each before them, the JIT's warm-up
                        (default 2; quick 0)
  --isolation-runs N    W1 runs per server and round (default 4000; quick 100)
  --isolation-latency-runs N  W2 and W3 runs per server and round (default 100; quick 20)
  --skip-isolation      same as --isolation-rounds 0

A crowd of watch streams (issue 18; a fresh database and server; bench/crowd.ts, or
bench/watch-crowd.ts for every knob):
  --crowd-streams N     WatchRun streams, one per parked run, 500 per HTTP/2 connection; one
                        StartBatch then cancels every run (default 10000; quick 200; 0 skips)
  --crowd-wires LIST    the clients holding them, one crowd each: sdk (the SDK over HTTP/2),
                        grpc-js (@grpc/grpc-js + proto-loader) (default sdk,grpc-js; quick sdk)
  --skip-crowd          same as --crowd-streams 0

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else postgres://root@127.0.0.1:5432/test
if reachable, else an embedded cluster. A fresh bench_<random> database is created there and
dropped at the end. Other Cairn variables set in the environment pass through to the servers.`;

interface Defaults {
  schedules: number;
  scheduleCycles: number;
  runs: number;
  w1Rounds: number;
  pgbenchSeconds: number;
  startRuns: number;
  eventRuns: number;
  timerRuns: number;
  timerMs: number;
  parkedRuns: number;
  idleSeconds: number;
  replayBudget: number;
  resumeSteps: number;
  batchRuns: number;
  deployCheckRuns: number;
  extras: boolean;
  runControlRuns: number;
  runControlCalls: number;
  isolationRounds: number;
  isolationWarmupRounds: number;
  isolationRuns: number;
  isolationLatencyRuns: number;
  crowdStreams: number;
  wireStartWarmup: number;
  timerWarmup: number;
}

const full: Defaults = {
  runs: 1000,
  w1Rounds: 3,
  pgbenchSeconds: 10,
  startRuns: 200,
  wireStartWarmup: 2000,
  timerWarmup: 500,
  eventRuns: 200,
  timerRuns: 500,
  timerMs: 2000,
  parkedRuns: 100_000,
  idleSeconds: 10,
  replayBudget: 2000,
  resumeSteps: 1000,
  batchRuns: 10_000,
  deployCheckRuns: 10_000,
  schedules: 1000,
  scheduleCycles: 3,
  extras: true,
  runControlRuns: 100_000,
  runControlCalls: 200,
  isolationRounds: 6,
  isolationWarmupRounds: 2,
  isolationRuns: 4000,
  isolationLatencyRuns: 100,
  crowdStreams: 10_000,
};

const quick: Defaults = {
  runs: 100,
  w1Rounds: 1,
  pgbenchSeconds: 1,
  startRuns: 20,
  wireStartWarmup: 0,
  timerWarmup: 0,
  eventRuns: 20,
  timerRuns: 50,
  timerMs: 1000,
  parkedRuns: 500,
  idleSeconds: 2,
  replayBudget: 300,
  resumeSteps: 300,
  batchRuns: 500,
  deployCheckRuns: 500,
  schedules: 100,
  scheduleCycles: 1,
  extras: false,
  runControlRuns: 5000,
  runControlCalls: 50,
  isolationRounds: 1,
  isolationWarmupRounds: 0,
  isolationRuns: 100,
  isolationLatencyRuns: 20,
  crowdStreams: 200,
};

export function parseOptions(argv: string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      http: { type: "string" },
      "pool-size": { type: "string", default: "20" },
      "pgbench-seconds": { type: "string" },
      "skip-pgbench": { type: "boolean", default: false },
      runs: { type: "string" },
      steps: { type: "string", default: "10" },
      concurrency: { type: "string", default: "64" },
      "skip-w1": { type: "boolean", default: false },
      "skip-two-servers": { type: "boolean", default: false },
      "w1-rounds": { type: "string" },
      "start-runs": { type: "string" },
      "event-runs": { type: "string" },
      "skip-latency": { type: "boolean", default: false },
      "timer-runs": { type: "string" },
      "timer-warmup": { type: "string" },
      "timer-ms": { type: "string" },
      "wait-concurrency": { type: "string", default: "64" },
      "skip-timers": { type: "boolean", default: false },
      "parked-runs": { type: "string" },
      "idle-seconds": { type: "string" },
      "skip-parked": { type: "boolean", default: false },
      "replay-steps": { type: "string", default: "10,100,1000" },
      "replay-budget": { type: "string" },
      "resume-steps": { type: "string" },
      "skip-replay": { type: "boolean", default: false },
      "batch-runs": { type: "string" },
      "skip-batch": { type: "boolean", default: false },
      "deploy-check-runs": { type: "string" },
      "skip-deploy-check": { type: "boolean", default: false },
      schedules: { type: "string" },
      "schedule-cycles": { type: "string" },
      "skip-schedules": { type: "boolean", default: false },
      children: { type: "string" },
      "agent-turns": { type: "string" },
      "composition-poll-ms": { type: "string", default: "1" },
      "watch-steps": { type: "string" },
      "watch-step-ms": { type: "string", default: "20" },
      watchers: { type: "string", default: "200" },
      "skip-extras": { type: "boolean", default: false },
      "run-control-runs": { type: "string" },
      "run-control-calls": { type: "string" },
      "skip-run-control": { type: "boolean", default: false },
      "explain-calls": { type: "string" },
      "explain-near-misses": { type: "string", default: "5" },
      "skip-explain": { type: "boolean", default: false },
      "flow-control-rounds": { type: "string" },
      "skip-flow-control": { type: "boolean", default: false },
      wires: { type: "string", default: wireNames.join(",") },
      observe: { type: "string", default: observations.join(",") },
      "skip-wires": { type: "boolean", default: false },
      "wire-runs": { type: "string" },
      "wire-start-runs": { type: "string" },
      "wire-start-warmup": { type: "string" },
      "wire-event-runs": { type: "string" },
      "wire-timer-runs": { type: "string" },
      "isolation-rounds": { type: "string" },
      "isolation-warmup-rounds": { type: "string" },
      "isolation-runs": { type: "string" },
      "isolation-latency-runs": { type: "string" },
      "skip-isolation": { type: "boolean", default: false },
      "crowd-streams": { type: "string" },
      "crowd-wires": { type: "string" },
      "skip-crowd": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const d = values.quick ? quick : full;
  const int = (flag: string, raw: string | undefined, fallback: number, min = 0) => (raw === undefined ? fallback : integerFlag(flag, raw, min));
  // The full run measures both wires and keeps the faster; --quick uses HTTP/2, the faster so far.
  const http = values.http ?? (values.quick ? "2" : "both");
  if (http !== "both" && !isHttpVersion(http)) throw new Error(`--http must be ${httpVersions.join(", ")} or both, got ${JSON.stringify(http)}`);
  const concurrency = int("--concurrency", values.concurrency, 64, 1);
  const extras = !values["skip-extras"];
  // --quick skips the extras unless one of their sizes is given.
  const extra = (flag: string, raw: string | undefined, fallback: number) => (!extras ? 0 : raw !== undefined ? integerFlag(flag, raw, 0) : d.extras ? fallback : 0);
  const replaySkipped = values["skip-replay"];
  return {
    quick: values.quick,
    http,
    poolSize: int("--pool-size", values["pool-size"], 20, 1),
    pgbenchSeconds: int("--pgbench-seconds", values["pgbench-seconds"], d.pgbenchSeconds, 1),
    pgbenchClients: [...new Set([1, 10, concurrency])].sort((a, b) => a - b),
    skipPgbench: values["skip-pgbench"],
    runs: values["skip-w1"] ? 0 : int("--runs", values.runs, d.runs),
    steps: int("--steps", values.steps, 10, 1),
    concurrency,
    twoServers: !values["skip-two-servers"],
    w1Rounds: int("--w1-rounds", values["w1-rounds"], d.w1Rounds, 1),
    startRuns: values["skip-latency"] ? 0 : int("--start-runs", values["start-runs"], d.startRuns),
    eventRuns: values["skip-latency"] ? 0 : int("--event-runs", values["event-runs"], d.eventRuns),
    timerRuns: values["skip-timers"] ? 0 : int("--timer-runs", values["timer-runs"], d.timerRuns),
    timerMs: int("--timer-ms", values["timer-ms"], d.timerMs),
    timerWarmup: int("--timer-warmup", values["timer-warmup"], d.timerWarmup),
    waitConcurrency: int("--wait-concurrency", values["wait-concurrency"], 64, 1),
    parkedRuns: values["skip-parked"] ? 0 : int("--parked-runs", values["parked-runs"], d.parkedRuns),
    idleSeconds: int("--idle-seconds", values["idle-seconds"], d.idleSeconds, 1),
    replayLengths: replaySkipped ? [] : lengthList(values["replay-steps"]),
    replayStepsPerLength: int("--replay-budget", values["replay-budget"], d.replayBudget, 1),
    resumeSteps: replaySkipped ? 0 : int("--resume-steps", values["resume-steps"], d.resumeSteps),
    batchRuns: values["skip-batch"] ? 0 : int("--batch-runs", values["batch-runs"], d.batchRuns),
    deployCheckRuns: values["skip-deploy-check"] ? 0 : int("--deploy-check-runs", values["deploy-check-runs"], d.deployCheckRuns),
    schedules: values["skip-schedules"] ? 0 : int("--schedules", values.schedules, d.schedules),
    scheduleEveryMs: 10_000,
    scheduleCycles: int("--schedule-cycles", values["schedule-cycles"], d.scheduleCycles, 1),
    children: extra("--children", values.children, 100),
    agentTurns: extra("--agent-turns", values["agent-turns"], 200),
    compositionPollMs: int("--composition-poll-ms", values["composition-poll-ms"], 1),
    watchSteps: extra("--watch-steps", values["watch-steps"], 50),
    watchStepMs: int("--watch-step-ms", values["watch-step-ms"], 20),
    watchers: int("--watchers", values.watchers, 200, 1),
    runControlRuns: values["skip-run-control"] ? 0 : int("--run-control-runs", values["run-control-runs"], d.runControlRuns),
    runControlCalls: int("--run-control-calls", values["run-control-calls"], d.runControlCalls, 1),
    explainCalls: values["skip-explain"] ? 0 : int("--explain-calls", values["explain-calls"], 300),
    flowControlRounds: values["skip-flow-control"] ? 0 : int("--flow-control-rounds", values["flow-control-rounds"], 3),
    explainNearMisses: int("--explain-near-misses", values["explain-near-misses"], 5),
    wires: values["skip-wires"] ? [] : listFlag("--wires", values.wires, wireNames),
    observations: listFlag("--observe", values.observe, observations),
    wireRuns: int("--wire-runs", values["wire-runs"], d.runs),
    wireStartRuns: int("--wire-start-runs", values["wire-start-runs"], d.startRuns),
    wireStartWarmup: int("--wire-start-warmup", values["wire-start-warmup"], d.wireStartWarmup),
    wireEventRuns: int("--wire-event-runs", values["wire-event-runs"], d.eventRuns),
    wireTimerRuns: int("--wire-timer-runs", values["wire-timer-runs"], d.timerRuns),
    isolationRounds: values["skip-isolation"] ? 0 : int("--isolation-rounds", values["isolation-rounds"], d.isolationRounds),
    isolationWarmupRounds: int("--isolation-warmup-rounds", values["isolation-warmup-rounds"], d.isolationWarmupRounds),
    isolationRuns: int("--isolation-runs", values["isolation-runs"], d.isolationRuns, 1),
    isolationLatencyRuns: int("--isolation-latency-runs", values["isolation-latency-runs"], d.isolationLatencyRuns, 1),
    crowdStreams: values["skip-crowd"] ? 0 : int("--crowd-streams", values["crowd-streams"], d.crowdStreams),
    crowdWires: crowdWiresFlag(values["crowd-wires"] ?? (values.quick ? "sdk" : "sdk,grpc-js")),
  };
}

function isHttpVersion(value: string): value is HttpVersion {
  return (httpVersions as readonly string[]).includes(value);
}

function listFlag<T extends string>(flag: string, raw: string, allowed: readonly T[]): T[] {
  const items = raw.split(",").map((part) => part.trim()).filter((part) => part !== "");
  for (const item of items) if (!(allowed as readonly string[]).includes(item)) throw new Error(`${flag}: ${JSON.stringify(item)} is not one of ${allowed.join(", ")}`);
  return [...new Set(items as T[])];
}

function lengthList(raw: string): number[] {
  if (raw.trim() === "") return [];
  const lengths = raw.split(",").map((part) => integerFlag("--replay-steps", part.trim(), 2));
  return [...new Set(lengths)].sort((a, b) => a - b);
}

function crowdWiresFlag(raw: string): CrowdWire[] {
  const wires = raw.split(",").map((w) => w.trim()).filter((w) => w.length > 0);
  for (const wire of wires) if (wire !== "sdk" && wire !== "grpc-js") throw new Error(`--crowd-wires takes sdk and grpc-js, got ${JSON.stringify(wire)}`);
  if (wires.length === 0) throw new Error("--crowd-wires needs at least one of sdk, grpc-js");
  return wires as CrowdWire[];
}

function integerFlag(flag: string, raw: string, min: number): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return value;
}
