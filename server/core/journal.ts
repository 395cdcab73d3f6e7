/**
 * The journal is a run's durable memory: entries in sequence order, each
 * naming the operation it belongs to. Replay feeds them back to the handler
 * in the same order; the kinds mirror cairn.v1.EntryKind.
 *
 * An entry is one variant of a discriminated union: each kind carries exactly
 * the fields it means. The store keeps entries as flat rows (`EntryRecord`);
 * `entryFromRecord` is the one place a row becomes an entry, and it refuses a
 * row that lacks what its kind needs instead of inventing a default.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import type { FailureInfo } from "./json.js";

interface Base {
  /** The operation name; empty for run-level entries. */
  name: string;
  attempt: number;
  startedAt: Date;
}

export type StepCompleted = Base & {
  kind: "step_completed";
  /** Absent (undefined) is distinct from JSON null: a step that returned nothing. */
  result?: JsonValue;
};
export type StepFailed = Base & { kind: "step_failed"; error: FailureInfo };
/** An attempt failed and the step will try again at `fireAt`. */
export type StepAttemptFailed = Base & { kind: "step_attempt_failed"; error: FailureInfo; fireAt: Date };
export type TimerStarted = Base & { kind: "timer_started"; fireAt: Date };
export type TimerFired = Base & { kind: "timer_fired"; fireAt: Date };
export type EventWaitStarted = Base & {
  kind: "event_wait_started";
  eventType: string;
  correlationId: string;
  /** When the wait gives up; absent waits forever. */
  timeoutAt?: Date;
  /** Oldest event creation time that may match; absent matches every retained event. */
  lookbackFrom?: Date;
};
export type EventReceived = Base & {
  kind: "event_received";
  result: JsonValue;
  /** The event consumed (a run consumes each event at most once). */
  eventId: string;
  eventType: string;
  correlationId: string;
};
export type EventWaitTimedOut = Base & { kind: "event_wait_timed_out"; eventType: string; correlationId: string; timeoutAt: Date };
/** A child was created (`targetRunId`), or its creation was refused (`error`: unknown workflow, bad input). */
export type ChildStarted = Base & { kind: "child_started" } & ({ targetRunId: string; error?: undefined } | { targetRunId?: undefined; error: FailureInfo });
export type ChildCompleted = Base & { kind: "child_completed"; targetRunId: string; result: JsonValue };
export type ChildFailed = Base & { kind: "child_failed"; targetRunId: string; error: FailureInfo };
export type AgentTurnStarted = Base & { kind: "agent_turn_started"; targetTurnId: string; timeoutAt?: Date };
export type AgentTurnCompleted = Base & { kind: "agent_turn_completed"; targetTurnId: string; result: JsonValue };
export type AgentTurnFailed = Base & { kind: "agent_turn_failed"; targetTurnId: string; error: FailureInfo };
export type RunCompleted = Base & { kind: "run_completed"; result: JsonValue };
export type RunFailed = Base & { kind: "run_failed"; error: FailureInfo };
export type RunCancelled = Base & { kind: "run_cancelled"; error?: FailureInfo };
/** PauseRun / ResumeRun (run-control.ts): the reason rides in error.message. */
/**
 * A run paused because its code diverged from its journal (error.name DeterminismError) carries in
 * `result.supersedes` the entries the diverging activation wrote: replay skips them, like a retry's.
 */
export type RunPaused = Base & { kind: "run_paused"; error?: FailureInfo; result?: RetriedNote };
export type RunResumed = Base & { kind: "run_resumed"; error?: FailureInfo };
/**
 * RetryRun (run-control.ts): the failed run was queued again. `result.supersedes` lists the sequences replay
 * skips from now on (the run_failed entry and every entry of the operation that failed the run), so that
 * operation runs live again with a fresh attempt count; the entries stay in the history. Reason in error.message.
 */
export type RunRetried = Base & { kind: "run_retried"; result: RetriedNote; error?: FailureInfo };
export interface RetriedNote {
  [key: string]: JsonValue;
  supersedes: number[];
}
/**
 * ForkRun (run-control.ts): the first entry of a forked run, naming its source (`targetRunId`) and the
 * operation it runs live from; the entries after it are copied from the source and replayed like its own.
 */
