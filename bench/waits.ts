/**
 * Durable-wait workloads through the SDK, against server processes:
 *
 * - W4, timer lateness: N bench_sleep runs, created (eager) C at a time; once
 *   all have ended, the journal gives timer_fired.created_at −
 *   timer_started.fire_at per run (both written by the server; 1 ms
 *   precision). Never early: no negative value.
 * - Parked runs: N runs waiting (half on an event of their own key, half on
 *   a 1-hour timer); the server's RSS before and after, heap after a forced
 *   GC, and its CPU time over an idle window with them parked.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { CairnClient } from "../sdk/client.js";
import type { BenchProbe, RunSelector, TableScans } from "./database.js";
import type { MemorySample } from "./probe-protocol.js";
import { CpuTally } from "./proc.js";
import type { ServerProcess } from "./server.js";
import { EVENT_TYPE, WORKFLOW_NAME as EVENT_WORKFLOW } from "./workflows/event-wait.js";
import { WORKFLOW_NAME as SLEEP_WORKFLOW } from "./workflows/sleep.js";

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const ascending = (values: number[]) => [...values].sort((a, b) => a - b);

/** Calls `task(i)` for i in [0, count) with at most `concurrency` in flight; failures are collected, not thrown. */
export async function inParallel(count: number, concurrency: number, signal: AbortSignal, task: (i: number) => Promise<void>): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && !signal.aborted) {
      const i = next++;
      try {
        await task(i);
      } catch (error) {
        failures.push(message(error));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (signal.aborted) failures.push("interrupted");
  return failures;
}

/**
 * Polls the database until every selected run (`expected` of them) is in
 * `target`, or none can get there any more, or `timeoutMs` passes.
 */
export async function awaitStatus(
  probe: BenchProbe,
  selector: RunSelector,
  expected: number,
  target: "waiting" | "completed",
  timeoutMs: number,
  signal: AbortSignal,
  intervalMs: number,
  onSample?: () => Promise<void>,
): Promise<{ counts: Record<string, number>; reached: boolean }> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    await onSample?.();
    const counts = await probe.statusCounts(selector);
    if ((counts[target] ?? 0) === expected) return { counts, reached: true };
    const moving = (counts.queued ?? 0) + (counts.running ?? 0) + (target === "completed" ? (counts.waiting ?? 0) : 0);
    if (moving === 0 || performance.now() > deadline || signal.aborted) return { counts, reached: false };
    await sleep(intervalMs);
  }
}

// ── W4: timer lateness ───────────────────────────────────────────────────────

export interface TimerLatenessResult {
  runs: number;
  sleepMs: number;
  createConcurrency: number;
  completed: number;
  failures: string[];
  /** First CreateRun sent → last answered. */
  createWallMs: number;
  /** Latest fire_at − earliest. */
  fireAtSpreadMs: number;
  /** timer_fired.created_at − timer_started.fire_at per run, ms, ascending. */
  latenessMs: number[];
  /** Timers that fired before their fire_at (must be 0). */
  early: number;
  /** Lateness of the timers due after the last create was answered (no create load competing), ascending. */
  latenessQuietMs: number[];
  /** runs.completed_at − fire_at per run, ms, ascending: the run's end, one write after the timer's in the same commit or the next. */
  completedAfterMs: number[];
  /** RUNNING runs (any server), sampled every 100 ms from the database while the timers fired. */
  runningWhileFiring: { max: number; mean: number };
  /** First create → the database shows every run ended. */
  wallMs: number;
}

export async function timerLateness(
  client: CairnClient,
  probe: BenchProbe,
  options: { runs: number; sleepMs: number; concurrency: number; signal: AbortSignal },
): Promise<TimerLatenessResult> {
  const ids: string[] = [];
  const begin = performance.now();
  const failures = await inParallel(options.runs, options.concurrency, options.signal, async () => {
    const run = await client.createRun(SLEEP_WORKFLOW, { ms: options.sleepMs }, { eagerStart: true });
    ids.push(run.runId);
  });
  const createWallMs = performance.now() - begin;
  const createsDoneAt = Date.now();

  let runningMax = 0;
  let runningSum = 0;
  let samples = 0;
  const { counts, reached } = await awaitStatus(probe, { ids }, ids.length, "completed", options.sleepMs + 120_000, options.signal, 100, async () => {
    const running = await probe.runningCount();
    runningMax = Math.max(runningMax, running);
    runningSum += running;
    samples++;
  });
  const wallMs = performance.now() - begin;
  if (!reached) failures.push(`not all timer runs completed: ${JSON.stringify(counts)}`);

  const times = await probe.timerTimes(ids, "nap");
  if (times.length !== ids.length) failures.push(`${ids.length - times.length} runs have no timer_started/timer_fired pair`);
  const lateness = times.map((t) => t.firedAt - t.fireAt);
  const quiet = times.filter((t) => t.fireAt > createsDoneAt).map((t) => t.firedAt - t.fireAt);
  const fireAts = times.map((t) => t.fireAt);
  return {
    runs: options.runs,
    sleepMs: options.sleepMs,
    createConcurrency: options.concurrency,
    completed: counts.completed ?? 0,
    failures,
    createWallMs,
    fireAtSpreadMs: fireAts.length === 0 ? Number.NaN : Math.max(...fireAts) - Math.min(...fireAts),
    latenessMs: ascending(lateness),
    early: lateness.filter((l) => l < 0).length,
    latenessQuietMs: ascending(quiet),
    completedAfterMs: ascending(times.filter((t) => !Number.isNaN(t.completedAt)).map((t) => t.completedAt - t.fireAt)),
    runningWhileFiring: { max: runningMax, mean: samples === 0 ? 0 : runningSum / samples },
    wallMs,
  };
}

