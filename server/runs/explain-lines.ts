/**
 * ExplainRun's reasoning, pure: given what the store read (`RunFacts`), which stored events did not match an
 * event wait and why, and the lines people read (`cairn runs why`, the console). The matching rules mirror
 * the event primitive's lookup (store/events.ts findEvent): same type and correlation id, addressed to
 * everyone or to this run, inside the wait's lookback, not consumed by this run yet.
 */
import { describeWait, type WaitRecord } from "../core/waits.js";
import type { RunFacts, StoredEventFacts } from "../store/runs/explain.js";
import type { FlowHold } from "../store/runs/flow-hold.js";

export type NearMissReason = "other_correlation_id" | "before_lookback" | "already_consumed" | "targeted_at_other_run";

export interface EventNearMiss {
  event: StoredEventFacts;
  reason: NearMissReason;
  explanation: string;
}

export interface WaitExplanation {
  record: WaitRecord;
  lookbackFrom?: Date | undefined;
  nearMisses: EventNearMiss[];
}

export interface Explanation {
  waits: WaitExplanation[];
  lines: string[];
}

/** Near misses shown per event wait. */
export const maxNearMisses = 5;

/** Why `event` does not satisfy the event wait, or undefined when it would (the run is about to take it). */
export function nearMissReason(
  runId: string,
  wait: { eventType: string; correlationId: string },
  lookbackFrom: Date | undefined,
  event: StoredEventFacts,
): NearMissReason | undefined {
  if (event.eventType !== wait.eventType) return undefined;
  if (event.correlationId !== wait.correlationId) return "other_correlation_id";
  if (event.targetRunId !== null && event.targetRunId !== runId) return "targeted_at_other_run";
  if (event.consumedByRun) return "already_consumed";
  if (lookbackFrom && event.createdAt.getTime() < lookbackFrom.getTime()) return "before_lookback";
  return undefined;
}

function nearMissText(reason: NearMissReason, event: StoredEventFacts, wait: { correlationId: string }, lookbackFrom: Date | undefined): string {
  const what = `event ${event.id} (correlation ${event.correlationId}, sent ${event.createdAt.toISOString()})`;
  switch (reason) {
    case "other_correlation_id":
      return `${what}: another correlation id than ${wait.correlationId}`;
    case "targeted_at_other_run":
      return `${what}: sent to run ${event.targetRunId} only`;
    case "already_consumed":
      return `${what}: already consumed by this run`;
    case "before_lookback":
      return `${what}: sent before the wait's lookback window (from ${lookbackFrom?.toISOString()})`;
  }
}

