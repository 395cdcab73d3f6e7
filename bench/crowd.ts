/**
 * A crowd of watch streams on parked runs (issue 18): what N concurrent WatchRun streams cost the server (memory
 * after a forced GC) and the database while nothing happens (transactions per second of the crowd's database,
 * against the same window with no stream open), and how fast a change reaches every one of them. `npm run bench`
 * runs it as its crowd section; `bench/watch-crowd.ts` runs it alone with every knob.
 *
 * One server process on a throwaway database of its own, started as the bench starts every server. N runs of
 * bench_watched park on their own gate event; N streams (one per run, `perConnection` streams on each of the SDK's
 * HTTP/2 connections) count as open when their first message (the run snapshot) arrived. Then every run is
 * cancelled, and each stream's delivery delay is the arrival of the CANCELLED status minus the run's `updated_at` in
 * that very message: the start of the transaction that cancelled it (so its commit, the notice and the stream; never
 * less than the true delay). How the runs are cancelled (`change`):
 *   - `batch` (the default): one StartBatch cancels them all, `chunkSize` runs per transaction
 *     (CAIRN_BATCH_CHUNK_SIZE, 200 as the server's default), as an operator's bulk action would: a change to every run
 *     at once. Each run's commit is bracketed by reads of the batch's processed count (chunks take the runs in id
 *     order, so the first N runs by id are done once it shows N), every 5 ms on a connection of the bench's own: the
 *     commit came after the last read that did not show the run done was sent (and after its transaction began, the
 *     run's updated_at), and before the first that did came back. The arrival minus the first is at least the true
 *     delay, minus the later of the other two at most; both are kept, and the delay from updated_at (the
 *     transaction's start, before the chunk's own work). The reads run on a thread of their own
 *     (bench/batch-progress.ts): the bench's main thread is busy with the streams.
 *   - `cancel`: a CancelRun per run, `cancellers` calls in flight on their own connection. Each is a transaction of
 *     its own, and these queue behind each other (each notifying commit holds a cluster-wide lock through its WAL
 *     flush): the delay from the call's start is mostly that queue. The arrival minus the call's answer is kept as
 *     well (0 when the stream had it first).
 *
 * Memory is the server's own `process.memoryUsage()` after two forced GCs (bench/server-probe.ts), with and without
 * the streams: heapUsed (JS objects) and RSS (everything the process holds: the JS heap, nghttp2's per-stream state
 * and buffers, which live outside the JS heap, and the allocator's slack). Before each idle window the database is
 * vacuumed and analyzed (and the window waits for any autovacuum to finish), so that the window counts the server's
 * transactions, not the autovacuum that the inserts of N runs bring.
 */
import { setMaxListeners } from "node:events";
import { Worker } from "node:worker_threads";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import { BatchOperation } from "../sdk/gen/cairn/v1/workflow_pb.js";
import { sdkClient } from "./client.js";
import type { BatchProgressInput, BatchProgressRead } from "./batch-progress.js";
import { type Admin, urlForDatabase } from "./database.js";
import { type Summary, summarize } from "./format.js";
import type { MemorySample } from "./probe-protocol.js";
import { ServerProcess, type ServerSettings } from "./server.js";
import { grpcRunWatcher } from "./wire-grpc.js";
import { WORKFLOW_NAME as WATCHED_WORKFLOW } from "./workflows/watched.js";

export interface CrowdOptions {
  streams: number;
  /** The client holding the streams. */
  wire: CrowdWire;
  /** Streams per HTTP/2 connection of the SDK. */
  perConnection: number;
  idleSeconds: number;
  /** Fewer runs than streams: the streams share runs (and so each process's reader of a run). */
  runs: number;
  change: "batch" | "cancel";
  /** With `change: "cancel"`: CancelRun calls in flight. */
  cancellers: number;
  /** With `change: "batch"`: CAIRN_BATCH_CHUNK_SIZE, runs per transaction. */
  chunkSize: number;
  signal?: AbortSignal;
  log: (message: string) => void;
}

