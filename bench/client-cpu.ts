/**
 * `npm run bench:client`: what one call costs the client, per SDK wire (bench/client.ts), against
 * a Cairn server process on a fresh database. CPU time rather than throughput: the machine's
 * cores are shared with the server, PostgreSQL and whatever else runs, so wall-clock figures are
 * noisy while CPU time per call is not (much).
 *
 * For each workload (ListWorkflows; GetRun of a finished run; CreateRun(eager_start) +
 * waitForResult, i.e. AwaitRun, of a 0-step run) and each wire: warm-up calls, then rounds of
 * `--calls` calls from `--concurrency` loops, the wires taking turns (A B A B ...) so that load
 * from elsewhere hits them alike. Per round: this process's CPU (process.cpuUsage()) and the
 * server's (/proc/<pid>/stat utime+stime, 10 ms ticks) divided by the calls. Then one call at a
 * time (`--sequential` per wire, in turns): latency p50 and p99.
 *
 *   npm run bench:client                                   # wires 2-connect and 2
 *   npm run bench:client -- --wires 1.1,2-connect,2 --calls 10000
 */
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import type { CairnClient } from "../sdk/client.js";
import { type HttpVersion, httpVersions, describeHttp, sdkClient } from "./client.js";
import { Admin, findServer, redact, urlForDatabase } from "./database.js";
import { ServerProcess } from "./server.js";
import { mean, percentile } from "./stats.js";
import { WORKFLOW_NAME as STEPS_WORKFLOW } from "./workflows/ten-steps.js";

interface Options {
  wires: HttpVersion[];
  calls: number;
  warmup: number;
  concurrency: number;
  rounds: number;
  sequential: number;
}

type Workload = { name: string; call: (client: CairnClient) => Promise<unknown> };

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      wires: { type: "string", default: "2-connect,2" },
      calls: { type: "string", default: "5000" },
      warmup: { type: "string", default: "2000" },
      concurrency: { type: "string", default: "16" },
      rounds: { type: "string", default: "2" },
      sequential: { type: "string", default: "1000" },
    },
  });
  const wires = values.wires.split(",").map((wire) => wire.trim());
  for (const wire of wires) if (!(httpVersions as readonly string[]).includes(wire)) throw new Error(`--wires: unknown wire ${JSON.stringify(wire)}; use ${httpVersions.join(", ")}`);
  const int = (flag: string, raw: string, min: number) => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) throw new Error(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
    return value;
  };
  return {
    wires: wires as HttpVersion[],
    calls: int("calls", values.calls, 1),
    warmup: int("warmup", values.warmup, 0),
    concurrency: int("concurrency", values.concurrency, 1),
    rounds: int("rounds", values.rounds, 1),
    sequential: int("sequential", values.sequential, 0),
  };
}

const started = performance.now();
function log(message: string): void {
  console.error(`[client-cpu ${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}`);
}

/** `calls` calls from `concurrency` loops. */
async function drive(client: CairnClient, workload: Workload, calls: number, concurrency: number): Promise<void> {
  let next = 0;
  const loop = async () => {
    while (next < calls) {
      next++;
      await workload.call(client);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, loop));
}

interface Round {
  clientUs: number;
  serverUs: number;
  callsPerSec: number;
}

async function measureRound(client: CairnClient, server: ServerProcess, workload: Workload, options: Options): Promise<Round> {
  const serverBefore = await server.stat();
  const cpuBefore = process.cpuUsage();
  const begin = performance.now();
  await drive(client, workload, options.calls, options.concurrency);
  const wallMs = performance.now() - begin;
  const cpu = process.cpuUsage(cpuBefore);
  const serverAfter = await server.stat();
  return {
    clientUs: (cpu.user + cpu.system) / options.calls,
    serverUs: ((serverAfter.cpuSeconds - serverBefore.cpuSeconds) * 1e6) / options.calls,
    callsPerSec: options.calls / (wallMs / 1000),
  };
}

async function sequentialLatency(client: CairnClient, workload: Workload, calls: number): Promise<{ latenciesMs: number[]; clientUs: number }> {
  const latencies: number[] = [];
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await workload.call(client);
    latencies.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpuBefore);
  return { latenciesMs: latencies.sort((a, b) => a - b), clientUs: (cpu.user + cpu.system) / calls };
}

