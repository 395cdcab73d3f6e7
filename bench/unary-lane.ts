/**
 * Server CPU per unary call, with the unary fast lane on and off
 * (`CAIRN_UNARY_LANE`, see server/http/unary-lane.ts).
 *
 *   npx tsx bench/unary-lane.ts [--calls 5000] [--warmup 2000] [--rounds 2] [--concurrency 16] [--http 2|1.1]
 *
 * Two server processes on one throwaway database, one per setting, started as
 * `npm run bench` starts them. The machine's cores are shared, so wall-clock
 * throughput is noise: what is compared is the server's own CPU time
 * (utime + stime of /proc/<pid>/stat, cross-checked with process.cpuUsage()
 * through the bench probe) divided by the calls it answered, measured in
 * interleaved rounds (on, off, on, off…) after a warm-up. Sequential latency
 * (one call at a time) is reported as p50 and p90 of what the client saw.
 */
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import { Admin, findServer, urlForDatabase } from "./database.js";
import { type HttpVersion, sdkClient } from "./client.js";
import { ServerProcess } from "./server.js";
import type { CairnClient } from "../sdk/client.js";

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "5000" },
    warmup: { type: "string", default: "2000" },
    rounds: { type: "string", default: "2" },
    concurrency: { type: "string", default: "16" },
    sequential: { type: "string", default: "1000" },
    http: { type: "string", default: "2" },
    only: { type: "string" },
  },
});
const calls = Number(values.calls);
const warmup = Number(values.warmup);
const rounds = Number(values.rounds);
const concurrency = Number(values.concurrency);
const sequentialCalls = Number(values.sequential);
const http = values.http as HttpVersion;

type Scenario = { name: string; call: (client: CairnClient, runId: string) => Promise<unknown> };

const scenarios: Scenario[] = ([
  { name: "ListWorkflows", call: (client) => client.raw.workflows.listWorkflows({}) },
  { name: "GetRun", call: (client, runId) => client.raw.workflows.getRun({ runId }) },
  {
    name: "CreateRun(eager)+AwaitRun",
    call: async (client) => {
      const { run } = await client.raw.workflows.createRun({ workflowName: "bench_steps", input: { kind: { case: "structValue", value: { fields: {} } } }, eagerStart: true });
      const done = await client.raw.workflows.awaitRun({ runId: run?.runId ?? "" });
      if (done.run?.status !== RunStatus.COMPLETED) throw new Error(`run ended ${done.run?.status}`);
    },
  },
] as Scenario[]).filter((s) => !values.only || s.name.startsWith(values.only));

async function drive(client: CairnClient, scenario: Scenario, runId: string, total: number, loops: number): Promise<void> {
  let issued = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (issued < total) {
        issued++;
        await scenario.call(client, runId);
      }
    }),
  );
}

async function cpuOf(server: ServerProcess): Promise<{ proc: number; probe: number }> {
  const [stat, probe] = await Promise.all([server.stat(), server.probe(false)]);
  return { proc: stat.cpuSeconds * 1e6, probe: probe.cpuMicros };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const pg = await findServer();
  const admin = await Admin.connect(pg.adminUrl);
  const database = await admin.createDatabase();
  const databaseUrl = urlForDatabase(pg.adminUrl, database);
  const settings = { databaseUrl, poolSize: 20, maxConcurrentRuns: 200, logLevel: "warn" };
  const servers: Record<string, ServerProcess> = {};
  try {
    for (const lane of ["on", "off"]) {
      process.env.CAIRN_UNARY_LANE = lane;
      servers[lane] = await ServerProcess.start(`lane ${lane}`, settings, (m) => console.log(m));
    }
    const clients = Object.fromEntries(Object.entries(servers).map(([lane, server]) => [lane, sdkClient(server.url, http)]));
    const runIds: Record<string, string> = {};
    for (const [lane, client] of Object.entries(clients)) {
      const { run } = await client.raw.workflows.createRun({ workflowName: "bench_steps", input: { kind: { case: "structValue", value: { fields: {} } } } });
      runIds[lane] = run?.runId ?? "";
    }
    console.log(`http ${http}, ${concurrency} loops, ${calls} calls per round after ${warmup} warm-up calls, ${rounds} rounds per setting`);
    for (const scenario of scenarios) {
      const perCall: Record<string, { proc: number[]; probe: number[] }> = { on: { proc: [], probe: [] }, off: { proc: [], probe: [] } };
      for (const lane of ["on", "off"]) await drive(clients[lane] as CairnClient, scenario, runIds[lane] ?? "", warmup, concurrency);
      for (let round = 0; round < rounds; round++) {
        for (const lane of ["on", "off"]) {
          const server = servers[lane] as ServerProcess;
          const before = await cpuOf(server);
          await drive(clients[lane] as CairnClient, scenario, runIds[lane] ?? "", calls, concurrency);
          const after = await cpuOf(server);
          perCall[lane]?.proc.push((after.proc - before.proc) / calls);
          perCall[lane]?.probe.push((after.probe - before.probe) / calls);
        }
      }
      const latency: Record<string, string> = {};
      for (const lane of ["on", "off"]) {
        const times: number[] = [];
        for (let i = 0; i < sequentialCalls; i++) {
          const begin = performance.now();
          await scenario.call(clients[lane] as CairnClient, runIds[lane] ?? "");
          times.push((performance.now() - begin) * 1000);
        }
        times.sort((a, b) => a - b);
        latency[lane] = `p50 ${percentile(times, 50).toFixed(0)} µs, p90 ${percentile(times, 90).toFixed(0)} µs`;
      }
      for (const lane of ["on", "off"]) {
        const figures = perCall[lane] as { proc: number[]; probe: number[] };
        const show = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" / ");
        console.log(`${scenario.name.padEnd(26)} lane ${lane.padEnd(3)}  server CPU µs/call: /proc ${show(figures.proc)}; cpuUsage ${show(figures.probe)}; sequential ${latency[lane]}`);
      }
    }
  } finally {
    for (const server of Object.values(servers)) await server.close();
    await admin.dropDatabase(database);
    await admin.close();
  }
}

await main();
