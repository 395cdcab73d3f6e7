/**
 * Replay workloads (bench_replay):
 *
 * - Per-step cost as runs grow: runs of 10, 100 and 1,000 sequential steps,
 *   one at a time, each executed in one activation. Per-step ms is measured
 *   on the server's clock: (last step_completed − first step_completed) ÷
 *   (steps − 1), from the journal's created_at, pooled over the repetitions
 *   of each length. A cost that grows with the journal (a scan, a reload, a
 *   copy per step) shows as a ratio above 1 between the lengths, and between
 *   the first and the last tenth of the longest run.
 * - Resume after a restart: on a server of its own, runs of 1,000 and of 10
 *   steps park on an event after their steps. That server is stopped
 *   gracefully (SIGTERM) and a new process is started on the same database.
 *   Then, one run at a time: SendEvent, and from its reply (wall clock) to
 *   the journal entry of the first new step ("after", created_at): the new
 *   process claims the run, loads its journal, replays every step, journals
 *   event_received, runs the step and journals it. The first 1,000-step run
 *   is resumed first, by a process that has served nothing yet ("cold": the
 *   figure the goal is judged on); then a 10-step run (warm-up), a second
 *   10-step run and a second 1,000-step run ("warm"), whose difference is the
 *   replay of 990 steps.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { CairnClient } from "../sdk/client.js";
import type { HttpVersion } from "./client.js";
import { sdkClient } from "./client.js";
import type { BenchProbe, EntryTiming } from "./database.js";
import { ServerProcess, type ServerSettings } from "./server.js";
import { EVENT_TYPE, WORKFLOW_NAME as REPLAY_WORKFLOW } from "./workflows/replay.js";

export interface StepCostResult {
  steps: number;
  repetitions: number;
  /** Pooled (last − first step_completed) ÷ (steps − 1), ms, server clock. */
  perStepMs: number;
  /** createRun → waitForResult ÷ steps, ms (client clock; includes create, finish and the round trips). */
  clientPerStepMs: number;
  /** Runs of ≥ 100 steps: per-step ms over the first and the last tenth of the steps. */
  firstTenthMs: number | null;
  lastTenthMs: number | null;
  /** Most activations any of the runs needed (1: executed in one go). */
  activationsMax: number;
}

export interface StepCostsResult {
  lengths: StepCostResult[];
  failures: string[];
}

function stepTimes(entries: EntryTiming[]): number[] {
  return entries.filter((e) => e.kind === "step_completed" && e.name.startsWith("step-")).map((e) => e.createdAt);
}

