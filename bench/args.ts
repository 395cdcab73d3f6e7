/** Command-line flags of `npm run bench`. */
import { parseArgs } from "node:util";

export interface BenchOptions {
  runs: number;
  steps: number;
  concurrency: number;
  /** Delay between two GetRun polls of one run. */
  pollMs: number;
  pgbenchSeconds: number;
  skipPgbench: boolean;
  /** No step-throughput workload (and so no pgbench comparison). */
  skipSteps: boolean;
  /** Sequential runs of the event → resume latency workload (0: skipped). */
  eventRuns: number;
  /** GetRun poll interval while waiting for a woken run to complete. */
  eventPollMs: number;
  /** Runs of the timer lateness workload (0: skipped). */
  timerRuns: number;
  /** How long each of them sleeps. */
  timerMs: number;
  /** Runs parked on distinct event keys for the memory workload (0: skipped). */
  parkedRuns: number;
  /** CreateRun / SendEvent calls in flight for the timer and parked workloads. */
  waitConcurrency: number;
  /** Children of the one bench_fan_out run (0: skipped). */
  children: number;
  /** Sequential bench_agent runs through a real worker process (0: skipped). */
  agentTurns: number;
  /** GetRun poll interval of the composition workloads. */
  compositionPollMs: number;
  /** Sequential steps of bench_watched (0: watch workload skipped). */
  watchSteps: number;
  /** How long each of those steps sleeps. */
  watchStepMs: number;
  /** Watchers of the crowded watch measurement (a single watcher is always measured too). */
  watchers: number;
}

export const usage = `usage: npm run bench -- [--runs N] [--steps S] [--concurrency C] [--poll-ms MS]
                          [--pgbench-seconds T] [--skip-pgbench] [--skip-steps]
                          [--skip-waits] [--event-runs N] [--event-poll-ms MS]
                          [--timer-runs N] [--timer-ms MS] [--parked-runs N] [--wait-concurrency C]
                          [--skip-composition] [--children N] [--agent-turns N] [--composition-poll-ms MS]
                          [--skip-watch] [--watch-steps S] [--watch-step-ms MS] [--watchers W]

Step throughput (bench_steps):
  --runs             runs to create (default 500)
  --steps            sequential ctx.step calls per run (default 10)
  --concurrency      runs in flight at once; also pgbench's client count (default 64)
  --poll-ms          delay between GetRun polls of one run (default 2)
  --pgbench-seconds  duration of the pgbench baseline (default 10)
  --skip-pgbench     do not run the baseline
  --skip-steps       skip this workload (and the baseline)

Durable waits (bench_event_wait, bench_sleep):
  --skip-waits       skip all three wait workloads
  --event-runs       sequential runs for event -> resume latency (default 200; 0 skips)
  --event-poll-ms    GetRun poll interval after SendEvent (default 1)
  --timer-runs       runs for timer lateness (default 1000; 0 skips)
  --timer-ms         how long each of them sleeps (default 2000)
  --parked-runs      runs parked on distinct event keys for memory per parked run (default 10000; 0 skips)
  --wait-concurrency CreateRun / SendEvent calls in flight for timers and parked runs (default 64)

Composition (bench_fan_out + bench_child, bench_agent + a worker process):
  --skip-composition    skip both composition workloads
  --children            children of the one bench_fan_out run (default 100; 0 skips)
  --agent-turns         sequential bench_agent runs, one turn each (default 200; 0 skips)
  --composition-poll-ms GetRun poll interval while waiting for those runs (default 1)

Watch delay (bench_watched, WatchRun):
  --skip-watch       skip the watch workload
  --watch-steps      sequential steps of the watched run (default 50; 0 skips)
  --watch-step-ms    how long each step sleeps (default 20)
  --watchers         concurrent watchers of the crowded measurement (default 200; 1 is always measured)

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else postgres://root@127.0.0.1:5432/test
if reachable, else an embedded cluster. Other Cairn variables (e.g. DATABASE_POOL_SIZE,
default 20 here) pass through.`;

export function parseOptions(argv: string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      runs: { type: "string", default: "500" },
      steps: { type: "string", default: "10" },
      concurrency: { type: "string", default: "64" },
      "poll-ms": { type: "string", default: "2" },
      "pgbench-seconds": { type: "string", default: "10" },
      "skip-pgbench": { type: "boolean", default: false },
      "skip-steps": { type: "boolean", default: false },
      "skip-waits": { type: "boolean", default: false },
      "event-runs": { type: "string", default: "200" },
      "event-poll-ms": { type: "string", default: "1" },
      "timer-runs": { type: "string", default: "1000" },
      "timer-ms": { type: "string", default: "2000" },
      "parked-runs": { type: "string", default: "10000" },
      "wait-concurrency": { type: "string", default: "64" },
      "skip-composition": { type: "boolean", default: false },
      children: { type: "string", default: "100" },
      "agent-turns": { type: "string", default: "200" },
      "composition-poll-ms": { type: "string", default: "1" },
      "skip-watch": { type: "boolean", default: false },
      "watch-steps": { type: "string", default: "50" },
      "watch-step-ms": { type: "string", default: "20" },
      watchers: { type: "string", default: "200" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const skipWaits = values["skip-waits"];
  const skipComposition = values["skip-composition"];
  return {
    runs: integerFlag("--runs", values.runs),
    steps: integerFlag("--steps", values.steps),
    concurrency: integerFlag("--concurrency", values.concurrency),
    pollMs: integerFlag("--poll-ms", values["poll-ms"], 0),
    pgbenchSeconds: integerFlag("--pgbench-seconds", values["pgbench-seconds"]),
    skipPgbench: values["skip-pgbench"] || values["skip-steps"],
    skipSteps: values["skip-steps"],
    eventRuns: skipWaits ? 0 : integerFlag("--event-runs", values["event-runs"], 0),
    eventPollMs: integerFlag("--event-poll-ms", values["event-poll-ms"], 0),
    timerRuns: skipWaits ? 0 : integerFlag("--timer-runs", values["timer-runs"], 0),
    timerMs: integerFlag("--timer-ms", values["timer-ms"], 0),
    parkedRuns: skipWaits ? 0 : integerFlag("--parked-runs", values["parked-runs"], 0),
    waitConcurrency: integerFlag("--wait-concurrency", values["wait-concurrency"]),
    children: skipComposition ? 0 : integerFlag("--children", values.children, 0),
    agentTurns: skipComposition ? 0 : integerFlag("--agent-turns", values["agent-turns"], 0),
    compositionPollMs: integerFlag("--composition-poll-ms", values["composition-poll-ms"], 0),
    watchSteps: values["skip-watch"] ? 0 : integerFlag("--watch-steps", values["watch-steps"], 0),
    watchStepMs: integerFlag("--watch-step-ms", values["watch-step-ms"], 0),
    watchers: integerFlag("--watchers", values.watchers),
  };
}

function integerFlag(flag: string, raw: string, min = 1): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return value;
}
