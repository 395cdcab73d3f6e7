/**
 * The crowd of watch streams alone, with every knob (bench/crowd.ts has the method; `npm run bench` runs it with
 * the defaults as its crowd section):
 *
 *   npx tsx --conditions=@cairnjs/source bench/watch-crowd.ts [--streams 10000] [--wire sdk|grpc-js] [--per-connection 500] [--idle-seconds 10]
 *     [--runs N] [--change batch|cancel] [--cancellers 100] [--chunk-size 200]
 */
import { parseArgs } from "node:util";
import { watchCrowd } from "./crowd.js";
import { formatCrowdBlock } from "./crowd-report.js";
import { Admin, findServer } from "./database.js";

const { values } = parseArgs({
  options: {
    streams: { type: "string", default: "10000" },
    /** The client holding the streams: the SDK, or grpc-js with proto-loader. */
    wire: { type: "string", default: "sdk" },
    "per-connection": { type: "string", default: "500" },
    "idle-seconds": { type: "string", default: "10" },
    /** Fewer runs than streams: the streams share runs (and so each process's reader of a run). */
    runs: { type: "string" },
    /** How every run is changed: one StartBatch (`batch`) or a CancelRun per run (`cancel`). */
    change: { type: "string", default: "batch" },
    /** With `--change cancel`, CancelRun calls in flight: their commits queue (each notifying commit holds a cluster-wide lock through its WAL flush). */
    cancellers: { type: "string", default: "100" },
    /** With `--change batch`: CAIRN_BATCH_CHUNK_SIZE, runs per transaction (the server's default is 200). */
    "chunk-size": { type: "string", default: "200" },
  },
});
const change = values.change;
if (change !== "batch" && change !== "cancel") throw new Error(`--change must be batch or cancel, not ${change}`);
const streams = Number(values.streams);
const wire = values.wire;
if (wire !== "sdk" && wire !== "grpc-js") throw new Error(`--wire must be sdk or grpc-js, not ${wire}`);
const log = (message: string) => console.log(`[watch-crowd ${new Date().toISOString().slice(11, 19)}] ${message}`);

const server = await findServer();
const admin = await Admin.connect(server.adminUrl);
try {
  const result = await watchCrowd(
    admin,
    server.adminUrl,
    { poolSize: 20, maxConcurrentRuns: 200, logLevel: "warn" },
    {
      streams,
      wire,
      perConnection: Number(values["per-connection"]),
      idleSeconds: Number(values["idle-seconds"]),
      runs: Number(values.runs ?? streams),
      change,
      cancellers: Number(values.cancellers),
      chunkSize: Number(values["chunk-size"]),
      log,
    },
  );
  console.log("");
  for (const line of formatCrowdBlock(result)) console.log(line);
} finally {
  await admin.close();
  await server.stop();
}
