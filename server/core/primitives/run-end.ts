/** The run-level entries that close a journal: they belong to no operation and settle nothing. */
import type { EntryDescriptors } from "./primitive.js";
import { failureText } from "./settled.js";

export const runEndEntries: EntryDescriptors<"run_completed" | "run_failed" | "run_cancelled"> = {
  run_completed: { summary: () => "run completed" },
  run_failed: { summary: (entry) => `run failed: ${failureText(entry.error)}` },
  run_cancelled: { summary: (entry) => (entry.error ? `run cancelled: ${entry.error.message}` : "run cancelled") },
};