export interface CrowdResult {
  streams: number;
  wire: CrowdWire;
  runs: number;
  perConnection: number;
  change: "batch" | "cancel";
  chunkSize: number;
  cancellers: number;
  memory: { without: MemorySample; with: MemorySample };
  /** Transactions per second of the crowd's database over an idle window, without and with the streams open. */
  idleTransactionsPerSecond: { without: number; with: number };
  openSeconds: number;
  /** StartBatch's answer, or every CancelRun's, ms. */
  callMs: Summary;
  /** From the first cancel sent until every stream had its change. */
  changeSeconds: number;
  delivered: number;
  failed: number;
  /** Arrival minus the run's updated_at (the cancelling transaction's start). */
  fromUpdatedAtMs: Summary;
  /** Arrival minus StartBatch sent, or minus the run's CancelRun sent. */
  fromRequestMs: Summary;
  /** With `batch`: the commit's bracket (at most: from the last read that did not show it; at least: from the first that did). */
  fromCommitAtMostMs: Summary | null;
  fromCommitAtLeastMs: Summary | null;
  /** With `cancel`: arrival minus the call's answer, 0 when the stream was first. */
  afterAnswerMs: Summary | null;
}

/** How the crowd's streams are held: the SDK over HTTP/2, or grpc-js with proto-loader (bench/wire-grpc.ts). */
export type CrowdWire = "sdk" | "grpc-js";

interface CrowdWatchers {
  /** Follows `runId` on connection `connection`, telling each run message (status, updated_at in ms) until the stream ends or the run is cancelled. */
  watch(connection: number, runId: string, signal: AbortSignal, onRun: (status: string, updatedAtMs: number | undefined) => void): Promise<void>;
  close(): void;
}

function crowdWatchers(wire: CrowdWire, url: string, connections: number): CrowdWatchers {
  if (wire === "grpc-js") {
    const channels = Array.from({ length: connections }, () => grpcRunWatcher(url));
    return {
      watch: (connection, runId, signal, onRun) => channels[connection]!.watch(runId, signal, onRun),
      close: () => channels.forEach((channel) => channel.close()),
    };
  }
  const clients = Array.from({ length: connections }, () => sdkClient(url, "2"));
  return {
    async watch(connection, runId, signal, onRun) {
      for await (const update of clients[connection]!.raw.workflows.watchRun({ runId }, { signal })) {
        if (update.update.case !== "run") continue;
        const run = update.update.value;
        const status = run.status === RunStatus.CANCELLED ? "cancelled" : RunStatus[run.status].toLowerCase();
        onRun(status, run.updatedAt ? Number(run.updatedAt.seconds) * 1000 + Math.floor(run.updatedAt.nanos / 1e6) : undefined);
        if (status === "cancelled") return;
      }
    },
    close: () => undefined,
  };
}

/**
 * Starts bench/batch-progress.ts (connected, waiting for its batch); `follow` tells it the batch and returns its
 * reads in order once the batch is done.
 */
function batchProgress(databaseUrl: string): { ready: Promise<void>; follow(batchId: string, selected: number): Promise<BatchProgressRead[]>; stop(): Promise<number> } {
  const reads: BatchProgressRead[] = [];
  let isReady!: () => void;
  const ready = new Promise<void>((resolve) => (isReady = resolve));
  // The bench runs from its sources under tsx, whose loader a worker thread registers for itself.
  const entry = new URL("./batch-progress.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const worker = new Worker(`import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`, {
    eval: true,
    workerData: { databaseUrl },
  });
  worker.on("message", (read: BatchProgressRead | "ready") => (read === "ready" ? isReady() : reads.push(read)));
  const exited = new Promise<BatchProgressRead[]>((resolve, reject) => {
    worker.once("error", reject);
    worker.once("exit", (code) => (code === 0 ? resolve(reads) : reject(new Error(`batch progress reader exited with ${code}`))));
  });
  exited.catch(() => undefined);
  return {
    ready: Promise.race([ready, exited.then(() => undefined)]),
    follow(batchId, selected) {
      worker.postMessage({ batchId, selected } satisfies Omit<BatchProgressInput, "databaseUrl">);
      return exited;
    },
    stop: () => worker.terminate(),
  };
}

