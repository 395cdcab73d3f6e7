/**
 * PauseRun, ResumeRun, RetryRun and ForkRun as history: run-level entries that belong to no operation, settle nothing and are
 * skipped by replay (like the run-end entries), so a person reading `cairn runs history` sees the story.
 */
import type { EntryDescriptors } from "./primitive.js";

export const runControlEntries: EntryDescriptors<"run_paused" | "run_resumed" | "run_retried" | "run_forked"> = {
  run_paused: {
    summary: (entry) =>
      `${entry.error?.message ? `run paused: ${entry.error.message}` : "run paused"}${entry.result?.supersedes.length ? ` (replay skips entries ${entry.result.supersedes.join(", ")})` : ""}`,
  },
  run_resumed: { summary: (entry) => (entry.error?.message ? `run resumed: ${entry.error.message}` : "run resumed") },
  run_retried: {
    summary: (entry) =>
      `run retried${entry.error?.message ? `: ${entry.error.message}` : ""} (replay skips entries ${entry.result.supersedes.join(", ")})`,
  },
  run_forked: { summary: (entry) => `run forked from run ${entry.result.sourceRunId} at ${entry.result.fromOperation}` },
};