export type RunForked = Base & { kind: "run_forked"; targetRunId: string; result: ForkedNote };
export interface ForkedNote {
  [key: string]: JsonValue;
  sourceRunId: string;
  fromOperation: string;
  /** The source's sequence of the operation's first entry: everything before it was copied. */
  fromSequence: number;
}

/**
 * ctx.now() / ctx.random() / ctx.uuid() (primitives/deterministic.ts): the value handed to the handler, kept so
 * that replay hands back the same one. `result` is epoch ms for now, a number in [0, 1) for random, a string for
 * uuid. These entries have no commit of their own: they ride on the run's next journal write.
 */
export type NowRecorded = Base & { kind: "now_recorded"; result: number };
export type RandomRecorded = Base & { kind: "random_recorded"; result: number };
export type UuidRecorded = Base & { kind: "uuid_recorded"; result: string };
/** ctx.patched(id) reached on code that has the patch: replays of this run take the patched branch. */
export type PatchMarked = Base & { kind: "patch_marked" };

/** What an activation asks the host to persist. */
export type NewEntry =
  | StepCompleted
  | StepFailed
  | StepAttemptFailed
  | TimerStarted
  | TimerFired
  | EventWaitStarted
  | EventReceived
  | EventWaitTimedOut
  | ChildStarted
  | ChildCompleted
  | ChildFailed
  | AgentTurnStarted
  | AgentTurnCompleted
  | AgentTurnFailed
  | RunCompleted
  | RunFailed
  | RunCancelled
  | RunPaused
  | RunResumed
  | RunRetried
  | RunForked
  | NowRecorded
  | RandomRecorded
  | UuidRecorded
  | PatchMarked;

export type EntryKind = NewEntry["kind"];

/** A step attempt that failed (for good, or with a retry to come): the entries an operator is warned of in the log. */
export function isFailedAttempt(entry: NewEntry): entry is StepFailed | StepAttemptFailed {
  return entry.kind === "step_failed" || entry.kind === "step_attempt_failed";
}
export type EntryOf<K extends EntryKind> = Extract<NewEntry, { kind: K }>;

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
  "run_paused",
  "run_resumed",
  "run_retried",
  "run_forked",
  "now_recorded",
  "random_recorded",
  "uuid_recorded",
  "patch_marked",
] as const satisfies readonly EntryKind[];

export type JournalEntry = NewEntry & { sequence: number; createdAt: Date };

/** An entry as the store keeps it: one flat row, every kind-specific field optional. */
export interface EntryRecord {
  kind: string;
  name: string;
  attempt: number;
  startedAt: Date;
  result?: JsonValue | undefined;
  error?: FailureInfo | undefined;
  fireAt?: Date | undefined;
  timeoutAt?: Date | undefined;
  eventType?: string | undefined;
  correlationId?: string | undefined;
  lookbackFrom?: Date | undefined;
  eventId?: string | undefined;
  targetRunId?: string | undefined;
  targetTurnId?: string | undefined;
}

/** A stored row that does not hold what its kind needs: the journal is damaged, not the workflow wrong. */
export class MalformedEntryError extends Error {
  override readonly name = "MalformedEntryError";
  constructor(kind: string, name: string, missing: string) {
    super(`journal entry ${kind} "${name}" has no ${missing}; the journal row is damaged`);
  }
}

function need<T>(value: T | undefined, record: EntryRecord, field: string): T {
  if (value === undefined) throw new MalformedEntryError(record.kind, record.name, field);
  return value;
}

