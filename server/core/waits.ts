/**
 * The waits a run can park on, and the one table that says, for each kind,
 * when the clock wakes it, how the store keeps it (`runs.waiting_on`) and how
 * it is described. The RPC conversion, the CLI, the console and the store
 * all go through this table; a new wait kind is one descriptor in its
 * primitive's file plus one line here.
 */
import { agentWait } from "./primitives/agent.js";
import { childWait } from "./primitives/child.js";
import { eventWait } from "./primitives/event.js";
import type { WaitDescriptor } from "./primitives/primitive.js";
import { retryWait } from "./primitives/retry.js";
import { timerWait } from "./primitives/timer.js";

export type TimerWait = { kind: "timer"; name: string; fireAt: Date };
/** A failed step's next attempt, due at `fireAt`. */
export type RetryWait = { kind: "retry"; name: string; fireAt: Date; nextAttempt: number };
export type EventWait = {
  kind: "event";
  name: string;
  eventType: string;
  correlationId: string;
  timeoutAt?: Date | undefined;
  lookbackFrom?: Date | undefined;
};
export type ChildWait = { kind: "child"; name: string; childRunId: string };
export type AgentWait = { kind: "agent"; name: string; turnId: string; agent: string; timeoutAt?: Date | undefined };

/** A wait the run is parked on, as the store needs it to wake the run. */
export type PendingWait = TimerWait | RetryWait | EventWait | ChildWait | AgentWait;
export type WaitKind = PendingWait["kind"];

/** The stored shape of a wait (JSON in `runs.waiting_on`: instants as ISO strings). */
export type WaitRecord =
  | { kind: "timer"; name: string; fireAt: string }
  | { kind: "event"; name: string; eventType: string; correlationId: string; timeoutAt?: string }
  | { kind: "retry"; name: string; retryAt: string; nextAttempt: number }
  | { kind: "child"; name: string; childRunId: string }
  | { kind: "agent"; name: string; turnId: string; agent: string; timeoutAt?: string };

type Descriptors = { readonly [K in WaitKind]: WaitDescriptor<Extract<PendingWait, { kind: K }>, Extract<WaitRecord, { kind: K }>> };

/** Every wait kind. The order of world resolution: an event that arrived wins over its own deadline. */
export const waitDescriptors: Descriptors = {
  event: eventWait,
  child: childWait,
  agent: agentWait,
  timer: timerWait,
  retry: retryWait,
};

function descriptorOf<K extends WaitKind>(kind: K): WaitDescriptor<Extract<PendingWait, { kind: K }>, Extract<WaitRecord, { kind: K }>> {
  return waitDescriptors[kind] as never;
}

/** When a set of waits next needs the run awake by the clock alone (undefined: only the world can wake it). */
export function nextDeadline(waits: readonly PendingWait[]): Date | undefined {
  let earliest: Date | undefined;
  for (const wait of waits) {
    const at = deadlineOf(wait);
    if (at && (!earliest || at < earliest)) earliest = at;
  }
  return earliest;
}

/** When the clock alone wakes the run for this one wait (undefined: only the world can). */
/** Only the clock can end these waits (timers, retry backoffs): parked without `waits` rows, claimable ahead. */
export function onClockAlone(waits: readonly PendingWait[]): boolean {
  for (const wait of waits) if (wait.kind !== "timer" && wait.kind !== "retry") return false;
  return true;
}

export function deadlineOf(wait: PendingWait): Date | undefined {
  return descriptorOf(wait.kind).deadline(wait as never);
}

export function waitRecord(wait: PendingWait): WaitRecord {
  return descriptorOf(wait.kind).record(wait as never);
}

/** "timer cool-off until 2026-12-05T10:00:00.000Z", "event order.paid (correlation o-1)". */
export function describeWait(record: WaitRecord): string {
  return descriptorOf(record.kind).describe(record as never);
}

/** The `cairn.v1.WaitingOn.target` oneof for a stored wait. */
export function waitTarget(record: WaitRecord): { case: string; value: Record<string, unknown> } {
  return descriptorOf(record.kind).target(record as never);
}

/** Waits that the clock alone can resolve (nothing in the world to look for). */
export function clockOnly(waits: readonly PendingWait[]): boolean {
  return waits.every((wait) => descriptorOf(wait.kind).byWorld === undefined);
}
