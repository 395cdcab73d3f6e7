/**
 * A crowd of watch streams on parked runs: what N concurrent WatchRun streams cost the server (memory after a
 * forced GC) and the database while nothing happens (transactions per second of the bench database, against the
 * same window with no stream open), and how fast a change reaches every one of them.
 *
 *   npx tsx --conditions=@cairnjs/source bench/watch-crowd.ts [--streams 10000] [--per-connection 500] [--idle-seconds 10]
 *     [--runs N] [--change batch|cancel] [--cancellers 100]
 *
 * One server process on a throwaway database, started as `npm run bench` starts it. N runs of bench_watched park
 * on their own gate event; N streams (one per run, `--per-connection` streams on each of the SDK's HTTP/2
 * connections) count as open when their first message (the run snapshot) arrived. Then every run is cancelled,
 * and each stream's delivery delay is the arrival of the CANCELLED status minus the run's `updated_at` in that very
 * message: the start of the transaction that cancelled it (so its commit, the notice and the stream; never less
 * than the true delay). How the runs are cancelled (`--change`):
 *   - `batch` (the default): one StartBatch cancels them all, `--chunk-size` runs per transaction
 *     (CAIRN_BATCH_CHUNK_SIZE, 200 as the server's default), as an operator's bulk action would: a change to every run
 *     at once. Each run's commit is bracketed by reads of the batch's processed count (chunks take the runs in id
 *     order, so the first N runs by id are done once it shows N), every 5 ms on a connection of the bench's own: the
 *     commit came after the last read that did not show the run done was sent, and before the first that did came
 *     back. The arrival minus the first is at least the true delay, minus the second at most; both are shown, and
 *     the delay from updated_at (the transaction's start, before the chunk's own work).
 *   - `cancel`: a CancelRun per run, `--cancellers` calls in flight (100 by default) on their own connection. Each
 *     is a transaction of its own, and these queue behind each other (each notifying commit holds a cluster-wide lock
 *     through its WAL flush): the delay from the call's start, reported too, is mostly that queue. The arrival minus
 *     the call's answer is shown as well (0 when the stream had it first).
 *
 * Memory is the server's own `process.memoryUsage()` after two forced GCs (bench/server-probe.ts), with and without
 * the streams: heapUsed (JS objects) and RSS (everything the process holds: the JS heap, nghttp2's per-stream state
 * and buffers, which live outside the JS heap, and the allocator's slack); both are reported, in total and per stream.
 * Before each idle window the bench database is vacuumed and analyzed (and the window waits for any autovacuum to
 * finish), so that the window counts the server's transactions, not the autovacuum that the inserts of N runs bring.
 */
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { setMaxListeners } from "node:events";
import pg from "pg";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import { BatchOperation } from "../sdk/gen/cairn/v1/workflow_pb.js";
import { Admin, findServer, urlForDatabase } from "./database.js";
import { sdkClient } from "./client.js";
import { ServerProcess } from "./server.js";
import { percentile } from "./stats.js";
import { WORKFLOW_NAME as WATCHED_WORKFLOW } from "./workflows/watched.js";

