/**
 * W1–W4 through each wire (wire.ts), with the run's end learnt by AwaitRun
 * and by WatchRun, against one server process:
 *
 * - W1: N bench_steps runs of S steps, C in flight: create (eager) → end;
 *   the median of `w1Rounds` rounds.
 * - W2: sequential 1-step runs, create sent → end observed; the server's CPU
 *   time over the whole series ÷ runs is the per-run server cost. A fresh
 *   call path takes about 2,000 such runs to reach its steady cost (the JIT
 *   optimizes what it has seen often; W1's concurrent runs before do not
 *   warm this one up): `startWarmup` runs go first and are reported apart,
 *   as the cold figures.
 * - W3: sequential bench_event_wait runs; once WAITING, a second client of
 *   the same wire opens its observer, the first sends the event; the figure
 *   is SendEvent reply → end observed (0 when the observer saw it first).
 * - W4: N bench_sleep runs created C at a time, every run observed by its
 *   own concurrent awaiter or watch stream until it ends; lateness is the
 *   journal's timer_fired.created_at − fire_at (never early).
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { BenchProbe } from "./database.js";
import { type CpuShares, watchCpu } from "./resources.js";
import type { ServerProcess } from "./server.js";
import { inParallel } from "./waits.js";
import type { Observation, WireClient, WireName } from "./wire.js";
import { EVENT_TYPE, WORKFLOW_NAME as EVENT_WORKFLOW } from "./workflows/event-wait.js";
import { WORKFLOW_NAME as SLEEP_WORKFLOW } from "./workflows/sleep.js";
import { WORKFLOW_NAME as STEPS_WORKFLOW } from "./workflows/ten-steps.js";

export interface WireSizes {
  runs: number;
  /** W1 rounds: the figure is their median (the first round of a client on a fresh connection runs colder). */
  w1Rounds: number;
  steps: number;
  concurrency: number;
  startRuns: number;
  startWarmup: number;
  eventRuns: number;
  timerRuns: number;
  /** W4 runs before the measured ones on the same wire, reported apart as the cold figures (0: none). */
  timerWarmup: number;
  timerMs: number;
  createConcurrency: number;
}

export interface WireResult {
  wire: WireName;
  observation: Observation;
  /** The median round's figures; `roundsStepsPerSec` every round's; `failures` of all rounds. */
  w1: {
    runs: number;
    steps: number;
    completed: number;
    wallMs: number;
    stepsPerSec: number;
    roundsStepsPerSec: number[];
    failures: string[];
    loadAverage: number;
    /** Where the median round's time went: CPU per completed step of the server, its PostgreSQL backends and this process (the client), and how busy the machine's cores were. */
    cpuMsPerStep: { server: number; postgres: number; client: number };
    machineBusyShare: number;
  } | null;
  w2: {
    latenciesMs: number[];
    serverCpuMsPerRun: number;
    failures: string[];
    loadAverage: number;
    /** The warm-up series before them, when there was one: the same figures, cold. */
    cold?: { latenciesMs: number[]; serverCpuMsPerRun: number; failures: string[] };
  } | null;
  w3: { latenciesMs: number[]; failures: string[]; loadAverage: number } | null;
  w4: (TimerLateness & { loadAverage: number; cold?: TimerLateness }) | null;
}

interface TimerLateness {
  runs: number;
  latenessMs: number[];
  early: number;
  observers: number;
  failures: string[];
}

const ascending = (values: number[]) => [...values].sort((a, b) => a - b);
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

export async function measureWire(
  connect: () => WireClient,
  how: Observation,
  server: ServerProcess,
  probe: BenchProbe,
  sizes: WireSizes,
  signal: AbortSignal,
  load: () => number,
): Promise<WireResult> {
  const client = connect();
  // W3's observer: another client (another connection), as a second service watching would be.
  const observer = connect();
  try {
    const result: WireResult = { wire: client.wire, observation: how, w1: null, w2: null, w3: null, w4: null };
    // Warm-up: connections, JIT and the server's first queries stay out of the figures.
    await throughput(client, how, { ...sizes, runs: 16, concurrency: 8 }, signal);
    if (sizes.runs > 0 && !signal.aborted) {
      const loadAverage = load();
      const rounds: (Awaited<ReturnType<typeof throughput>> & { cpu: CpuShares })[] = [];
      for (let round = 0; round < Math.max(1, sizes.w1Rounds) && !signal.aborted; round++) {
        const cpu = await watchCpu([server], probe);
        const measured = await throughput(client, how, sizes, signal);
        rounds.push({ ...measured, cpu: await cpu.stop() });
      }
      const { cpu, ...median } = [...rounds].sort((a, b) => a.stepsPerSec - b.stepsPerSec)[Math.floor((rounds.length - 1) / 2)]!;
      const perStep = (seconds: number) => (seconds * 1000) / Math.max(1, median.completed * median.steps);
      result.w1 = {
        ...median,
        roundsStepsPerSec: rounds.map((r) => r.stepsPerSec),
        failures: rounds.flatMap((r) => r.failures),
        loadAverage,
        cpuMsPerStep: {
          server: perStep(cpu.servers.reduce((sum, s) => sum + s.cpuSeconds, 0)),
          postgres: perStep(cpu.postgresBenchDb.cpuSeconds),
          client: perStep(cpu.client.cpuSeconds),
        },
        machineBusyShare: cpu.machine.share,
      };
    }
    if (sizes.startRuns > 0 && !signal.aborted) {
      const series = async (runs: number) => {
        const cpu = await watchCpu([server], probe);
        const w2 = await startLatency(client, how, runs, signal);
        const shares = await cpu.stop();
        const serverCpuSeconds = shares.servers.reduce((sum, s) => sum + s.cpuSeconds, 0);
        return { ...w2, serverCpuMsPerRun: (serverCpuSeconds * 1000) / Math.max(1, w2.latenciesMs.length) };
      };
      const cold = sizes.startWarmup > 0 ? await series(sizes.startWarmup) : undefined;
      const loadAverage = load();
      result.w2 = { ...(await series(sizes.startRuns)), loadAverage, ...(cold ? { cold } : {}) };
    }
    if (sizes.eventRuns > 0 && !signal.aborted) {
      const loadAverage = load();
      result.w3 = { ...(await eventLatency(client, observer, how, sizes.eventRuns, signal)), loadAverage };
    }
    if (sizes.timerRuns > 0 && !signal.aborted) {
      // The first timers of the process, or the first burst of observers on this wire (500 connections over
      // HTTP/1.1), are later than the steady ones: a series first, reported apart, as W2's warm-up is.
      const cold = sizes.timerWarmup > 0 ? await timerLateness(client, how, probe, sizes.timerWarmup, sizes, signal) : undefined;
      const loadAverage = load();
      result.w4 = { ...(await timerLateness(client, how, probe, sizes.timerRuns, sizes, signal)), loadAverage, ...(cold ? { cold } : {}) };
    }
    return result;
  } finally {
    client.close();
    observer.close();
  }
}

