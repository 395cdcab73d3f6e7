/**
 * Where an activation's workflow code runs. The executor builds the host (every database call, fenced by the
 * claim) on the main thread and hands the activation to a runner: `WorkflowThreads` (threads/workflow-threads.ts,
 * the server's default) runs it on a workflow thread; `InThreadRunner` runs it right here (CAIRN_WORKFLOW_THREADS=0).
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { Activation, type ActivationHost, type ActivationOutcome } from "../core/activation.js";
import type { AttemptOutcome } from "../core/host.js";
import type { FailureInfo } from "../core/json.js";
import type { JournalEntry, NewEntry } from "../core/journal.js";
import type { Fence } from "../store/runs/lease.js";
import { toFailureInfo } from "../core/json.js";
import { validateInput, type WorkflowRegistry } from "../workflows/registry.js";

export interface ActivationRequest {
  run: { runId: string; workflowName: string; input: JsonValue; createdAt: Date };
  journal: JournalEntry[];
  host: ActivationHost;
  /** Until when (epoch ms, this process's clock) the lease is certainly held, as renewed; absent: never checked. */
  leaseValidUntil?: (() => number) | undefined;
  /**
   * For a runner that can write the activation's appends itself (a workflow thread with its own connection) instead
   * of calling `host.append`: the claim's fence and the next sequence number, and where it reports back.
   */
  direct?: DirectJournal | undefined;
  /**
   * Present when an ended step attempt is only counted (no span to end, as `host.stepAttempt` would): a runner on
   * another thread may tally the attempts and count them here in bulk instead of telling each as it ends.
   */
  countAttempt?: ((outcome: AttemptOutcome, elapsedMs: number) => void) | undefined;
}

/** How a runner's own writes of an activation ended, reported with its end. */
export interface DirectReport {
  /** The run's next free sequence number (entries taken back to ride on the end have given theirs back). */
  next: number;
  /** The entries this activation committed, when its end is not a run's end (a parked run's journal is kept). */
  written?: JournalEntry[] | undefined;
  /** A write failed or was refused: the journal is not known here. */
  incomplete?: true | undefined;
}

export interface DirectJournal {
  readonly fence: Fence;
  /** The run's next free sequence number when the activation starts. */
  readonly nextSequence: number;
  /** The runner's writes of this activation settled, before its outcome is handed back. */
  ended(report: DirectReport): void;
  /** Why a write matched nothing (its fence no longer held): a cancel or pause request, or the lease lost. */
  refusal(): Promise<Error>;
  /** The runner committed `entry` (this process's watchers are told of it; a failed attempt is logged). */
  appended(sequence: number, entry: NewEntry, createdAt: Date): void;
}

export type RunnerOutcome =
  | ActivationOutcome
  /** The run's own code broke its thread (blocked past the limit, crashed, out of memory): counted by the breaker. */
  | { kind: "abnormal"; cause: string; failure: FailureInfo }
  /** A step attempt overran its timeout without yielding and its thread was stopped: journal `entry`, then go again. */
  | { kind: "overran"; entry: NewEntry; cause: string }
  /** Another run's code broke the thread this one shared: it goes back to the queue, blameless. */
  | { kind: "released"; cause: string };

export interface ActivationRunner {
  run(request: ActivationRequest, registry: WorkflowRegistry): Promise<RunnerOutcome>;
}

/**
 * On the calling thread: nothing contains the workflow's code. Kept for embedding and debugging (a debugger or a
 * profiler sees one thread; the step's code runs inside the caller's OpenTelemetry context).
 */
export class InThreadRunner implements ActivationRunner {
  async run(request: ActivationRequest, registry: WorkflowRegistry): Promise<RunnerOutcome> {
    try {
      const workflow = registry.get(request.run.workflowName);
      const input = await validateInput(workflow, request.run.input);
      return await new Activation({ ...request.run, input: input as JsonValue }, request.journal, request.host).execute(workflow.handler);
    } catch (error) {
      // The workflow's input no longer validates: the run can't execute anywhere sensible.
      return { kind: "failed", failure: toFailureInfo(error) };
    }
  }
}
