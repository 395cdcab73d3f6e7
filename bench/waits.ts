/**
 * The durable-wait workloads, all over the same Connect/HTTP/2 client as the
 * step workload:
 *
 * - event → resume latency: sequential bench_event_wait runs; each is parked
 *   (GetRun shows WAITING), then SendEvent; latency is from the SendEvent
 *   reply to the GetRun poll that sees COMPLETED.
 * - timer lateness: many bench_sleep runs created as fast as possible; after
 *   they all end, each run's journal gives timer_fired.created_at −
 *   timer_started.fire_at (server clock on both sides).
 * - parked memory: many bench_event_wait runs on distinct keys; process
 *   memory before and after they are all WAITING, then one event each and
 *   the time until they all complete.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp, ValueSchema } from "@bufbuild/protobuf/wkt";
import { EntryKind, RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../server/app.js";
import type { BenchProbe, RunSelector } from "./database.js";
import { EVENT_TYPE, WORKFLOW_NAME as EVENT_WORKFLOW } from "./workflows/event-wait.js";
import { WORKFLOW_NAME as SLEEP_WORKFLOW } from "./workflows/sleep.js";
import type { WorkflowClient } from "./workload.js";

const ended = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function millis(timestamp: Timestamp | undefined): number | undefined {
  return timestamp ? timestampDate(timestamp).getTime() : undefined;
}

/** Calls `task(i)` for i in [0, count) with at most `concurrency` in flight; failures are collected, not thrown. */
async function inParallel(count: number, concurrency: number, signal: AbortSignal, task: (i: number) => Promise<void>): Promise<string[]> {
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

/** Polls GetRun every `pollMs` until `done(status)`; returns the run and how many polls it took. */
async function pollRun(
  client: WorkflowClient,
  runId: string,
  pollMs: number,
  timeoutMs: number,
  signal: AbortSignal,
  done: (status: RunStatus) => boolean,
) {
  const started = performance.now();
  let polls = 0;
  for (;;) {
    if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
    await sleep(pollMs);
    polls++;
    const { run } = await client.getRun({ runId });
    const status = run?.status ?? RunStatus.UNSPECIFIED;
    if (done(status)) return { run, polls, at: performance.now() };
    if (ended.has(status)) throw new Error(`run ${runId} ended as ${RunStatus[status]}: ${run?.error?.message ?? ""}`);
    if (performance.now() - started > timeoutMs) throw new Error(`run ${runId}: still ${RunStatus[status]} after ${timeoutMs} ms`);
  }
}

/**
 * Polls the database until every selected run (`expected` of them) is in
 * `target`, or none can get there any more, or `timeoutMs` passes.
 */
async function awaitStatus(
  probe: BenchProbe,
  selector: RunSelector,
  expected: number,
  target: "waiting" | "completed",
  timeoutMs: number,
  signal: AbortSignal,
  intervalMs = 50,
): Promise<{ counts: Record<string, number>; reached: boolean }> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const counts = await probe.statusCounts(selector);
    if ((counts[target] ?? 0) === expected) return { counts, reached: true };
    const moving = (counts.queued ?? 0) + (counts.running ?? 0) + (target === "completed" ? (counts.waiting ?? 0) : 0);
    if (moving === 0 || performance.now() > deadline || signal.aborted) return { counts, reached: false };
    await sleep(intervalMs);
  }
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

// ── 1. event → resume latency ────────────────────────────────────────────────

export interface EventLatencyResult {
  runs: number;
  completed: number;
  failures: string[];
  /** Requested delay between polls; the observed period adds a GetRun round trip. */
  pollMs: number;
  observedPollPeriodMs: number;
  /** SendEvent reply → GetRun saw COMPLETED, ms, ascending. */
  latenciesMs: number[];
  /** The run's completed_at − the wall clock at the SendEvent reply (no polling; ms resolution), ascending. */
  completedAtMinusReplyMs: number[];
  /** SendEvent round trip, ms, ascending. */
  sendEventMs: number[];
  /** CreateRun (eager) → GetRun saw WAITING, ms, ascending. */
  parkMs: number[];
  /**
   * Where the server spent the time, from journal created_at (server clock,
   * 1 ms) relative to the wall clock at the SendEvent reply, ascending:
   * the event_received entry (claim + journal load + replay + event lookup),
   * the step's entry, and run_completed.
   */
  journalMs: { eventReceived: number[]; stepCompleted: number[]; runCompleted: number[] };
  wallMs: number;
}

