/**
 * The journal is a run's durable memory: entries in sequence order, each
 * naming the operation it belongs to. Replay feeds them back to the handler
 * in the same order; the kinds mirror cairn.v1.EntryKind.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import type { FailureInfo } from "./json.js";

export const entryKinds = [
  "step_completed",
  "step_failed",
  "step_attempt_failed",
  "timer_started",
  "timer_fired",
  "event_wait_started",
  "event_received",
  "event_wait_timed_out",
  "child_started",
  "child_completed",
  "child_failed",
  "agent_turn_started",
  "agent_turn_completed",
  "agent_turn_failed",
  "run_completed",
  "run_failed",
  "run_cancelled",
] as const;
export type EntryKind = (typeof entryKinds)[number];

/** What an activation asks the runner to persist. */
export interface NewEntry {
  kind: EntryKind;
  /** The operation name; empty for run-level entries. */
  name: string;
  /** Absent (undefined) is distinct from JSON null: a step that returned nothing. */
  result?: JsonValue;
  error?: FailureInfo;
  attempt: number;
  startedAt: Date;
  /** Timers: when they fire. */
  fireAt?: Date;
  /** Event waits: when they give up; absent waits forever. */
  timeoutAt?: Date;
  eventType?: string;
  correlationId?: string;
  /** Event waits: oldest event creation time that may match; absent matches every retained event. */
  lookbackFrom?: Date;
  /** event_received: the event consumed (a run consumes each event at most once). */
  eventId?: string;
  /** Child entries: the child run. */
  targetRunId?: string;
  /** Agent entries: the turn. */
  targetTurnId?: string;
}

export interface JournalEntry extends NewEntry {
  sequence: number;
  createdAt: Date;
}

/** The kind of durable operation a `ctx` call is, for determinism checks. */
export type OperationType = "step" | "timer" | "event" | "child" | "child_wait" | "agent" | "agent_wait";

const operationOfKind: Partial<Record<EntryKind, OperationType>> = {
  step_completed: "step",
  step_failed: "step",
  step_attempt_failed: "step",
  timer_started: "timer",
  timer_fired: "timer",
  event_wait_started: "event",
  event_received: "event",
  event_wait_timed_out: "event",
  child_started: "child",
  child_completed: "child_wait",
  child_failed: "child_wait",
  agent_turn_started: "agent",
  agent_turn_completed: "agent_wait",
  agent_turn_failed: "agent_wait",
};

export function operationTypeOf(kind: EntryKind): OperationType | undefined {
  return operationOfKind[kind];
}

/** A wait the run is parked on, as the store needs it to wake the run. */
export type PendingWait =
  | { kind: "timer"; name: string; fireAt: Date }
  | { kind: "child"; name: string; childRunId: string }
  | { kind: "agent"; name: string; turnId: string; agent: string; timeoutAt?: Date | undefined }
  /** A failed step's next attempt, due at `fireAt`. */
  | { kind: "retry"; name: string; fireAt: Date; nextAttempt: number }
  | {
      kind: "event";
      name: string;
      eventType: string;
      correlationId: string;
      timeoutAt?: Date | undefined;
      lookbackFrom?: Date | undefined;
    };

export type EventWait = Extract<PendingWait, { kind: "event" }>;
export type ChildWait = Extract<PendingWait, { kind: "child" }>;
export type AgentWait = Extract<PendingWait, { kind: "agent" }>;

/** What `ctx.startAgent` asks the host to create (idempotently, like children). */
export interface AgentTurnRequest {
  name: string;
  turnId: string;
  agent: string;
  text: string;
  params: { [key: string]: JsonValue };
}

/** A turn a worker finished. */
export interface TurnOutcome {
  turnId: string;
  agent: string;
  status: "completed" | "failed";
  result?: JsonValue;
  error?: FailureInfo;
}

/** A child run that ended, as a parent's wait sees it. */
export interface ChildOutcome {
  childRunId: string;
  workflowName: string;
  status: "completed" | "failed" | "cancelled";
  output?: JsonValue;
  error?: FailureInfo;
}

/** What `ctx.startWorkflow` asks the host to create (idempotently: the id is derived from the parent and the name). */
export interface ChildRequest {
  name: string;
  childRunId: string;
  workflowName: string;
  input: JsonValue;
  detached: boolean;
}

/** An event a wait may consume. */
export interface MatchedEvent {
  /** The wait (operation name) it matched. */
  name: string;
  eventId: string;
  payload: JsonValue;
}

/** When a set of waits next needs the run awake by the clock alone (undefined: only an event can wake it). */
export function nextDeadline(waits: readonly PendingWait[]): Date | undefined {
  let earliest: Date | undefined;
  for (const wait of waits) {
    const at = wait.kind === "event" || wait.kind === "agent" ? wait.timeoutAt : wait.kind === "child" ? undefined : wait.fireAt;
    if (at && (!earliest || at < earliest)) earliest = at;
  }
  return earliest;
}