// ── parked runs: memory and idle CPU ─────────────────────────────────────────

/** The long timer of the timer-parked half: far beyond any bench. */
const parkedSleepMs = 3_600_000;

export interface ParkedResult {
  runs: number;
  onEvents: number;
  onTimers: number;
  concurrency: number;
  /** First create sent → last answered. */
  createWallMs: number;
  /** First create → the database shows all WAITING. */
  parkWallMs: number;
  waiting: number;
  /** RUNNING runs in the database once all were parked (activations in memory somewhere; should be 0). */
  running: number;
  /** Server memory: before (after warm-up, the idle time and a forced GC), when all are parked (no GC), and after the idle window (forced GC). */
  before: MemorySample;
  parkedNoGc: MemorySample;
  parkedAfterGc: MemorySample;
  gcForced: boolean;
  /** VmRSS from /proc at the same three points. */
  procRss: { before: number; parkedNoGc: number; parkedAfterGc: number };
  idle: {
    seconds: number;
    /** Server CPU over the window: process.cpuUsage() inside the server, and utime + stime from /proc. */
    serverCpuMs: number;
    serverProcCpuMs: number;
    /** CPU of the backends serving the bench database over the same window. */
    postgresCpuMs: number;
    /** Table scans over the window, per table with any (pg_stat_user_tables deltas): what the idle server still asks PostgreSQL. */
    scans: Record<string, TableScans>;
  };
  /** runs, journal_entries, waits and events with indexes: (parked − before) ÷ runs. */
  dbBytesPerRun: number;
  failures: string[];
}