export async function stepCosts(
  client: CairnClient,
  probe: BenchProbe,
  options: { lengths: readonly number[]; stepsPerLength: number; signal: AbortSignal },
): Promise<StepCostsResult> {
  const failures: string[] = [];
  const lengths: StepCostResult[] = [];
  for (const steps of options.lengths) {
    if (options.signal.aborted) break;
    const repetitions = Math.max(1, Math.min(20, Math.round(options.stepsPerLength / steps)));
    let spanMs = 0;
    let gaps = 0;
    let clientMs = 0;
    let clientSteps = 0;
    let firstTenth = 0;
    let lastTenth = 0;
    let tenthGaps = 0;
    let activationsMax = 0;
    for (let r = 0; r < repetitions && !options.signal.aborted; r++) {
      try {
        const begin = performance.now();
        const run = await client.createRun(REPLAY_WORKFLOW, { steps }, { eagerStart: true });
        await run.waitForResult({ timeoutMs: 300_000, signal: options.signal });
        clientMs += performance.now() - begin;
        clientSteps += steps;
        activationsMax = Math.max(activationsMax, (await client.getRun(run.runId)).activationCount);
        const times = stepTimes(await probe.journal(run.runId));
        if (times.length !== steps) throw new Error(`run ${run.runId}: ${times.length} step entries, expected ${steps}`);
        spanMs += (times.at(-1) ?? 0) - (times[0] ?? 0);
        gaps += steps - 1;
        if (steps >= 100) {
          const tenth = Math.floor(steps / 10);
          firstTenth += (times[tenth] ?? 0) - (times[0] ?? 0);
          lastTenth += (times[steps - 1] ?? 0) - (times[steps - 1 - tenth] ?? 0);
          tenthGaps += tenth;
        }
      } catch (error) {
        failures.push(`${steps} steps: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    lengths.push({
      steps,
      repetitions,
      perStepMs: gaps === 0 ? Number.NaN : spanMs / gaps,
      clientPerStepMs: clientSteps === 0 ? Number.NaN : clientMs / clientSteps,
      firstTenthMs: tenthGaps === 0 ? null : firstTenth / tenthGaps,
      lastTenthMs: tenthGaps === 0 ? null : lastTenth / tenthGaps,
      activationsMax,
    });
  }
  return { lengths, failures };
}

export interface ResumeMeasurement {
  label: string;
  steps: number;
  /** SendEvent reply (wall clock) → journal created_at of event_received / of the step "after", ms. */
  eventReceivedMs: number;
  firstNewStepMs: number;
  /** SendEvent reply → waitForResult resolved (client clock), ms. */
  resultMs: number;
  /** activation_count of the run at the end (2 = created, parked, resumed once). */
  activations: number;
}

export interface ResumeResult {
  /** Steps of the long runs. */
  longSteps: number;
  shortSteps: number;
  /** Creating and parking the runs on the first server, ms. */
  parkMs: number;
  /** SIGTERM → the first server exited. */
  shutdownMs: number;
  shutdownExit: string;
  /** Spawn → the second server answered ListWorkflows. */
  restartMs: number;
  /** In the order resumed: long (cold), short (warm-up, not judged), short, long (warm). */
  measurements: ResumeMeasurement[];
  failures: string[];
}

export async function resumeAfterRestart(
  settings: ServerSettings,
  http: HttpVersion,
  probe: BenchProbe,
  options: { longSteps: number; shortSteps: number; signal: AbortSignal; log: (message: string) => void },
): Promise<ResumeResult> {
  const tag = randomBytes(3).toString("hex");
  const plan = [
    { label: "long, cold", steps: options.longSteps, key: `resume-${tag}-long-cold` },
    { label: "short, warm-up", steps: options.shortSteps, key: `resume-${tag}-warm-up` },
    { label: "short", steps: options.shortSteps, key: `resume-${tag}-short` },
    { label: "long, warm", steps: options.longSteps, key: `resume-${tag}-long-warm` },
  ];
  const result: ResumeResult = {
    longSteps: options.longSteps,
    shortSteps: options.shortSteps,
    parkMs: Number.NaN,
    shutdownMs: Number.NaN,
    shutdownExit: "",
    restartMs: Number.NaN,
    measurements: [],
    failures: [],
  };

  const first = await ServerProcess.start("resume-1", settings, options.log);
  const runIds: string[] = [];
  try {
    const client = sdkClient(first.url, http);
    const parking = performance.now();
    for (const run of plan) runIds.push((await client.createRun(REPLAY_WORKFLOW, { steps: run.steps, key: run.key }, { eagerStart: true })).runId);
    const deadline = performance.now() + 300_000;
    for (;;) {
      const counts = await probe.statusCounts({ ids: runIds });
      if ((counts.waiting ?? 0) === runIds.length) break;
      if (performance.now() > deadline || options.signal.aborted) throw new Error(`runs did not all park: ${JSON.stringify(counts)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    result.parkMs = performance.now() - parking;
  } finally {
    const stopping = performance.now();
    const exit = await first.close();
    result.shutdownMs = performance.now() - stopping;
    result.shutdownExit = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
  }

  options.log(`resume: ${plan.length} runs parked and the first server stopped; starting a new one on the same database`);
  const second = await ServerProcess.start("resume-2", settings, options.log);
  result.restartMs = second.startMs;
  try {
    const client = sdkClient(second.url, http);
    for (const [i, run] of plan.entries()) {
      if (options.signal.aborted) break;
      const runId = runIds[i] ?? "";
      try {
        const sent = await client.sendEvent({ eventType: EVENT_TYPE, correlationId: run.key, payload: {} });
        const t0Wall = Date.now();
        const t0 = performance.now();
        if (!sent.matchedRunIds.includes(runId)) throw new Error(`SendEvent matched ${JSON.stringify(sent.matchedRunIds)}, not run ${runId}`);
        await client.waitForResult(runId, { timeoutMs: 60_000, signal: options.signal });
        const resultMs = performance.now() - t0;
        const entries = await probe.journal(runId);
        const received = entries.find((e) => e.kind === "event_received")?.createdAt;
        const step = entries.find((e) => e.kind === "step_completed" && e.name === "after")?.createdAt;
        if (received === undefined || step === undefined) throw new Error(`run ${runId}: no event_received or "after" entry`);
        result.measurements.push({
          label: run.label,
          steps: run.steps,
          eventReceivedMs: received - t0Wall,
          firstNewStepMs: step - t0Wall,
          resultMs,
          activations: (await client.getRun(runId)).activationCount,
        });
      } catch (error) {
        result.failures.push(`${run.label}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  } finally {
    await second.close();
  }
  return result;
}
