/**
 * The journal is a run's durable memory: one entry per finished operation,
 * keyed by the operation's name. Replay answers `ctx.*` calls from it; the
 * kinds mirror cairn.v1.EntryKind.
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
}

export interface JournalEntry extends NewEntry {
  sequence: number;
  createdAt: Date;
}

/** The kind of durable operation a `ctx` call is, for determinism checks. */
export type OperationType = "step";

const operationOfKind: Partial<Record<EntryKind, OperationType>> = {
  step_completed: "step",
  step_failed: "step",
  step_attempt_failed: "step",
};

export function operationTypeOf(kind: EntryKind): OperationType | undefined {
  return operationOfKind[kind];
}

/** Indexes a run's journal by operation name; later entries of one name supersede earlier ones. */
export function indexJournal(entries: readonly JournalEntry[]): Map<string, JournalEntry[]> {
  const byName = new Map<string, JournalEntry[]>();
  for (const entry of entries) {
    if (!entry.name) continue;
    const list = byName.get(entry.name);
    if (list) list.push(entry);
    else byName.set(entry.name, [entry]);
  }
  return byName;
}
