/**
 * Diagnostic for bench/watch-crowd.ts: where an open WatchRun stream's server memory goes. One bench server
 * (started with --heapsnapshot-signal), N runs parked, a heap snapshot with no stream open and one with N streams
 * (one per run), then the objects that grew, by V8 type and constructor: self size and count per stream.
 *
 *   npx tsx --conditions=@cairnjs/source bench/watch-heap.ts --streams 1000 [--dir /tmp/wheap] [--top 40]
 *
 * Self sizes, not retained sizes: follow a row's retainers in the snapshots (Chrome DevTools) for the why. The
 * server runs under tsx as in every bench, whose keepNames gives closures a redefined `name` (a property
 * dictionary each, ~256 B): `node dist/server/main.js` does not pay that.
 */
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Admin, findServer, urlForDatabase } from "./database.js";
import { sdkClient } from "./client.js";
import { ServerProcess } from "./server.js";
import { WORKFLOW_NAME } from "./workflows/watched.js";

const { values } = parseArgs({
  options: { streams: { type: "string", default: "1000" }, dir: { type: "string", default: "/tmp/wheap" }, top: { type: "string", default: "40" } },
});
const streams = Number(values.streams);
mkdirSync(values.dir, { recursive: true });
const log = (m: string) => console.log(`[watch-heap] ${m}`);
const server0 = await findServer();
const admin = await Admin.connect(server0.adminUrl);
const database = await admin.createDatabase();
const databaseUrl = urlForDatabase(server0.adminUrl, database);
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${values.dir}`;
const server = await ServerProcess.start("S1", { databaseUrl, poolSize: 20, maxConcurrentRuns: 200, logLevel: "warn" }, log);
const controller = new AbortController();
const snapshot = async (label: string): Promise<string> => {
  const before = new Set(readdirSync(values.dir));
  const m = (await server.probe(true)).memory;
  log(`${label}: rss ${(m.rss / 1048576).toFixed(1)} MB heapUsed ${(m.heapUsed / 1048576).toFixed(1)} MB external ${(m.external / 1048576).toFixed(1)} MB arrayBuffers ${(m.arrayBuffers / 1048576).toFixed(1)} MB`);
  process.kill(server.pid, "SIGUSR2");
  for (;;) {
    await sleep(1000);
    const fresh = readdirSync(values.dir).filter((f) => !before.has(f));
    if (fresh.length > 0) {
      // Written in pieces, with pauses: done once the JSON document is closed.
      const path = join(values.dir, fresh[0]!);
      while (!complete(path)) await sleep(1000);
      log(`${label}: ${fresh.join(" ")}`);
      return path;
    }
  }
};
try {
  const clients = Array.from({ length: Math.ceil(streams / 500) }, () => sdkClient(server.url, "2"));
  const runIds: string[] = [];
  for (let i = 0; i < streams; i += 200) {
    const made = await Promise.all(
      Array.from({ length: Math.min(200, streams - i) }, (_, j) =>
        clients[0]!.raw.workflows.createRun({ workflowName: WORKFLOW_NAME, input: fromJson(ValueSchema, { steps: 1, stepMs: 0, gate: `h-${i + j}` }) }),
      ),
    );
    runIds.push(...made.map((r) => r.run?.runId ?? ""));
  }
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  while (Number((await db.query<{ n: string }>("select count(*) as n from runs where status = 'waiting'")).rows[0]?.n) !== streams) await sleep(500);
  await db.end();
  await sleep(3000);
  const before = await snapshot("no streams");
  let open = 0;
  await new Promise<void>((resolve) => {
    runIds.forEach((runId, i) => {
      void (async () => {
        let first = true;
        try {
          for await (const _ of clients[Math.floor(i / 500)]!.raw.workflows.watchRun({ runId }, { signal: controller.signal })) {
            if (first && ++open === streams) resolve();
            first = false;
          }
        } catch {}
      })();
    });
  });
  await sleep(2000);
  const after = await snapshot(`${streams} streams`);
  const [a, b] = [tally(before), tally(after)];
  const rows = [...b].map(([key, [count, size]]) => [key, count - (a.get(key)?.[0] ?? 0), size - (a.get(key)?.[1] ?? 0)] as const);
  rows.sort((x, y) => y[2] - x[2]);
  const total = rows.reduce((sum, row) => sum + row[2], 0);
  console.log(`self size added: ${(total / 1048576).toFixed(1)} MB, ${(total / streams).toFixed(0)} B per stream`);
  for (const [key, count, size] of rows.slice(0, Number(values.top))) {
    console.log(`${(size / streams).toFixed(0).padStart(7)} B ${(count / streams).toFixed(2).padStart(7)} per stream  ${key}`);
  }
} finally {
  controller.abort();
  await server.close();
  await admin.dropDatabase(database);
  await admin.close();
}

/** Self size and count by "type:name" (strings by type only) of a .heapsnapshot file. */
function tally(file: string): Map<string, [count: number, size: number]> {
  const snap = JSON.parse(readFileSync(file, "utf8")) as { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[]; strings: string[] };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [width, typeAt, nameAt, sizeAt] = [fields.length, fields.indexOf("type"), fields.indexOf("name"), fields.indexOf("self_size")];
  const out = new Map<string, [number, number]>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!;
    const name = type.includes("string") ? "" : snap.strings[snap.nodes[i + nameAt]!]!.slice(0, 60);
    const key = `${type}:${name}`;
    const entry = out.get(key) ?? [0, 0];
    entry[0]++;
    entry[1] += snap.nodes[i + sizeAt]!;
    out.set(key, entry);
  }
  return out;
}

/** The snapshot's last bytes close its JSON object. */
function complete(path: string): boolean {
  const size = statSync(path).size;
  if (size < 2) return false;
  const fd = openSync(path, "r");
  try {
    const tail = Buffer.alloc(Math.min(16, size));
    readSync(fd, tail, 0, tail.byteLength, size - tail.byteLength);
    return tail.toString("latin1").trimEnd().endsWith("]}");
  } finally {
    closeSync(fd);
  }
}
