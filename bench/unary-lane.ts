/**
 * Server CPU per unary call, with the unary fast lane on and off
 * (`CAIRN_UNARY_LANE`, see server/http/unary-lane.ts), through one wire:
 *
 *   npx tsx bench/unary-lane.ts [--wire sdk|grpc|grpc-web|connect-json] [--calls 5000] [--warmup 2000]
 *                               [--rounds 2] [--concurrency 16] [--http 2|1.1]
 *
 * Wires: `sdk` (the SDK, Connect protobuf, over `--http`), `grpc` (@grpc/grpc-js with @grpc/proto-loader on
 * proto/, not our generated code: gRPC over HTTP/2), `grpc-web` (connect-web's gRPC-Web transport over fetch,
 * HTTP/1.1) and `connect-json` (Connect JSON over plain fetch, HTTP/1.1).
 *
 * Two server processes on one throwaway database, one per setting, started as
 * `npm run bench` starts them. The machine's cores are shared, so wall-clock
 * throughput is noise: what is compared is the server's own CPU time
 * (utime + stime of /proc/<pid>/stat, cross-checked with process.cpuUsage()
 * through the bench probe) divided by the calls it answered, measured in
 * interleaved rounds (on, off, on, off…) after a warm-up. Sequential latency
 * (one call at a time) is reported as p50 and p90 of what the client saw.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { fileURLToPath } from "node:url";
import { WorkflowService } from "../sdk/gen/cairn/v1/workflow_pb.js";
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
    wire: { type: "string", default: "sdk" },
  },
});
const wire = values.wire as "sdk" | "grpc" | "grpc-web" | "connect-json";
if (!["sdk", "grpc", "grpc-web", "connect-json"].includes(wire)) throw new Error(`--wire: sdk, grpc, grpc-web or connect-json, not ${wire}`);
const calls = Number(values.calls);
const warmup = Number(values.warmup);
const rounds = Number(values.rounds);
const concurrency = Number(values.concurrency);
const sequentialCalls = Number(values.sequential);
const http = values.http as HttpVersion;

/** The three calls the scenarios make, as one wire makes them. */
interface Caller {
  listWorkflows(): Promise<unknown>;
  getRun(runId: string): Promise<unknown>;
  /** CreateRun (eager start) then AwaitRun; resolves with the final status name. */
  createAndAwait(): Promise<string>;
  createRunId(): Promise<string>;
  close(): void;
}

function sdkCaller(client: CairnClient): Caller {
  const emptyInput = { kind: { case: "structValue" as const, value: { fields: {} } } };
  return {
    listWorkflows: () => client.raw.workflows.listWorkflows({}),
    getRun: (runId) => client.raw.workflows.getRun({ runId }),
    async createAndAwait() {
      const { run } = await client.raw.workflows.createRun({ workflowName: "bench_steps", input: emptyInput, eagerStart: true });
      const done = await client.raw.workflows.awaitRun({ runId: run?.runId ?? "" });
      return done.run?.status === RunStatus.COMPLETED ? "RUN_STATUS_COMPLETED" : String(done.run?.status);
    },
    async createRunId() {
      return (await client.raw.workflows.createRun({ workflowName: "bench_steps", input: emptyInput })).run?.runId ?? "";
    },
    close: () => undefined,
  };
}