const { values } = parseArgs({
  options: {
    streams: { type: "string", default: "10000" },
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
const streams = Number(values.streams);
const perConnection = Number(values["per-connection"]);
const idleSeconds = Number(values["idle-seconds"]);
const runCount = Number(values.runs ?? streams);
const cancellers = Number(values.cancellers);
const change = values.change;
const chunkSize = Number(values["chunk-size"]);
if (change !== "batch" && change !== "cancel") throw new Error(`--change must be batch or cancel, not ${change}`);

const log = (message: string) => console.log(`[watch-crowd ${new Date().toISOString().slice(11, 19)}] ${message}`);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function commitsPerSecond(databaseUrl: string, seconds: number): Promise<number> {
  await quiesce(databaseUrl);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const read = async () => Number((await client.query<{ n: string }>("select xact_commit as n from pg_stat_database where datname = current_database()")).rows[0]?.n);
    // A backend reports its transaction counts at most once a second while busy, and an idle one up to 10 s after its
    // last transaction (PGSTAT_IDLE_INTERVAL): the burst before the window (parking runs, opening streams, each a
    // read or more) would land in the window otherwise.
    await sleep(11_000);
    const before = await read();
    await sleep(seconds * 1000);
    const after = await read();
    // This client's own two reads (and the stats snapshot) are not the server's.
    return (after - before - 1) / seconds;
  } finally {
    await client.end();
  }
}

/**
 * Vacuums and analyzes the bench database, then waits until no vacuum (ours or autovacuum's) runs on it: autovacuum
 * and autoanalyze transactions count in xact_commit, and the inserts of thousands of runs bring them on otherwise.
 * The vacuum runs on a connection of its own that is closed at once: a backend reports its transaction counts when
 * it exits, where an idle one may hold them back for up to 10 s (into the window), and a vacuum of the whole
 * database is one transaction per table.
 */
async function quiesce(databaseUrl: string): Promise<void> {
  const vacuum = new pg.Client({ connectionString: databaseUrl });
  await vacuum.connect();
  try {
    await vacuum.query("vacuum analyze");
    for (;;) {
      const { rows } = await vacuum.query<{ n: string }>(
        "select count(*) as n from pg_stat_activity where datname = current_database() and (backend_type = 'autovacuum worker' or query ilike 'autovacuum:%') and pid <> pg_backend_pid()",
      );
      if (Number(rows[0]?.n) === 0) return;
      await sleep(200);
    }
  } finally {
    await vacuum.end();
  }
}

async function main(): Promise<void> {
  const server0 = await findServer();
  const admin = await Admin.connect(server0.adminUrl);
  const database = await admin.createDatabase();
  const databaseUrl = urlForDatabase(server0.adminUrl, database);
  const server = await ServerProcess.start("S1", { databaseUrl, poolSize: 20, maxConcurrentRuns: 200, logLevel: "warn", env: { CAIRN_BATCH_CHUNK_SIZE: String(chunkSize) } }, log);
  const controller = new AbortController();
  setMaxListeners(streams + 100, controller.signal);
  try {
    const clients = Array.from({ length: Math.ceil(streams / perConnection) }, () => sdkClient(server.url, "2"));
    const creator = clients[0]!;
    log(`creating ${runCount} runs of ${WATCHED_WORKFLOW}, each parked on its own gate event`);
    const runIds: string[] = [];
    for (let i = 0; i < runCount; i += 200) {
      const made = await Promise.all(
        Array.from({ length: Math.min(200, runCount - i) }, (_, j) =>
          creator.raw.workflows.createRun({ workflowName: WATCHED_WORKFLOW, input: fromJson(ValueSchema, { steps: 1, stepMs: 0, gate: `crowd-${i + j}` }), metadata: { crowd: "yes" } }),
        ),
      );
      runIds.push(...made.map((r) => r.run?.runId ?? ""));
    }
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    for (;;) {
      const { rows } = await db.query<{ n: string }>("select count(*) as n from runs where status = 'waiting'");
      if (Number(rows[0]?.n) === runCount) break;
      await sleep(500);
    }
    await db.end();
    // Parking ends with writes still settling (the last journal batches, the processes' refresh): let them pass.
    await sleep(5000);
    log(`all ${runCount} runs parked; measuring with no stream open`);
    const baseMemory = (await server.probe(true)).memory;
    const idleWithout = await commitsPerSecond(databaseUrl, idleSeconds);

    log(`opening ${streams} WatchRun streams over ${clients.length} HTTP/2 connections`);
    const opened: Promise<void>[] = [];
    const delays: number[] = [];
    /** Each stream's arrival minus the cancelling transaction's start (the run's updated_at in the message). */
    const fromCommit: number[] = [];
    const sentAt = new Map<string, number>();
    let batchSentAt: number | undefined;
    /** With `--change batch`: the bracket of the run's commit (after the one read was sent, before the next came back). */
    const commitSeenAt = new Map<string, number>();
    const commitAfter = new Map<string, number>();
    /** When each run's CancelRun was answered (its change committed): the stream's share of the delay starts there. */
    const answeredAt = new Map<string, number>();
    const arrivals: [runId: string, at: number][] = [];
    let failed = 0;
    const watched = Array.from({ length: streams }, (_, i) => runIds[i % runIds.length]!);
    const finished = watched.map((runId, i) => {
      const client = clients[Math.floor(i / perConnection)]!;
      let open!: () => void;
      opened.push(new Promise<void>((resolve) => (open = resolve)));
      return (async () => {
        try {
          for await (const update of client.raw.workflows.watchRun({ runId }, { signal: controller.signal })) {
            open();
            if (update.update.case === "run" && update.update.value.status === RunStatus.CANCELLED) {
              const now = Date.now();
              const sent = sentAt.get(runId) ?? batchSentAt;
              if (sent !== undefined) delays.push(now - sent);
              const committed = update.update.value.updatedAt;
              if (committed) fromCommit.push(now - (Number(committed.seconds) * 1000 + Math.floor(committed.nanos / 1e6)));
              arrivals.push([runId, now]);
              return;
            }
          }
        } catch (error) {
          open();
          if (!controller.signal.aborted) {
            failed++;
            if (failed <= 3) log(`stream failed: ${(error as Error).message}`);
          }
        }
      })();
    });
    const openStarted = Date.now();
    await Promise.all(opened);
    log(`${streams} streams open in ${((Date.now() - openStarted) / 1000).toFixed(1)} s (${failed} failed)`);
    await sleep(2000);
    const crowdMemory = (await server.probe(true)).memory;
    const idleWith = await commitsPerSecond(databaseUrl, idleSeconds);

    const cancelStarted = Date.now();
    const canceller = sdkClient(server.url, "2");
    const cancelLatency: number[] = [];
    if (change === "batch") {
      log(`cancelling every run with one StartBatch`);
      batchSentAt = Date.now();
      const started = await canceller.raw.workflows.startBatch({
        filter: { workflowName: WATCHED_WORKFLOW, statuses: [RunStatus.WAITING] },
        operation: BatchOperation.CANCEL,
        reason: "watch crowd",
      });
      cancelLatency.push(Date.now() - batchSentAt);
      log(`batch ${started.batch?.batchId} selected ${started.matchedCount} runs`);
      // The batch's processed count, read every 5 ms on a connection of the bench's own (GetBatch would take CPU from
      // the server whose delivery is being measured, and answer late through it). Chunks take the pending runs in id
      // order: once it shows N, the first N runs by id are done.
      const selected = Number(started.matchedCount);
      const byId = [...runIds].sort();
      const poller = new pg.Client({ connectionString: databaseUrl });
      await poller.connect();
      try {
        let done = 0;
        let lastSent = Date.now();
        while (done < selected) {
          const sent = Date.now();
          const { rows } = await poller.query<{ processed_count: number; status: string }>("select processed_count, status from batches where id = $1", [
            started.batch?.batchId ?? "",
          ]);
          const seen = Date.now();
          const processed = Math.min(selected, Number(rows[0]?.processed_count ?? 0));
          for (; done < processed; done++) {
            commitSeenAt.set(byId[done]!, seen);
            commitAfter.set(byId[done]!, lastSent);
          }
          if (rows[0]?.status === "failed") throw new Error(`batch failed at ${processed} of ${selected}`);
          lastSent = sent;
          await sleep(5);
        }
      } finally {
        await poller.end();
      }

    } else {
      log(`cancelling every run, ${cancellers} CancelRun calls at a time`);
      let next = 0;
      await Promise.all(
        Array.from({ length: cancellers }, async () => {
          while (next < runIds.length) {
            const i = next++;
            const runId = runIds[i]!;
            sentAt.set(runId, Date.now());
            await canceller.raw.workflows.cancelRun({ runId, reason: "watch crowd" });
            const answered = Date.now();
            cancelLatency.push(answered - sentAt.get(runId)!);
            answeredAt.set(runId, answered);
          }
        }),
      );
    }
    // Unreferenced: the bench exits as soon as it is done, not when this bound passes.
    await Promise.race([Promise.all(finished), sleep(300_000, undefined, { ref: false })]);
    const cancelSeconds = (Date.now() - cancelStarted) / 1000;
    delays.sort((a, b) => a - b);
    fromCommit.sort((a, b) => a - b);
    cancelLatency.sort((a, b) => a - b);
    // A stream may have its message before the call's answer arrives: 0 then.
    const afterSeen = arrivals.filter(([runId]) => commitSeenAt.has(runId)).map(([runId, at]) => at - commitSeenAt.get(runId)!).sort((a, b) => a - b);
    const afterCommitBound = arrivals.filter(([runId]) => commitAfter.has(runId)).map(([runId, at]) => at - commitAfter.get(runId)!).sort((a, b) => a - b);
    const afterAnswer = arrivals.map(([runId, at]) => Math.max(0, at - (answeredAt.get(runId) ?? at))).sort((a, b) => a - b);

    console.log("");
    console.log(`Watch crowd: ${streams} WatchRun streams on ${runCount} parked runs, one server, SDK over HTTP/2 (${perConnection} streams per connection)`);
    const kb = (bytes: number) => `${(bytes / 1024 / streams).toFixed(1)} KB`;
    const addedRss = crowdMemory.rss - baseMemory.rss;
    const addedHeap = crowdMemory.heapUsed - baseMemory.heapUsed;
    const addedExternal = crowdMemory.external - baseMemory.external;
    console.log(`  server memory after GC     ${mb(baseMemory.rss)} RSS / ${mb(baseMemory.heapUsed)} heap without streams; ${mb(crowdMemory.rss)} / ${mb(crowdMemory.heapUsed)} with them: +${mb(addedRss)} RSS (goal ≤ 100 MB), +${mb(addedHeap)} heap, +${mb(addedExternal)} external`);
    console.log(`  per stream                 ${kb(addedRss)} RSS, ${kb(addedHeap)} heap, ${kb(addedExternal)} external`);
    console.log(`  database while idle        ${idleWithout.toFixed(1)} transactions/s without streams, ${idleWith.toFixed(1)} with ${streams} (goal: independent of their number)`);
    const how =
      change === "batch"
        ? `one StartBatch cancelling all ${runCount} (answered in ${cancelLatency[0]} ms; ${cancelSeconds.toFixed(1)} s until every stream had its change)`
        : `CancelRun of each, ${cancellers} in flight (${cancelSeconds.toFixed(1)} s for all; the call p50 ${percentile(cancelLatency, 50)} ms, p99 ${percentile(cancelLatency, 99)} ms)`;
    console.log(`  a change to every run      ${how}; delivered to ${fromCommit.length} of ${streams} streams`);
    console.log(`  from its updated_at        p50 ${percentile(fromCommit, 50)} ms, p99 ${percentile(fromCommit, 99)} ms, max ${fromCommit.at(-1)} ms (${change === "cancel" ? "goal p99 ≤ 100 ms; " : ""}from the start of the run's cancelling transaction to the stream)`);
    console.log(`  from the request           p50 ${percentile(delays, 50)} ms, p99 ${percentile(delays, 99)} ms, max ${delays.at(-1)} ms (${change === "batch" ? "StartBatch sent" : "its CancelRun sent"}; includes ${change === "batch" ? "the batch's earlier chunks" : "the queue of CancelRun commits"})`);
    if (change === "batch") {
      console.log(`  from its commit, at most   p50 ${percentile(afterCommitBound, 50)} ms, p99 ${percentile(afterCommitBound, 99)} ms, max ${afterCommitBound.at(-1)} ms (goal p99 ≤ 100 ms; from the last read of the batch's count that did not show the run done, when it was sent)`);
      console.log(`  from its commit, at least  p50 ${percentile(afterSeen, 50)} ms, p99 ${percentile(afterSeen, 99)} ms, max ${afterSeen.at(-1)} ms (from the first read that showed it done, when it came back; negative when the stream was first)`);
    }
    if (change === "cancel") console.log(`  after the call answered    p50 ${percentile(afterAnswer, 50)} ms, p99 ${percentile(afterAnswer, 99)} ms, max ${afterAnswer.at(-1)} ms (0 when the stream was first)`);
    console.log(`  failed streams             ${failed}`);
  } finally {
    controller.abort();
    await server.close();
    await admin.dropDatabase(database);
    await admin.close();
  }
}

await main();