async function throughput(client: WireClient, how: Observation, sizes: Pick<WireSizes, "runs" | "steps" | "concurrency">, signal: AbortSignal) {
  let completed = 0;
  const begin = performance.now();
  const failures = await inParallel(sizes.runs, sizes.concurrency, signal, async () => {
    const runId = await client.createRun(STEPS_WORKFLOW, { steps: sizes.steps });
    const status = await client.observeEnd(runId, how, signal);
    if (status !== "completed") throw new Error(`run ${runId} ended ${status}`);
    completed++;
  });
  const wallMs = performance.now() - begin;
  return { runs: sizes.runs, steps: sizes.steps, completed, wallMs, stepsPerSec: (completed * sizes.steps) / (wallMs / 1000), failures };
}

async function startLatency(client: WireClient, how: Observation, runs: number, signal: AbortSignal) {
  const latencies: number[] = [];
  const failures: string[] = [];
  for (let i = 0; i < runs && !signal.aborted; i++) {
    try {
      const t0 = performance.now();
      const runId = await client.createRun(STEPS_WORKFLOW, { steps: 1 });
      const status = await client.observeEnd(runId, how, signal);
      if (status !== "completed") throw new Error(`run ${runId} ended ${status}`);
      latencies.push(performance.now() - t0);
    } catch (error) {
      failures.push(message(error));
    }
  }
  return { latenciesMs: ascending(latencies), failures };
}

async function eventLatency(client: WireClient, observer: WireClient, how: Observation, runs: number, signal: AbortSignal) {
  const tag = randomBytes(3).toString("hex");
  const latencies: number[] = [];
  const failures: string[] = [];
  for (let i = 0; i < runs && !signal.aborted; i++) {
    const key = `wire-w3-${tag}-${i}`;
    try {
      const runId = await client.createRun(EVENT_WORKFLOW, { key });
      await untilWaiting(client, runId, signal);
      let seenAt: number | undefined;
      const observed = observer.observeEnd(runId, how, signal).then((status) => {
        seenAt = performance.now();
        return status;
      });
      // Guards an unhandled rejection while the event is sent; the await below reports it.
      observed.catch(() => undefined);
      // The observer's call is on the server before the event goes (a watch stream answers its first message then;
      // a long poll cannot say, so give it the time one round trip takes).
      await sleep(how === "await" ? 5 : 0);
      const matched = await client.sendEvent(EVENT_TYPE, key, { i });
      const t0 = performance.now();
      if (!matched.includes(runId)) throw new Error(`run ${runId}: SendEvent matched ${JSON.stringify(matched)}, not the WAITING run`);
      const status = await observed;
      if (status !== "completed") throw new Error(`run ${runId} ended ${status}`);
      latencies.push(Math.max(0, (seenAt ?? t0) - t0));
    } catch (error) {
      failures.push(message(error));
    }
  }
  return { latenciesMs: ascending(latencies), failures };
}

async function untilWaiting(client: WireClient, runId: string, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
    const status = await client.status(runId);
    if (status === "waiting") return;
    if (status !== "queued" && status !== "running") throw new Error(`run ${runId} is ${status}, expected it WAITING`);
    if (performance.now() > deadline) throw new Error(`run ${runId}: not WAITING after 10 s`);
    await sleep(1);
  }
}

async function timerLateness(client: WireClient, how: Observation, probe: BenchProbe, runs: number, sizes: WireSizes, signal: AbortSignal): Promise<TimerLateness> {
  const ids: string[] = [];
  const observing: Promise<void>[] = [];
  let observers = 0;
  const failures = await inParallel(runs, sizes.createConcurrency, signal, async () => {
    const runId = await client.createRun(SLEEP_WORKFLOW, { ms: sizes.timerMs });
    ids.push(runId);
    observers++;
    observing.push(
      client.observeEnd(runId, how, signal).then(
        (status) => {
          if (status !== "completed") failures.push(`run ${runId} ended ${status}`);
        },
        (error: unknown) => void failures.push(message(error)),
      ),
    );
  });
  // Every run has an observer waiting on it until its end: 500 long polls or 500 streams at once.
  await Promise.all(observing);
  const times = await probe.timerTimes(ids, "nap");
  if (times.length !== ids.length) failures.push(`${ids.length - times.length} runs have no timer_started/timer_fired pair`);
  const lateness = times.map((t) => t.firedAt - t.fireAt);
  return { runs, latenessMs: ascending(lateness), early: lateness.filter((l) => l < 0).length, observers, failures };
}
