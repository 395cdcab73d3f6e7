/**
 * RetryRun's view of a journal: which entries a retry supersedes, and which entries earlier retries
 * superseded (replay skips them; the history keeps them). Pure, so the store and replay agree on it.
 */
import type { JournalEntry } from "./journal.js";
import type { FailureInfo } from "./json.js";
import { operationTypeOf } from "./primitives/index.js";

/** Sequences every `run_retried` entry (and every `run_paused` of a divergence) of the journal supersedes. */
export function supersededSequences(journal: readonly JournalEntry[]): Set<number> {
  const superseded = new Set<number>();
  for (const entry of journal) {
    if (entry.kind === "run_retried" || (entry.kind === "run_paused" && entry.result)) for (const sequence of entry.result?.supersedes ?? []) superseded.add(sequence);
  }
  return superseded;
}

/** Entry kinds that end an operation in failure (what can fail a run when the handler lets it through). */
const failureKinds = new Set<string>(["step_failed", "child_failed", "agent_turn_failed"]);

function isOperationFailure(entry: JournalEntry): boolean {
  return failureKinds.has(entry.kind) || (entry.kind === "child_started" && entry.error !== undefined);
}

function errorOf(entry: JournalEntry): FailureInfo | undefined {
  return "error" in entry ? entry.error : undefined;
}

/**
 * What a retry of a failed run supersedes: its last `run_failed` entry and every entry of the operation that
 * failed the run, so that operation starts afresh (a step gets a fresh attempt budget, not attempt N+1).
 * The failing operation is the latest live failure whose error is the run's (name and message: the handler
 * let it through, or Promise.all rethrew it); failing that, the last operation entry when it is a failure
 * (the handler wrapped it in another error). None found: the handler threw on its own (or a run timeout
 * failed it); only `run_failed` is superseded and the handler runs again over the same journal. `runError`
 * is the run row's error, used when no `run_failed` entry is live (a failure journaled some other way).
 */
export function retrySupersedes(journal: readonly JournalEntry[], runError: FailureInfo | null): number[] {
  const superseded = supersededSequences(journal);
  const live = journal.filter((entry) => !superseded.has(entry.sequence));
  const lastRunLevel = live.findLast((entry) => entry.name === "" && entry.kind !== "run_retried" && entry.kind !== "run_forked");
  const failed = lastRunLevel?.kind === "run_failed" ? lastRunLevel : undefined;
  const error = failed?.error ?? runError;
  const operations = live.filter((entry) => entry.name !== "" && (!failed || entry.sequence < failed.sequence));
  const sameError = error
    ? operations.findLast((entry) => isOperationFailure(entry) && errorOf(entry)?.name === error.name && errorOf(entry)?.message === error.message)
    : undefined;
  const last = operations.at(-1);
  const culprit = sameError ?? (last && isOperationFailure(last) ? last : undefined);
  const sequences = culprit
    ? operations.filter((entry) => entry.name === culprit.name && operationTypeOf(entry.kind) === operationTypeOf(culprit.kind)).map((entry) => entry.sequence)
    : [];
  if (failed) sequences.push(failed.sequence);
  return sequences.sort((a, b) => a - b);
}
