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
}

export const usage = `usage: npm run bench -- [--runs N] [--steps S] [--concurrency C] [--poll-ms MS]
                          [--pgbench-seconds T] [--skip-pgbench]

  --runs             runs to create (default 500)
  --steps            sequential ctx.step calls per run (default 10)
  --concurrency      runs in flight at once; also pgbench's client count (default 64)
  --poll-ms          delay between GetRun polls of one run (default 2)
  --pgbench-seconds  duration of the pgbench baseline (default 10)
  --skip-pgbench     do not run the baseline

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else postgres://root@127.0.0.1:5432/test
if reachable, else an embedded cluster. Other Cairn variables (e.g. DATABASE_POOL_SIZE) pass through.`;

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
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  return {
    runs: integerFlag("--runs", values.runs),
    steps: integerFlag("--steps", values.steps),
    concurrency: integerFlag("--concurrency", values.concurrency),
    pollMs: integerFlag("--poll-ms", values["poll-ms"], 0),
    pgbenchSeconds: integerFlag("--pgbench-seconds", values["pgbench-seconds"]),
    skipPgbench: values["skip-pgbench"],
  };
}

function integerFlag(flag: string, raw: string, min = 1): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return value;
}
