/**
 * Sequential latency workloads through the SDK, one run at a time:
 *
 * - W2, start → result: bench_steps with 1 step. t0 just before
 *   createRun(eager_start), t1 when waitForResult() resolves (AwaitRun).
 * - W3, event → completion: bench_event_wait (waitForEvent, then one step).
 *   The run is created (eager) and polled with GetRun until WAITING, outside
 *   the measurement. t0 is the SendEvent reply; then waitForResult() is called
 *   (the way a client would: send, then wait) and t1 is when it resolves. The
 *   journal's created_at (the appending transaction's now(), 1 ms precision)
 *   of event_received, the step and run_completed, minus the wall clock at t0,
 *   says where the time went.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { CairnClient } from "../sdk/client.js";
import type { BenchProbe } from "./database.js";
import { EVENT_TYPE, WORKFLOW_NAME as EVENT_WORKFLOW } from "./workflows/event-wait.js";
import { WORKFLOW_NAME as STEPS_WORKFLOW } from "./workflows/ten-steps.js";

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const ascending = (values: number[]) => [...values].sort((a, b) => a - b);

export interface StartLatencyResult {
  runs: number;
  completed: number;
  failures: string[];
  /** createRun sent → waitForResult resolved, ms, ascending. */
  latenciesMs: number[];
  /** createRun sent → its reply, ms, ascending. */
  createMs: number[];
}

export async function startLatency(client: CairnClient, options: { runs: number; signal: AbortSignal }): Promise<StartLatencyResult> {
  const latencies: number[] = [];
  const creates: number[] = [];
  const failures: string[] = [];
  for (let i = 0; i < options.runs && !options.signal.aborted; i++) {
    try {
      const t0 = performance.now();
      const run = await client.createRun(STEPS_WORKFLOW, { steps: 1 }, { eagerStart: true });
      const created = performance.now();
      await run.waitForResult({ timeoutMs: 30_000, signal: options.signal });
      latencies.push(performance.now() - t0);
      creates.push(created - t0);
    } catch (error) {
      failures.push(message(error));
    }
  }
  return { runs: options.runs, completed: latencies.length, failures, latenciesMs: ascending(latencies), createMs: ascending(creates) };
}

export interface EventLatencyResult {
  runs: number;
  completed: number;
  failures: string[];
  /** SendEvent reply → waitForResult resolved, ms, ascending. */
  latenciesMs: number[];
  /** SendEvent round trip, ms, ascending. */
  sendEventMs: number[];
  /** Journal created_at − wall clock at the SendEvent reply, ms, ascending (1 ms precision; may be < 0: the entry's transaction began before the reply reached the client). */
  journalMs: { eventReceived: number[]; stepCompleted: number[]; runCompleted: number[] };
}

export async function eventLatency(
  client: CairnClient,
  probe: BenchProbe,
  options: { runs: number; signal: AbortSignal; tag?: string },
): Promise<EventLatencyResult> {
  const tag = options.tag ?? randomBytes(3).toString("hex");
  const latencies: number[] = [];
  const sends: number[] = [];
  const journal = { eventReceived: [] as number[], stepCompleted: [] as number[], runCompleted: [] as number[] };
  const failures: string[] = [];
  for (let i = 0; i < options.runs && !options.signal.aborted; i++) {
    const key = `w3-${tag}-${i}`;
    try {
      const run = await client.createRun(EVENT_WORKFLOW, { key }, { eagerStart: true });
      await untilWaiting(client, run.runId, options.signal);

      const sending = performance.now();
      const sent = await client.sendEvent({ eventType: EVENT_TYPE, correlationId: key, payload: { i } });
      const t0 = performance.now();
      const t0Wall = Date.now();
      if (!sent.matchedRunIds.includes(run.runId)) throw new Error(`run ${run.runId}: SendEvent matched ${JSON.stringify(sent.matchedRunIds)}, not the WAITING run`);
      await client.waitForResult(run.runId, { timeoutMs: 30_000, signal: options.signal });
      latencies.push(performance.now() - t0);
      sends.push(t0 - sending);

      // Outside the measured window: where the time went.
      const entries = await probe.journal(run.runId);
      const at = (kind: string) => entries.find((e) => e.kind === kind)?.createdAt;
      const received = at("event_received");
      const step = entries.find((e) => e.kind === "step_completed" && e.name === "after")?.createdAt;
      const finished = at("run_completed");
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
    latenciesMs: ascending(latencies),
    sendEventMs: ascending(sends),
    journalMs: { eventReceived: ascending(journal.eventReceived), stepCompleted: ascending(journal.stepCompleted), runCompleted: ascending(journal.runCompleted) },
  };
}

/** GetRun every millisecond until the run is WAITING (not measured). */
export async function untilWaiting(client: CairnClient, runId: string, signal: AbortSignal, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
    const run = await client.getRun(runId);
    if (run.status === "waiting") return;
    if (run.status !== "queued" && run.status !== "running") throw new Error(`run ${runId} is ${run.status}, expected it WAITING`);
    if (performance.now() > deadline) throw new Error(`run ${runId}: not WAITING after ${timeoutMs} ms`);
    await sleep(1);
  }
}

/** A few unmeasured rounds of both, so first-call costs stay out of the figures. */
export async function warmUpLatency(client: CairnClient, probe: BenchProbe, signal: AbortSignal): Promise<void> {
  const start = await startLatency(client, { runs: 5, signal });
  const event = await eventLatency(client, probe, { runs: 5, signal, tag: `warm-${randomBytes(3).toString("hex")}` });
  const failures = [...start.failures, ...event.failures];
  if (failures.length > 0) throw new Error(`latency warm-up failed: ${failures.slice(0, 3).join("; ")}`);
}