export async function eventLatency(
  client: WorkflowClient,
  options: { runs: number; pollMs: number; signal: AbortSignal; tag?: string },
): Promise<EventLatencyResult> {
  const tag = options.tag ?? randomBytes(3).toString("hex");
  const latencies: number[] = [];
  const serverSide: number[] = [];
  const sends: number[] = [];
  const parks: number[] = [];
  const journal = { eventReceived: [] as number[], stepCompleted: [] as number[], runCompleted: [] as number[] };
  const failures: string[] = [];
  let polls = 0;
  let pollingMs = 0;
  const begin = performance.now();
  for (let i = 0; i < options.runs && !options.signal.aborted; i++) {
    const key = `latency-${tag}-${i}`;
    try {
      const created = performance.now();
      const { run } = await client.createRun({ workflowName: EVENT_WORKFLOW, input: fromJson(ValueSchema, { key }), eagerStart: true });
      const runId = run?.runId;
      if (!runId) throw new Error("CreateRun answered without a run id");
      const parked = await pollRun(client, runId, options.pollMs, 10_000, options.signal, (s) => s === RunStatus.WAITING);
      parks.push(parked.at - created);

      const sending = performance.now();
      const sent = await client.sendEvent({ eventType: EVENT_TYPE, correlationId: key, payload: fromJson(ValueSchema, { i }) });
      const t0 = performance.now();
      const t0Wall = Date.now();
      sends.push(t0 - sending);
      if (!sent.matchedRunIds.includes(runId)) throw new Error(`run ${runId}: SendEvent matched ${JSON.stringify(sent.matchedRunIds)}, not the WAITING run`);

      const done = await pollRun(client, runId, options.pollMs, 10_000, options.signal, (s) => s === RunStatus.COMPLETED);
      latencies.push(done.at - t0);
      polls += done.polls;
      pollingMs += done.at - t0;
      const completedAt = millis(done.run?.completedAt);
      if (completedAt !== undefined) serverSide.push(completedAt - t0Wall);

      // Outside the measured window: the journal's own timestamps for the breakdown.
      const { entries } = await client.getRunHistory({ runId });
      const at = (kind: EntryKind) => millis(entries.find((e) => e.kind === kind)?.createdAt);
      const received = at(EntryKind.EVENT_RECEIVED);
      const step = at(EntryKind.STEP_COMPLETED);
      const finished = at(EntryKind.RUN_COMPLETED);
      if (received !== undefined) journal.eventReceived.push(received - t0Wall);
      if (step !== undefined) journal.stepCompleted.push(step - t0Wall);
      if (finished !== undefined) journal.runCompleted.push(finished - t0Wall);
    } catch (error) {
      failures.push(message(error));
    }
  }
  return {
    runs: options.runs,
    completed: latencies.length,
    failures,
    pollMs: options.pollMs,
    observedPollPeriodMs: polls === 0 ? Number.NaN : pollingMs / polls,
    latenciesMs: sorted(latencies),
    completedAtMinusReplyMs: sorted(serverSide),
    sendEventMs: sorted(sends),
    parkMs: sorted(parks),
    journalMs: { eventReceived: sorted(journal.eventReceived), stepCompleted: sorted(journal.stepCompleted), runCompleted: sorted(journal.runCompleted) },
    wallMs: performance.now() - begin,
  };
}

// ── 2. timer lateness ────────────────────────────────────────────────────────