const fixed = (value: number, digits = 0) => value.toFixed(digits);

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  const pg = await findServer();
  const admin = await Admin.connect(pg.adminUrl);
  const database = await admin.createDatabase();
  log(`database ${database} on ${redact(pg.adminUrl)} (${pg.source})`);
  let server: ServerProcess | undefined;
  try {
    server = await ServerProcess.start("server", { databaseUrl: urlForDatabase(pg.adminUrl, database), poolSize: 20, maxConcurrentRuns: 100, logLevel: process.env.BENCH_LOG_LEVEL || "warn" }, log);
    log(`server pid ${server.pid} at ${server.url}`);
    const clients = new Map(options.wires.map((wire) => [wire, sdkClient(server!.url, wire)] as const));
    const anyClient = clients.values().next().value as CairnClient;
    const finished = await anyClient.createRun(STEPS_WORKFLOW, { steps: 1 }, { eagerStart: true });
    await finished.waitForResult({ timeoutMs: 30_000 });

    const workloads: Workload[] = [
      { name: "ListWorkflows", call: (client) => client.listWorkflows() },
      { name: "GetRun", call: (client) => client.getRun(finished.runId) },
      {
        name: "CreateRun(eager) + AwaitRun",
        call: async (client) => (await client.createRun(STEPS_WORKFLOW, { steps: 0 }, { eagerStart: true })).waitForResult({ timeoutMs: 30_000 }),
      },
    ];

    const lines: string[] = [];
    for (const workload of workloads) {
      for (const [wire, client] of clients) {
        log(`${workload.name}: ${options.warmup} warm-up calls over ${wire}`);
        await drive(client, workload, options.warmup, options.concurrency);
      }
      const rounds = new Map<HttpVersion, Round[]>(options.wires.map((wire) => [wire, []]));
      for (let round = 1; round <= options.rounds; round++) {
        // A B, then B A: neither wire always goes first.
        const order = round % 2 === 1 ? options.wires : [...options.wires].reverse();
        for (const wire of order) {
          const result = await measureRound(clients.get(wire)!, server, workload, options);
          rounds.get(wire)!.push(result);
          log(`${workload.name} over ${wire}, round ${round}: client ${fixed(result.clientUs)} µs/call, server ${fixed(result.serverUs)} µs/call, ${fixed(result.callsPerSec)} calls/s`);
        }
      }
      const sequential = new Map<HttpVersion, { latenciesMs: number[]; clientUs: number }[]>(options.wires.map((wire) => [wire, []]));
      if (options.sequential > 0) {
        // In turns too, a quarter of the calls at a time.
        const chunk = Math.max(1, Math.ceil(options.sequential / 4));
        for (let done = 0; done < options.sequential; done += chunk) {
          for (const wire of options.wires) sequential.get(wire)!.push(await sequentialLatency(clients.get(wire)!, workload, Math.min(chunk, options.sequential - done)));
        }
      }
      lines.push(`${workload.name} (${options.calls} calls × ${options.rounds} rounds, ${options.concurrency} loops; then ${options.sequential} one at a time)`);
      for (const wire of options.wires) {
        const measured = rounds.get(wire)!;
        const seq = sequential.get(wire)!;
        const latencies = seq.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
        const seqCpu = seq.length ? mean(seq.map((s) => s.clientUs)) : Number.NaN;
        lines.push(
          `  ${wire.padEnd(10)} client ${measured.map((r) => fixed(r.clientUs)).join(" / ")} µs/call (mean ${fixed(mean(measured.map((r) => r.clientUs)))}); ` +
            `server ${fixed(mean(measured.map((r) => r.serverUs)))} µs/call; ${fixed(mean(measured.map((r) => r.callsPerSec)))} calls/s; ` +
            `sequential p50 ${fixed(percentile(latencies, 50) * 1000)} µs, p99 ${fixed(percentile(latencies, 99) * 1000)} µs, client ${fixed(seqCpu)} µs/call`,
        );
      }
    }
    console.log(`\nClient CPU per call (${options.wires.map((wire) => `${wire}: ${describeHttp(wire)}`).join("; ")})\n`);
    console.log(lines.join("\n"));
    return 0;
  } finally {
    await server?.close();
    await admin.dropDatabase(database);
    await admin.close();
    await pg.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