export async function parkedRuns(
  client: CairnClient,
  server: ServerProcess,
  probe: BenchProbe,
  options: { runs: number; concurrency: number; idleSeconds: number; signal: AbortSignal; log: (message: string) => void },
): Promise<ParkedResult> {
  const tag = randomBytes(3).toString("hex");
  const failures: string[] = [];

  // Warm the park paths of both kinds at the same concurrency, then settle
  // as long as the idle window below: the "before" and "after" samples are
  // both taken after that much idle time and a forced GC, because V8 and the
  // allocator give memory back to the system after a while of idleness.
  const warm = await warmUpParking(client, probe, `warm-${tag}-`, Math.min(options.runs, options.concurrency), options);
  if (warm.length > 0) throw new Error(`parked warm-up failed: ${warm.slice(0, 3).join("; ")}`);
  options.log(`parked: warmed up; ${options.idleSeconds} s idle before the first sample`);
  await sleep(options.idleSeconds * 1000);

  // Keys derive from the index and runs are counted by key prefix in SQL, so nothing per run is held here.
  const prefix = `parked-${tag}-`;
  const selector: RunSelector = { keyPrefix: prefix };
  const before = await server.probe(true);
  const procBefore = (await server.stat()).rssBytes;
  const dbBefore = await probe.engineTableBytes();
  const begin = performance.now();
  let createdSoFar = 0;
  const progress = setInterval(() => options.log(`parked: ${createdSoFar} / ${options.runs} created`), 15_000);
  failures.push(
    ...(await inParallel(options.runs, options.concurrency, options.signal, async (i) => {
      const key = `${prefix}${i}`;
      if (i % 2 === 0) await client.createRun(EVENT_WORKFLOW, { key }, { eagerStart: true });
      else await client.createRun(SLEEP_WORKFLOW, { ms: parkedSleepMs, key }, { eagerStart: true });
      createdSoFar++;
    })),
  );
  clearInterval(progress);
  const createWallMs = performance.now() - begin;
  options.log(`parked: ${options.runs} runs created in ${(createWallMs / 1000).toFixed(1)} s, waiting for all to park`);
  const parked = await awaitStatus(probe, selector, options.runs, "waiting", 300_000, options.signal, 1000);
  const parkWallMs = performance.now() - begin;
  if (!parked.reached) failures.push(`not all runs parked: ${JSON.stringify(parked.counts)}`);
  const running = await probe.runningCount();
  // Let replies, sockets and pool clients go idle. An idle backend publishes
  // its table statistics up to 10 s late (PGSTAT_IDLE_INTERVAL): with a full
  // idle window, wait that out so the creates' scans stay out of it.
  await sleep(options.idleSeconds >= 10 ? 11_000 : 1000);
  const parkedNoGc = await server.probe(false);
  const procParkedNoGc = (await server.stat()).rssBytes;

  options.log(`parked: ${options.idleSeconds} s idle with ${options.runs} runs parked`);
  const cpuBefore = parkedNoGc.cpuMicros;
  const procCpuBefore = (await server.stat()).cpuSeconds;
  const postgres = new CpuTally();
  await postgres.sample(await probe.backendPids());
  const scansBefore = await probe.tableScans();
  const idleBegin = performance.now();
  const idleEnd = idleBegin + options.idleSeconds * 1000;
  while (performance.now() < idleEnd && !options.signal.aborted) {
    await sleep(Math.min(1000, Math.max(0, idleEnd - performance.now())));
    await postgres.sample(await probe.backendPids());
  }
  const idleSeconds = (performance.now() - idleBegin) / 1000;
  // Backends publish their counts up to a second late.
  await sleep(1000);
  const scansAfter = await probe.tableScans();
  const scans: ParkedResult["idle"]["scans"] = {};
  for (const [table, after] of Object.entries(scansAfter)) {
    const before = scansBefore[table] ?? { seqScans: 0, seqRowsRead: 0, indexScans: 0, indexRowsFetched: 0 };
    const delta: TableScans = {
      seqScans: after.seqScans - before.seqScans,
      seqRowsRead: after.seqRowsRead - before.seqRowsRead,
      indexScans: after.indexScans - before.indexScans,
      indexRowsFetched: after.indexRowsFetched - before.indexRowsFetched,
    };
    if (delta.seqScans + delta.indexScans > 0) scans[table] = delta;
  }
  const afterIdle = await server.probe(false);
  const procCpuAfter = (await server.stat()).cpuSeconds;

  const parkedAfterGc = await server.probe(true);
  const procParkedAfterGc = (await server.stat()).rssBytes;
  const dbParked = await probe.engineTableBytes();
  return {
    runs: options.runs,
    onEvents: Math.ceil(options.runs / 2),
    onTimers: Math.floor(options.runs / 2),
    concurrency: options.concurrency,
    createWallMs,
    parkWallMs,
    waiting: parked.counts.waiting ?? 0,
    running,
    before: before.memory,
    parkedNoGc: parkedNoGc.memory,
    parkedAfterGc: parkedAfterGc.memory,
    gcForced: before.gcForced && parkedAfterGc.gcForced,
    procRss: { before: procBefore, parkedNoGc: procParkedNoGc, parkedAfterGc: procParkedAfterGc },
    idle: {
      seconds: idleSeconds,
      serverCpuMs: (afterIdle.cpuMicros - cpuBefore) / 1000,
      serverProcCpuMs: (procCpuAfter - procCpuBefore) * 1000,
      postgresCpuMs: postgres.seconds() * 1000,
      scans,
    },
    dbBytesPerRun: (dbParked - dbBefore) / Math.max(1, options.runs),
    failures,
  };
}

/** Parks `count` runs of each kind, then releases the event ones (SendEvent) and cancels the timer ones. Returns failures. */
async function warmUpParking(
  client: CairnClient,
  probe: BenchProbe,
  prefix: string,
  count: number,
  options: { concurrency: number; signal: AbortSignal },
): Promise<string[]> {
  const timerIds: string[] = [];
  const failures = await inParallel(2 * count, options.concurrency, options.signal, async (i) => {
    const key = `${prefix}${i}`;
    if (i % 2 === 0) await client.createRun(EVENT_WORKFLOW, { key }, { eagerStart: true });
    else timerIds.push((await client.createRun(SLEEP_WORKFLOW, { ms: parkedSleepMs, key }, { eagerStart: true })).runId);
  });
  if (!(await awaitStatus(probe, { keyPrefix: prefix }, 2 * count, "waiting", 60_000, options.signal, 100)).reached) failures.push("warm-up runs did not park");
  failures.push(
    ...(await inParallel(2 * count, options.concurrency, options.signal, async (i) => {
      if (i % 2 === 0) await client.sendEvent({ eventType: EVENT_TYPE, correlationId: `${prefix}${i}`, payload: {} });
    })),
  );
  failures.push(...(await inParallel(timerIds.length, options.concurrency, options.signal, async (i) => void (await client.cancelRun(timerIds[i] ?? "", "bench warm-up")))));
  if (!(await awaitStatus(probe, { workflowName: EVENT_WORKFLOW, keyPrefix: prefix }, count, "completed", 60_000, options.signal, 100)).reached) {
    failures.push("warm-up runs did not complete after their event");
  }
  return failures;
}