/** grpc-js with proto-loader on proto/: an independent gRPC client, as a service in another stack would call us. */
function grpcCaller(url: string): Caller {
  const definition = protoLoader.loadSync("cairn/v1/workflow.proto", {
    includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const Service = ((grpc.loadPackageDefinition(definition).cairn as grpc.GrpcObject).v1 as grpc.GrpcObject).WorkflowService as grpc.ServiceClientConstructor;
  const client = new Service(new URL(url).host, grpc.credentials.createInsecure());
  const call = <T>(method: string, request: object) =>
    new Promise<T>((resolve, reject) => (client[method] as (r: object, cb: (e: Error | null, v: T) => void) => void).call(client, request, (e, v) => (e ? reject(e) : resolve(v))));
  const input = { structValue: { fields: {} } };
  return {
    listWorkflows: () => call("ListWorkflows", {}),
    getRun: (runId) => call("GetRun", { run_id: runId }),
    async createAndAwait() {
      const created = await call<{ run: { run_id: string } }>("CreateRun", { workflow_name: "bench_steps", input, eager_start: true });
      return (await call<{ run: { status: string } }>("AwaitRun", { run_id: created.run.run_id })).run.status;
    },
    async createRunId() {
      return (await call<{ run: { run_id: string } }>("CreateRun", { workflow_name: "bench_steps", input })).run.run_id;
    },
    close: () => client.close(),
  };
}

/** Connect JSON over plain fetch (HTTP/1.1): what a browser or a script without our SDK sends. */
function connectJsonCaller(url: string): Caller {
  const call = async <T>(method: string, body: unknown): Promise<T> => {
    const response = await fetch(`${url}/cairn.v1.WorkflowService/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const json = (await response.json()) as T;
    if (!response.ok) throw new Error(`${method}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    listWorkflows: () => call("ListWorkflows", {}),
    getRun: (runId) => call("GetRun", { runId }),
    async createAndAwait() {
      const created = await call<{ run: { runId: string } }>("CreateRun", { workflowName: "bench_steps", input: {}, eagerStart: true });
      return (await call<{ run: { status: string } }>("AwaitRun", { runId: created.run.runId })).run.status;
    },
    async createRunId() {
      return (await call<{ run: { runId: string } }>("CreateRun", { workflowName: "bench_steps", input: {} })).run.runId;
    },
    close: () => undefined,
  };
}

function callerFor(url: string): Caller {
  if (wire === "grpc") return grpcCaller(url);
  if (wire === "connect-json") return connectJsonCaller(url);
  if (wire === "grpc-web") return sdkCaller({ raw: { workflows: createClient(WorkflowService, createGrpcWebTransport({ baseUrl: url })) } } as unknown as CairnClient);
  return sdkCaller(sdkClient(url, http));
}

type Scenario = { name: string; call: (client: Caller, runId: string) => Promise<unknown> };

const scenarios: Scenario[] = ([
  { name: "ListWorkflows", call: (client) => client.listWorkflows() },
  { name: "GetRun", call: (client, runId) => client.getRun(runId) },
  {
    name: "CreateRun(eager)+AwaitRun",
    call: async (client) => {
      const status = await client.createAndAwait();
      if (status !== "RUN_STATUS_COMPLETED") throw new Error(`run ended ${status}`);
    },
  },
] as Scenario[]).filter((s) => !values.only || s.name.startsWith(values.only));

async function drive(client: Caller, scenario: Scenario, runId: string, total: number, loops: number): Promise<void> {
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
    const clients = Object.fromEntries(Object.entries(servers).map(([lane, server]) => [lane, callerFor(server.url)]));
    const runIds: Record<string, string> = {};
    for (const [lane, client] of Object.entries(clients)) runIds[lane] = await client.createRunId();
    const over = wire === "sdk" ? `http ${http}` : wire === "grpc" ? "HTTP/2" : "HTTP/1.1";
    console.log(`wire ${wire} (${over}), ${concurrency} loops, ${calls} calls per round after ${warmup} warm-up calls, ${rounds} rounds per setting`);
    for (const scenario of scenarios) {
      const perCall: Record<string, { proc: number[]; probe: number[] }> = { on: { proc: [], probe: [] }, off: { proc: [], probe: [] } };
      for (const lane of ["on", "off"]) await drive(clients[lane] as Caller, scenario, runIds[lane] ?? "", warmup, concurrency);
      for (let round = 0; round < rounds; round++) {
        for (const lane of ["on", "off"]) {
          const server = servers[lane] as ServerProcess;
          const before = await cpuOf(server);
          await drive(clients[lane] as Caller, scenario, runIds[lane] ?? "", calls, concurrency);
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
          await scenario.call(clients[lane] as Caller, runIds[lane] ?? "");
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
    for (const client of Object.values(clients)) client.close();
  } finally {
    for (const server of Object.values(servers)) await server.close();
    await admin.dropDatabase(database);
    await admin.close();
  }
}

await main();