export interface TimerLatenessResult {
  runs: number;
  sleepMs: number;
  createConcurrency: number;
  completed: number;
  failures: string[];
  /** First CreateRun sent → last CreateRun answered. */
  createWallMs: number;
  /** Latest fire_at − earliest fire_at. */
  fireAtSpreadMs: number;
  /** timer_fired.created_at − timer_started.fire_at per run, ms (journal resolution: 1 ms), ascending. */
  latenessMs: number[];
  /** Runs whose timer fired before its fire_at (must be 0). */
  early: number;
  /** Lateness of the timers due after the last CreateRun was answered (no create load competing), ascending. */
  latenessQuietMs: number[];
  /** Scheduler activations in memory, sampled every 10 ms while creating and while timers fired. */
  activeWhileCreating: { max: number; mean: number };
  activeWhileFiring: { max: number; mean: number };
  /** First CreateRun → all runs ended (seen by polling the database every 50 ms). */
  wallMs: number;
}

/** Samples `read()` every `everyMs` until stopped. */
function sampler(read: () => number, everyMs: number): { stop(): { max: number; mean: number } } {
  let max = 0;
  let sum = 0;
  let n = 0;
  const timer = setInterval(() => {
    const value = read();
    max = Math.max(max, value);
    sum += value;
    n++;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return { max, mean: n === 0 ? 0 : sum / n };
    },
  };
}

export async function timerLateness(
  client: WorkflowClient,
  server: CairnServer,
  probe: BenchProbe,
  options: { runs: number; sleepMs: number; concurrency: number; signal: AbortSignal },
): Promise<TimerLatenessResult> {
  const ids: string[] = [];
  const input = fromJson(ValueSchema, { ms: options.sleepMs });
  const begin = performance.now();
  const creating = sampler(() => server.scheduler.activeCount, 10);
  const failures = await inParallel(options.runs, options.concurrency, options.signal, async () => {
    const { run } = await client.createRun({ workflowName: SLEEP_WORKFLOW, input, eagerStart: true });
    if (!run?.runId) throw new Error("CreateRun answered without a run id");
    ids.push(run.runId);
  });
  const createWallMs = performance.now() - begin;
  const createsDoneAt = Date.now();
  const activeWhileCreating = creating.stop();

  const firing = sampler(() => server.scheduler.activeCount, 10);
  const { counts, reached } = await awaitStatus(probe, { ids }, ids.length, "completed", options.sleepMs + 60_000, options.signal);
  const wallMs = performance.now() - begin;
  const activeWhileFiring = firing.stop();
  if (!reached) failures.push(`not all runs completed: ${JSON.stringify(counts)}`);

  const lateness: number[] = [];
  const quiet: number[] = [];
  const fireAts: number[] = [];
  let early = 0;
  failures.push(
    ...(await inParallel(ids.length, 16, options.signal, async (i) => {
      const runId = ids[i] ?? "";
      const { entries } = await client.getRunHistory({ runId });
      const fireAt = millis(entries.find((e) => e.kind === EntryKind.TIMER_STARTED)?.fireAt);
      const firedAt = millis(entries.find((e) => e.kind === EntryKind.TIMER_FIRED)?.createdAt);
      if (fireAt === undefined || firedAt === undefined) throw new Error(`run ${runId}: no timer_started/timer_fired pair in its history`);
      fireAts.push(fireAt);
      lateness.push(firedAt - fireAt);
      if (fireAt > createsDoneAt) quiet.push(firedAt - fireAt);
      if (firedAt < fireAt) early++;
    })),
  );
  return {
    runs: options.runs,
    sleepMs: options.sleepMs,
    createConcurrency: options.concurrency,
    completed: counts.completed ?? 0,
    failures,
    createWallMs,
    fireAtSpreadMs: fireAts.length === 0 ? Number.NaN : Math.max(...fireAts) - Math.min(...fireAts),
    latenessMs: sorted(lateness),
    early,
    latenessQuietMs: sorted(quiet),
    activeWhileCreating,
    activeWhileFiring,
    wallMs,
  };
}

// ── 3. parked memory ─────────────────────────────────────────────────────────

