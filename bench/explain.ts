/**
 * ExplainRun latency: one bench_event_wait run parked on its event, a handful of events of the same type
 * with other correlation ids stored (each a near miss the answer must name), then sequential ExplainRun
 * calls through the SDK. Every answer is checked (WAITING, one event wait, all the near misses named).
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { CairnClient } from "../sdk/client.js";
import { EVENT_TYPE, WORKFLOW_NAME } from "./workflows/event-wait.js";

export interface ExplainLatencyResult {
  calls: number;
  nearMisses: number;
  /** Ascending, ms (client clock, SDK call to answer). */
  latenciesMs: number[];
  failures: string[];
}

const warmUpCalls = 20;

export async function explainLatency(client: CairnClient, options: { calls: number; nearMisses: number; signal: AbortSignal }): Promise<ExplainLatencyResult> {
  const key = `explain-${randomUUID()}`;
  const { runId } = await client.createRun(WORKFLOW_NAME, { key }, { eagerStart: true });
  const failures: string[] = [];
  const latenciesMs: number[] = [];
  try {
    for (let waited = 0; (await client.getRun(runId)).status !== "waiting"; waited += 10) {
      if (waited > 10_000) throw new Error(`run ${runId} did not park within 10 s`);
      await sleep(10);
    }
    for (let i = 0; i < options.nearMisses; i++) await client.sendEvent({ eventType: EVENT_TYPE, correlationId: `${key}-other-${i}`, payload: { i } });
    const check = (answer: Awaited<ReturnType<CairnClient["explainRun"]>>) => {
      const misses = answer.waits[0]?.nearMisses.length ?? 0;
      if (answer.run.status !== "waiting" || answer.waits.length !== 1 || misses !== options.nearMisses) {
        failures.push(`answer: ${answer.run.status}, ${answer.waits.length} wait(s), ${misses} near miss(es)`);
      }
    };
    for (let i = 0; i < warmUpCalls && !options.signal.aborted; i++) check(await client.explainRun(runId));
    for (let i = 0; i < options.calls && !options.signal.aborted; i++) {
      const started = performance.now();
      const answer = await client.explainRun(runId);
      latenciesMs.push(performance.now() - started);
      check(answer);
    }
  } finally {
    await client.cancelRun(runId).catch(() => undefined);
  }
  latenciesMs.sort((a, b) => a - b);
  return { calls: latenciesMs.length, nearMisses: options.nearMisses, latenciesMs, failures: failures.slice(0, 20) };
}
