/**
 * Recorded histories: a run's journal as a real server wrote it, kept as JSON under test/core/histories and
 * replayed against the core on every test run (test/core/histories.test.ts). test/core/histories/record.ts
 * writes them; docs/testing.md says when to re-record.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { JournalEntry } from "../../server/core/journal.js";
import type { JsonValue } from "../../sdk/workflow.js";

export interface History {
  /** What the history shows, for the test's name. */
  about: string;
  /** The folder the workflow is loaded from (relative to the repository root) and its name there. */
  workflow: { dir: string; name: string };
  run: { runId: string; input: JsonValue; createdAt: string };
  journal: RecordedEntry[];
  /** How replaying the whole journal ends: the run's end, or the waits it is parked on (a cancelled run). */
  outcome:
    | { kind: "completed"; output: JsonValue }
    | { kind: "failed"; failure: { name: string; message: string } }
    | { kind: "suspended"; waits: string[] };
}

/** A journal entry with its dates as ISO strings. */
export type RecordedEntry = Omit<JournalEntry, DateField> & Partial<Record<DateField, string>>;

const dateFields = ["startedAt", "createdAt", "fireAt", "timeoutAt", "lookbackFrom"] as const;
type DateField = (typeof dateFields)[number];

export const historiesDir = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "core", "histories");

export function readHistories(): { file: string; history: History }[] {
  return readdirSync(historiesDir)
    .filter((file) => file.endsWith(".json"))
    .sort()
    .map((file) => ({ file, history: JSON.parse(readFileSync(path.join(historiesDir, file), "utf8")) as History }));
}

export function entryFromJson(entry: RecordedEntry): JournalEntry {
  const out: Record<string, unknown> = { ...entry };
  for (const field of dateFields) if (typeof entry[field] === "string") out[field] = new Date(entry[field]);
  return out as unknown as JournalEntry;
}

export function entryToJson(entry: JournalEntry): RecordedEntry {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entry)) {
    if (value === undefined) continue;
    out[key] = value instanceof Date ? value.toISOString() : value;
  }
  return out as RecordedEntry;
}