export interface MemorySample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export interface ParkedMemoryResult {
  runs: number;
  eagerStart: boolean;
  concurrency: number;
  /** Whether a full GC ran before each sample. */
  gcForced: boolean;
  /** First CreateRun → last answered. */
  createWallMs: number;
  /** First CreateRun → the database shows every run WAITING (polled every 250 ms: a count scans the runs table). */
  parkWallMs: number;
  /** WAITING runs by a database count and by paging ListRuns(statuses=[WAITING], page_size=1000). */
  waitingBySql: number;
  waitingByListRuns: number;
  /** Activations the scheduler held in memory once all were parked (should be 0). */
  activeActivations: number;
  memoryBefore: MemorySample;
  memoryParked: MemorySample;
  memoryAfterCompletion: MemorySample;
  /** (parked − before) ÷ runs. */
  bytesPerRun: { rss: number; heapUsed: number };
  /** runs, journal_entries, waits and events with indexes: (parked − before) ÷ runs. */
  dbBytesPerRun: number;
  /** First SendEvent → last answered. */
  sendWallMs: number;
  /** First SendEvent → the database shows every run COMPLETED (polled every 250 ms). */
  completeWallMs: number;
  completed: number;
  failures: string[];
}

type Gc = () => void;

/** A full-GC function: the `gc` global when node runs with --expose-gc, else one obtained by setting the flag now. */
function findGc(): Gc | undefined {
  const exposed: unknown = Reflect.get(globalThis, "gc");
  if (typeof exposed === "function") return () => void Reflect.apply(exposed, globalThis, []);
  try {
    v8.setFlagsFromString("--expose-gc");
    const fresh: unknown = vm.runInNewContext("gc");
    if (typeof fresh === "function") return () => void Reflect.apply(fresh, undefined, []);
  } catch {
    // No GC available: samples are taken as they are.
  }
  return undefined;
}

async function sampleMemory(gc: Gc | undefined): Promise<MemorySample> {
  if (gc) {
    // Twice, with a turn of the event loop between: finalizers and weak callbacks release more on the second pass.
    gc();
    await sleep(50);
    gc();
  }
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, heapTotal, external, arrayBuffers };
}

export async function parkedMemory(
  client: WorkflowClient,
  server: CairnServer,
  probe: BenchProbe,
  options: { runs: number; concurrency: number; eagerStart: boolean; signal: AbortSignal; log: (message: string) => void },
): Promise<ParkedMemoryResult> {
  const tag = randomBytes(3).toString("hex");
  const gc = findGc();
  const failures: string[] = [];

  // Warm the server's code paths and pools at the same concurrency, then settle.
  const warm = await parkAndRelease(client, probe, `warm-${tag}`, Math.min(options.runs, 2 * options.concurrency), options);
  if (warm.length > 0) throw new Error(`parked warm-up failed: ${warm.slice(0, 3).join("; ")}`);
  await sleep(300);

  // Keys are derived from the index and runs are found by key prefix, so the
  // client (same process) holds nothing per run while memory is measured.
  const prefix = `parked-${tag}-`;
  const keyOf = (i: number) => `${prefix}${i}`;
  const selector: RunSelector = { workflowName: EVENT_WORKFLOW, keyPrefix: prefix };
  const memoryBefore = await sampleMemory(gc);
  const dbBefore = await probe.engineTableBytes();
  const begin = performance.now();
  failures.push(...(await createParked(client, keyOf, options.runs, options)));
  const createWallMs = performance.now() - begin;
  options.log(`parked: ${options.runs} runs created in ${(createWallMs / 1000).toFixed(1)} s, waiting for all to park`);
  const parked = await awaitStatus(probe, selector, options.runs, "waiting", 240_000, options.signal, 250);
  const parkWallMs = performance.now() - begin;
  if (!parked.reached) failures.push(`not all runs parked: ${JSON.stringify(parked.counts)}`);
  const activeActivations = server.scheduler.activeCount;
  // Let in-flight replies, sockets and pool clients go idle before sampling.
  await sleep(500);
  const memoryParked = await sampleMemory(gc);
  const dbParked = await probe.engineTableBytes();

  const waitingByListRuns = await countWaiting(client, EVENT_WORKFLOW, prefix);

  options.log(`parked: sending ${options.runs} events`);
  const sending = performance.now();
  failures.push(...(await releaseParked(client, keyOf, options.runs, options)));
  const sendWallMs = performance.now() - sending;
  const done = await awaitStatus(probe, selector, options.runs, "completed", 240_000, options.signal, 250);
  const completeWallMs = performance.now() - sending;
  if (!done.reached) failures.push(`not all runs completed after their event: ${JSON.stringify(done.counts)}`);
  const memoryAfterCompletion = await sampleMemory(gc);

  const n = Math.max(1, options.runs);
  return {
    runs: options.runs,
    eagerStart: options.eagerStart,
    concurrency: options.concurrency,
    gcForced: gc !== undefined,
    createWallMs,
    parkWallMs,
    waitingBySql: parked.counts.waiting ?? 0,
    waitingByListRuns,
    activeActivations,
    memoryBefore,
    memoryParked,
    memoryAfterCompletion,
    bytesPerRun: { rss: (memoryParked.rss - memoryBefore.rss) / n, heapUsed: (memoryParked.heapUsed - memoryBefore.heapUsed) / n },
    dbBytesPerRun: (dbParked - dbBefore) / n,
    sendWallMs,
    completeWallMs,
    completed: done.counts.completed ?? 0,
    failures,
  };
}