export function explain(facts: RunFacts): Explanation {
  const { run } = facts;
  const lines: string[] = [];
  const waits: WaitExplanation[] = facts.waits.map(({ record, lookbackFrom, events }) => {
    const nearMisses: EventNearMiss[] = [];
    if (record.kind === "event") {
      for (const event of events) {
        const reason = nearMissReason(run.id, record, lookbackFrom, event);
        if (reason) nearMisses.push({ event, reason, explanation: nearMissText(reason, event, record, lookbackFrom) });
        if (nearMisses.length === maxNearMisses) break;
      }
    }
    return { record, lookbackFrom, nearMisses };
  });

  lines.push(`run ${run.id} (${run.workflowName}) is ${run.status.toUpperCase()}`);
  switch (run.status) {
    case "queued":
    case "waiting": {
      if (run.status === "waiting") {
        if (waits.length === 0) lines.push("it waits on nothing recorded (it is being parked or woken right now)");
        for (const wait of waits) {
          lines.push(`waiting on ${wait.record.name}: ${describeWait(wait.record)}`);
          if (wait.record.kind !== "event") continue;
          if (wait.lookbackFrom) lines.push(`  events sent before ${wait.lookbackFrom.toISOString()} do not count (lookback)`);
          if (wait.nearMisses.length === 0) lines.push(`  no stored ${wait.record.eventType} event came close`);
          else lines.push(`  stored ${wait.record.eventType} events that did not match:`);
          for (const miss of wait.nearMisses) lines.push(`    ${miss.explanation}`);
        }
      }
      const hold = facts.flowHold;
      if (hold) lines.push(flowHoldLine(run, hold));
      if (hold && hold.gate !== "rate") {
        // Out of the due queue until a run of its key stops running: the claim order below does not apply yet.
      } else if (facts.runsAhead !== undefined) {
        lines.push(`claimable since ${run.availableAt?.toISOString()}; ${facts.runsAhead} claimable run(s) ahead of it`);
      } else if (run.status === "waiting") {
        lines.push(run.availableAt ? `the clock wakes it at ${run.availableAt.toISOString()}` : "only the world can wake it (an event, a child's end, an agent's result)");
      }
      lines.push(loadedLine(facts));
      break;
    }
    case "running": {
      const holder = facts.holder;
      lines.push(`held by ${run.leaseOwner} (lease until ${run.leaseExpiresAt?.toISOString()})`);
      if (!holder) lines.push("  that process is not known (it never announced itself, or died long ago); the lease lapses and the run is requeued");
      else
        lines.push(
          holder.live
            ? `  that process is live: last heartbeat ${holder.lastSeenAt.toISOString()}`
            : `  that process is NOT live: last heartbeat ${holder.lastSeenAt.toISOString()}; the run is requeued when its lease lapses`,
        );
      const request = pendingRequest(run);
      if (request) lines.push(`  asked to stop (${request}); it stops at its next durable operation`);
      break;
    }
    case "paused":
      lines.push(facts.pauseReason ? `paused: ${facts.pauseReason}` : "paused (no reason given); ResumeRun queues it again");
      for (const wait of waits) lines.push(`kept wait ${wait.record.name}: ${describeWait(wait.record)}`);
      break;
    case "completed":
      lines.push(`completed at ${run.completedAt?.toISOString()}`);
      break;
    case "failed":
    case "cancelled":
      lines.push(`${run.status} at ${run.completedAt?.toISOString()}: ${run.error ? `${run.error.name}: ${run.error.message}` : "no error recorded"}`);
      break;
  }
  if (run.timeoutAt && !["completed", "failed", "cancelled"].includes(run.status)) lines.push(`times out at ${run.timeoutAt.toISOString()}`);
  lines.push(`${run.activationCount} activation(s), ${run.abnormalActivations} ended abnormally (lease lapsed, or code that blocked, crashed or ran its thread out of memory)`);
  return { waits, lines };
}

/** A cancel, pause or timeout a running run's holder has not honoured yet. */
export function pendingRequest(run: RunFacts["run"]): string | undefined {
  if (run.cancelRequestedAt) return run.cancelReason ?? "cancel";
  if (run.pauseRequestedAt) return run.pauseReason ? `pause: ${run.pauseReason}` : "pause";
  return undefined;
}

/** Which flow-control limit holds the run, on which key, and its place in that key's line. */
function flowHoldLine(run: RunFacts["run"], hold: FlowHold): string {
  const key = hold.key === "" ? "the workflow's single key" : `key "${hold.key}"`;
  switch (hold.gate) {
    case "concurrency":
      return `held by flow control: concurrency ${key} has ${run.concurrencyLimit} run(s) executing (its limit); position ${hold.position} in that key's line (priority ${run.priority})`;
    case "namespace":
      return `held by flow control: namespace "${hold.key}" has CAIRN_NAMESPACE_MAX_RUNNING=${run.namespaceMaxRunning} run(s) executing; position ${hold.position} in the namespace's line (priority ${run.priority})`;
    case "rate":
      return `held by flow control: rate limit ${key} started ${run.rateLimit} run(s) within ${run.ratePeriodMs} ms; due again at ${hold.availableAt?.toISOString()}`;
  }
}

function loadedLine(facts: RunFacts): string {
  const name = facts.run.workflowName;
  if (facts.loadedBy.length === 0) return `no live process has loaded workflow ${name}: nothing will claim this run until one that loads it starts`;
  return `workflow ${name} is loaded by ${facts.loadedBy.length} live process(es): ${facts.loadedBy.map((p) => p.id).join(", ")}`;
}