export async function watchCrowd(admin: Admin, adminUrl: string, settings: Omit<ServerSettings, "databaseUrl">, options: CrowdOptions): Promise<CrowdResult> {
  const { streams, perConnection, runs: runCount, change, cancellers, chunkSize, log } = options;
  const database = await admin.createDatabase();
  const databaseUrl = urlForDatabase(adminUrl, database);
  const server = await ServerProcess.start(
    "crowd",
    { ...settings, databaseUrl, env: { ...settings.env, CAIRN_BATCH_CHUNK_SIZE: String(chunkSize) } },
    log,
  );
  const watchers = crowdWatchers(options.wire, server.url, Math.ceil(streams / perConnection));
  const controller = new AbortController();
  setMaxListeners(streams + 100, controller.signal);
  const stopOnAbort = () => controller.abort();
  options.signal?.addEventListener("abort", stopOnAbort, { once: true });
  const aborted = () => {
    if (options.signal?.aborted) throw new Error("interrupted");
  };
  try {
    const creator = sdkClient(server.url, "2");
    log(`crowd: creating ${runCount} runs of ${WATCHED_WORKFLOW}, each parked on its own gate event`);
    const runIds: string[] = [];
    for (let i = 0; i < runCount; i += 200) {
      aborted();
      const made = await Promise.all(
        Array.from({ length: Math.min(200, runCount - i) }, (_, j) =>
          creator.raw.workflows.createRun({ workflowName: WATCHED_WORKFLOW, input: fromJson(ValueSchema, { steps: 1, stepMs: 0, gate: `crowd-${i + j}` }), metadata: { crowd: "yes" } }),
        ),
      );
      runIds.push(...made.map((r) => r.run?.runId ?? ""));
    }
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      for (;;) {
        aborted();
        const { rows } = await db.query<{ n: string }>("select count(*) as n from runs where status = 'waiting'");
        if (Number(rows[0]?.n) === runCount) break;
        await sleep(500);
      }
    } finally {
      await db.end();
    }
    // Parking ends with writes still settling (the last journal batches, the processes' refresh): let them pass.
    await sleep(5000);
    log(`crowd: all ${runCount} runs parked; measuring with no stream open`);
    const memoryWithout = (await server.probe(true)).memory;
    const idleWithout = await commitsPerSecond(databaseUrl, options.idleSeconds);
    aborted();

    log(`crowd: opening ${streams} WatchRun streams through ${options.wire} over ${Math.ceil(streams / perConnection)} HTTP/2 connections`);
    const opened: Promise<void>[] = [];
    const delays: number[] = [];
    const fromCommit: number[] = [];
    const sentAt = new Map<string, number>();
    let batchSentAt: number | undefined;
    const commitSeenAt = new Map<string, number>();
    const commitAfter = new Map<string, number>();
    const answeredAt = new Map<string, number>();
    const arrivals: [runId: string, at: number][] = [];
    /** The run's updated_at: its cancelling transaction began then, so it committed no sooner. */
    const transactionStart = new Map<string, number>();
    let failed = 0;
    const watched = Array.from({ length: streams }, (_, i) => runIds[i % runIds.length]!);
    const finished = watched.map((runId, i) => {
      let open!: () => void;
      opened.push(new Promise<void>((resolve) => (open = resolve)));
      let seen = false;
      return (async () => {
        try {
          await watchers.watch(Math.floor(i / perConnection), runId, controller.signal, (status, began) => {
            open();
            if (status !== "cancelled" || seen) return;
            seen = true;
            const now = Date.now();
            const sent = sentAt.get(runId) ?? batchSentAt;
            if (sent !== undefined) delays.push(now - sent);
            if (began !== undefined) {
              fromCommit.push(now - began);
              transactionStart.set(runId, began);
            }
            arrivals.push([runId, now]);
          });
        } catch (error) {
          open();
          if (!controller.signal.aborted) {
            failed++;
            if (failed <= 3) log(`crowd: stream failed: ${(error as Error).message}`);
          }
        }
      })();
    });
    const openStarted = Date.now();
    await Promise.all(opened);
    const openSeconds = (Date.now() - openStarted) / 1000;
    log(`crowd: ${streams} streams open in ${openSeconds.toFixed(1)} s (${failed} failed)`);
    await sleep(2000);
    const memoryWith = (await server.probe(true)).memory;
    const idleWith = await commitsPerSecond(databaseUrl, options.idleSeconds);
    aborted();

    const cancelStarted = Date.now();
    const canceller = sdkClient(server.url, "2");
    const callMs: number[] = [];
    if (change === "batch") {
      log(`crowd: cancelling every run with one StartBatch`);
      const progress = batchProgress(databaseUrl);
      await progress.ready;
      batchSentAt = Date.now();
      const started = await canceller.raw.workflows.startBatch({
        filter: { workflowName: WATCHED_WORKFLOW, statuses: [RunStatus.WAITING] },
        operation: BatchOperation.CANCEL,
        reason: "watch crowd",
      });
      callMs.push(Date.now() - batchSentAt);
      // The batch's processed count, read every 5 ms on a connection of the bench's own (GetBatch would take CPU from
      // the server whose delivery is being measured, and answer late through it), from a thread of its own
      // (bench/batch-progress.ts). Chunks take the pending runs in id order: once it shows N, the first N runs by id
      // are done.
      const selected = Number(started.matchedCount);
      const byId = [...runIds].sort();
      const reads = await progress.follow(started.batch?.batchId ?? "", selected).finally(() => progress.stop());
      let done = 0;
      let lastSent = batchSentAt;
      for (const read of reads) {
        const processed = Math.min(selected, read.processed);
        for (; done < processed; done++) {
          commitSeenAt.set(byId[done]!, read.seen);
          commitAfter.set(byId[done]!, lastSent);
        }
        if (read.status === "failed") throw new Error(`batch failed at ${processed} of ${selected}`);
        lastSent = read.sent;
      }
    } else {
      log(`crowd: cancelling every run, ${cancellers} CancelRun calls at a time`);
      let next = 0;
      await Promise.all(
        Array.from({ length: cancellers }, async () => {
          while (next < runIds.length) {
            const i = next++;
            const runId = runIds[i]!;
            sentAt.set(runId, Date.now());
            await canceller.raw.workflows.cancelRun({ runId, reason: "watch crowd" });
            const answered = Date.now();
            callMs.push(answered - sentAt.get(runId)!);
            answeredAt.set(runId, answered);
          }
        }),
      );
    }
    // Unreferenced: the bench goes on as soon as every stream is done, not when this bound passes.
    await Promise.race([Promise.all(finished), sleep(300_000, undefined, { ref: false })]);
    const changeSeconds = (Date.now() - cancelStarted) / 1000;
    const sorted = (values: number[]) => summarize([...values].sort((a, b) => a - b));
    return {
      streams,
      wire: options.wire,
      runs: runCount,
      perConnection,
      change,
      chunkSize,
      cancellers,
      memory: { without: memoryWithout, with: memoryWith },
      idleTransactionsPerSecond: { without: idleWithout, with: idleWith },
      openSeconds,
      callMs: sorted(callMs),
      changeSeconds,
      delivered: fromCommit.length,
      failed,
      fromUpdatedAtMs: sorted(fromCommit),
      fromRequestMs: sorted(delays),
      // A stream may have its message before the bench saw the commit: negative then.
      fromCommitAtMostMs:
        change === "batch"
          ? sorted(arrivals.filter(([runId]) => commitAfter.has(runId)).map(([runId, at]) => at - Math.max(commitAfter.get(runId)!, transactionStart.get(runId) ?? -Infinity)))
          : null,
      fromCommitAtLeastMs: change === "batch" ? sorted(arrivals.filter(([runId]) => commitSeenAt.has(runId)).map(([runId, at]) => at - commitSeenAt.get(runId)!)) : null,
      afterAnswerMs: change === "cancel" ? sorted(arrivals.map(([runId, at]) => Math.max(0, at - (answeredAt.get(runId) ?? at)))) : null,
    };
  } finally {
    options.signal?.removeEventListener("abort", stopOnAbort);
    controller.abort();
    watchers.close();
    await server.close();
    await admin.dropDatabase(database);
  }
}

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