/** The one place a stored row becomes a typed entry (and the only one that knows the row's shape). */
export function entryFromRecord(record: EntryRecord): NewEntry {
  const base = { name: record.name, attempt: record.attempt, startedAt: record.startedAt };
  const r = record;
  switch (r.kind as EntryKind) {
    case "step_completed":
      return { kind: "step_completed", ...base, ...(r.result === undefined ? {} : { result: r.result }) };
    case "step_failed":
      return { kind: "step_failed", ...base, error: need(r.error, r, "error") };
    case "step_attempt_failed":
      return { kind: "step_attempt_failed", ...base, error: need(r.error, r, "error"), fireAt: need(r.fireAt, r, "retry time") };
    case "timer_started":
      return { kind: "timer_started", ...base, fireAt: need(r.fireAt, r, "fire time") };
    case "timer_fired":
      return { kind: "timer_fired", ...base, fireAt: need(r.fireAt, r, "fire time") };
    case "event_wait_started":
      return {
        kind: "event_wait_started",
        ...base,
        eventType: need(r.eventType, r, "event type"),
        correlationId: need(r.correlationId, r, "correlation id"),
        ...(r.timeoutAt ? { timeoutAt: r.timeoutAt } : {}),
        ...(r.lookbackFrom ? { lookbackFrom: r.lookbackFrom } : {}),
      };
    case "event_received":
      return {
        kind: "event_received",
        ...base,
        result: r.result ?? null,
        eventId: need(r.eventId, r, "event id"),
        eventType: need(r.eventType, r, "event type"),
        correlationId: need(r.correlationId, r, "correlation id"),
      };
    case "event_wait_timed_out":
      return {
        kind: "event_wait_timed_out",
        ...base,
        eventType: need(r.eventType, r, "event type"),
        correlationId: need(r.correlationId, r, "correlation id"),
        timeoutAt: need(r.timeoutAt, r, "timeout"),
      };
    case "child_started":
      return r.error ? { kind: "child_started", ...base, error: r.error } : { kind: "child_started", ...base, targetRunId: need(r.targetRunId, r, "child run id") };
    case "child_completed":
      return { kind: "child_completed", ...base, targetRunId: need(r.targetRunId, r, "child run id"), result: r.result ?? null };
    case "child_failed":
      return { kind: "child_failed", ...base, targetRunId: need(r.targetRunId, r, "child run id"), error: need(r.error, r, "error") };
    case "agent_turn_started":
      return { kind: "agent_turn_started", ...base, targetTurnId: need(r.targetTurnId, r, "turn id"), ...(r.timeoutAt ? { timeoutAt: r.timeoutAt } : {}) };
    case "agent_turn_completed":
      return { kind: "agent_turn_completed", ...base, targetTurnId: need(r.targetTurnId, r, "turn id"), result: r.result ?? null };
    case "agent_turn_failed":
      return { kind: "agent_turn_failed", ...base, targetTurnId: need(r.targetTurnId, r, "turn id"), error: need(r.error, r, "error") };
    case "run_completed":
      return { kind: "run_completed", ...base, result: r.result ?? null };
    case "run_failed":
      return { kind: "run_failed", ...base, error: need(r.error, r, "error") };
    case "run_cancelled":
      return { kind: "run_cancelled", ...base, ...(r.error ? { error: r.error } : {}) };
    case "run_paused":
      return { kind: "run_paused", ...base, ...(r.error ? { error: r.error } : {}), ...(r.result ? { result: r.result as RetriedNote } : {}) };
    case "run_resumed":
      return { kind: "run_resumed", ...base, ...(r.error ? { error: r.error } : {}) };
    case "run_retried":
      return { kind: "run_retried", ...base, result: need(r.result, r, "superseded sequences") as RetriedNote, ...(r.error ? { error: r.error } : {}) };
    case "run_forked":
      return { kind: "run_forked", ...base, targetRunId: need(r.targetRunId, r, "source run id"), result: need(r.result, r, "fork origin") as ForkedNote };
    case "now_recorded":
    case "random_recorded":
      return { kind: r.kind as "now_recorded" | "random_recorded", ...base, result: need(typeof r.result === "number" ? r.result : undefined, r, "numeric value") };
    case "uuid_recorded":
      return { kind: "uuid_recorded", ...base, result: need(typeof r.result === "string" ? r.result : undefined, r, "uuid") };
    case "patch_marked":
      return { kind: "patch_marked", ...base };
    default:
      throw new MalformedEntryError(r.kind, r.name, "known kind");
  }
}

/** The flat view of an entry for the store's columns and the history message. */
export function entryFields(entry: NewEntry): EntryRecord {
  return entry;
}
