/**
 * Replaying a history exported by `cairn runs history --json` (or read through GetRunHistory) against workflow
 * code, without running anything: every recorded entry is handed back; the first operation the code starts
 * that the history does not hold, or a recorded one it does not reach in order, is the divergence. Used by the
 * test environment's `replay()` and by `cairn deploy check`.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { Activation, type ActivationHost, type Handler, ReplayComplete } from "../core/activation.js";
import { entryFromRecord, type EntryRecord, type JournalEntry } from "../core/journal.js";
import type { FailureInfo } from "../core/json.js";

/** A history as `cairn runs history --json` prints it. */
export interface ExportedHistory {
  run: { runId?: string; workflowName?: string; input?: JsonValue; createdAt?: string };
  entries: readonly { sequence: number; kind: string; name: string; result?: JsonValue; error?: { name: string; message: string }; attempt?: number; startedAt?: string; createdAt?: string }[];
}

export type ReplayReport = { ok: true; replayed: number } | { ok: false; error: FailureInfo };

/** Rebuilds journal entries from an exported history (fields the export lacks get neutral values: nothing runs). */
export function entriesOfHistory(history: ExportedHistory): JournalEntry[] {
  return history.entries.map((entry) => {
    const startedAt = entry.startedAt ? new Date(entry.startedAt) : new Date(0);
    const record: EntryRecord = {
      kind: entry.kind,
      name: entry.name,
      attempt: entry.attempt ?? 1,
      startedAt,
      ...(entry.result === undefined ? {} : { result: entry.result }),
      ...(entry.error ? { error: entry.error } : {}),
      // Replay settles operations from kinds and results; these only describe waits the check never parks on.
      fireAt: new Date(8.64e15),
      eventType: "",
      correlationId: "",
      eventId: "00000000-0000-0000-0000-000000000000",
      targetRunId: "00000000-0000-0000-0000-000000000000",
      targetTurnId: "00000000-0000-0000-0000-000000000000",
      timeoutAt: new Date(8.64e15),
    };
    if (entry.kind === "run_retried" || entry.kind === "run_forked") record.result = entry.result ?? { supersedes: [] };
    return { ...entryFromRecord(record), sequence: entry.sequence, createdAt: entry.createdAt ? new Date(entry.createdAt) : startedAt };
  });
}

export async function replayHistory(history: ExportedHistory, handler: Handler, workflowName: string): Promise<ReplayReport> {
  const journal = entriesOfHistory(history);
  const controller = new AbortController();
  const live = (): never => {
    throw new ReplayComplete("the replay reached live work");
  };
  const muted = () => undefined;
  const host: ActivationHost = {
    signal: controller.signal,
    logger: { debug: muted, info: muted, warn: muted, error: muted },
    now: () => new Date(),
    append: async () => live(),
    findEvent: async () => live(),
    startChild: async () => live(),
    startAgentTurn: async () => live(),
    findTurnOutcome: async () => live(),
    findChildOutcome: async () => live(),
    suspend: async () => live(),
    // A step the changed code starts is never run: it stays in flight, and the replay-only activation reports
    // the divergence it leads to.
    stepAttempt: () => ({ run: () => new Promise<never>(() => undefined) as never, end: muted }),
  };
  const identity = {
    runId: history.run.runId ?? "replayed-run",
    workflowName: history.run.workflowName ?? workflowName,
    input: history.run.input ?? {},
    createdAt: history.run.createdAt ? new Date(history.run.createdAt) : new Date(0),
  };
  const outcome = await new Activation(identity, journal, host, { replayOnly: true }).execute(handler);
  if (outcome.kind === "diverged") return { ok: false, error: outcome.failure };
  if (outcome.kind === "failed" && outcome.failure.name === "DeterminismError") return { ok: false, error: outcome.failure };
  return { ok: true, replayed: journal.filter((entry) => entry.name !== "").length };
}
