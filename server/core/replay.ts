/**
 * Replay: the journal a run already has, matched against the operations the
 * handler starts. Plain synchronous code over the entry union: which entry
 * comes next, which operation it belongs to, and whether the code still does
 * what the journal recorded (the determinism checks).
 */
import { DeterminismError } from "./errors.js";
import type { JournalEntry } from "./journal.js";
import { operationTypeOf } from "./primitives/index.js";
import { supersededSequences } from "./superseded.js";
import type { Operation, OperationType, RunIdentity } from "./primitives/primitive.js";

export type ReplayStep =
  | { kind: "deliver"; entry: JournalEntry; operation: Operation }
  /** The next recorded entry's operation has not been started (yet, or ever: the error says which if nothing moves). */
  | { kind: "blocked"; error: DeterminismError };

export class Replay {
  /**
   * Operation entries in journal order (run-level entries have no operation and replay nothing). Entries a
   * RetryRun superseded are left out: the operation that failed the run runs live again, from attempt 1.
   */
  private readonly entries: readonly JournalEntry[];
  private position = 0;
  /** Recorded entries by operation name, for start parameters (a timer's fire time) and determinism checks. */
  private readonly byName = new Map<string, JournalEntry[]>();

  constructor(
    private readonly run: RunIdentity,
    journal: readonly JournalEntry[],
  ) {
    const superseded = supersededSequences(journal);
    this.entries = journal.filter((entry) => entry.name !== "" && !superseded.has(entry.sequence));
    for (const entry of this.entries) {
      const list = this.byName.get(entry.name);
      if (list) list.push(entry);
      else this.byName.set(entry.name, [entry]);
    }
  }

  get isReplaying(): boolean {
    return this.position < this.entries.length;
  }

  recordedFor(name: string): readonly JournalEntry[] {
    return this.byName.get(name) ?? [];
  }

  /** The next recorded entry with the operation it settles, or why it cannot be delivered. */
  next(operations: ReadonlyMap<string, Operation>): ReplayStep {
    const entry = this.entries[this.position] as JournalEntry;
    const operation = operations.get(entry.name);
    if (!operation) {
      return {
        kind: "blocked",
        error: new DeterminismError(
          entry.name,
          `the journal of run ${this.run.runId} records "${entry.name}" (${entry.kind}) next, but workflow "${this.run.workflowName}" did not start that operation (it started ${startedInstead(operations)} instead); ${usualCauses}`,
        ),
      };
    }
    this.position++;
    return { kind: "deliver", entry, operation };
  }

  /**
   * Whether operation `name` of `type` may be registered now: names are non-empty and unique within a run,
   * and a name the journal recorded must be the same type of operation. Undefined when it may.
   */
  checkRegistration(name: string, type: OperationType, alreadyUsed: boolean): DeterminismError | undefined {
    if (typeof name !== "string" || name.length === 0) {
      return new DeterminismError(String(name), `every ctx operation needs a non-empty name (got ${JSON.stringify(name)})`);
    }
    if (alreadyUsed) {
      return new DeterminismError(
        name,
        `operation name "${name}" is used twice in workflow "${this.run.workflowName}" (run ${this.run.runId}); names identify durable operations and must be unique within a run — give each call its own name, e.g. "${name}-2" or a name built from a loop index`,
      );
    }
    const first = this.byName.get(name)?.[0];
    if (first && operationTypeOf(first.kind) !== type) {
      return new DeterminismError(
        name,
        `operation "${name}" in workflow "${this.run.workflowName}" (run ${this.run.runId}) is a ctx.${type} now but the journal recorded it as ${first.kind}; ${usualCauses}`,
      );
    }
    return undefined;
  }
}

/** What a divergence usually means, and what to do about it. */
const usualCauses =
  "usually the workflow code changed under a running run (keep the old path for old runs with ctx.patched(id), or give new code a new workflow name), or the handler branches on clocks, randomness or I/O outside steps (use ctx.now(), ctx.random(), ctx.uuid() or a ctx.step)";

/** The operations the handler is waiting on at a divergence: the code's side of the mismatch. */
function startedInstead(operations: ReadonlyMap<string, Operation>): string {
  const pending = [...operations.values()].filter((operation) => !operation.settled).map((operation) => `"${operation.name}" (${operation.type})`);
  return pending.length > 0 ? pending.join(", ") : "nothing durable";
}