type ParkOptions = { concurrency: number; eagerStart: boolean; signal: AbortSignal };

function createParked(client: WorkflowClient, keyOf: (i: number) => string, count: number, options: ParkOptions): Promise<string[]> {
  return inParallel(count, options.concurrency, options.signal, async (i) => {
    const input = fromJson(ValueSchema, { key: keyOf(i) });
    const { run } = await client.createRun({ workflowName: EVENT_WORKFLOW, input, eagerStart: options.eagerStart });
    if (!run?.runId) throw new Error("CreateRun answered without a run id");
  });
}

function releaseParked(client: WorkflowClient, keyOf: (i: number) => string, count: number, options: ParkOptions): Promise<string[]> {
  return inParallel(count, options.concurrency, options.signal, async (i) => {
    const key = keyOf(i);
    const sent = await client.sendEvent({ eventType: EVENT_TYPE, correlationId: key, payload: fromJson(ValueSchema, { i }) });
    if (sent.matchedRunIds.length !== 1) throw new Error(`event ${key} matched ${sent.matchedRunIds.length} runs, expected 1`);
  });
}

/** Parks `count` runs, then wakes and completes them all: the parked workload in small, unmeasured. Returns failures. */
async function parkAndRelease(client: WorkflowClient, probe: BenchProbe, prefix: string, count: number, options: ParkOptions): Promise<string[]> {
  const keyOf = (i: number) => `${prefix}-${i}`;
  const selector: RunSelector = { workflowName: EVENT_WORKFLOW, keyPrefix: `${prefix}-` };
  const failures = await createParked(client, keyOf, count, options);
  if (!(await awaitStatus(probe, selector, count, "waiting", 30_000, options.signal)).reached) failures.push("warm-up runs did not park");
  failures.push(...(await releaseParked(client, keyOf, count, options)));
  if (!(await awaitStatus(probe, selector, count, "completed", 30_000, options.signal)).reached) failures.push("warm-up runs did not complete");
  return failures;
}

/** WAITING runs whose input key starts with `prefix`, by paging ListRuns(statuses=[WAITING], page_size=1000) the way an operator would. */
async function countWaiting(client: WorkflowClient, workflowName: string, prefix: string): Promise<number> {
  let count = 0;
  let pageToken = "";
  do {
    const page = await client.listRuns({ workflowName, statuses: [RunStatus.WAITING], pageSize: 1000, pageToken });
    for (const run of page.runs) {
      const input = run.input ? toJson(ValueSchema, run.input) : null;
      if (input !== null && typeof input === "object" && !Array.isArray(input) && typeof input.key === "string" && input.key.startsWith(prefix)) count++;
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  return count;
}

/** A few unmeasured event round trips so connection set-up and lazy initialisation stay out of the figures. */
export async function warmUpWaits(client: WorkflowClient, signal: AbortSignal): Promise<void> {
  const result = await eventLatency(client, { runs: 5, pollMs: 2, signal, tag: `warm-${randomBytes(3).toString("hex")}` });
  if (result.failures.length > 0) throw new Error(`wait warm-up failed: ${result.failures.join("; ")}`);
}
