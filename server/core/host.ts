/**
 * The seam between the core and the world. An `ActivationHost` makes entries
 * durable, finds what resolves waits (events, ended children, finished turns)
 * and parks the run; the core calls nothing else. The store and the worker
 * implement it (server/worker/executor.ts); tests implement it in memory.
 */
import type { JsonValue, WorkflowLogger } from "../../sdk/workflow.js";
import type { FailureInfo, ValueLimits } from "./json.js";
import type { NewEntry } from "./journal.js";
import type { AgentWait, ChildWait, EventWait, PendingWait } from "./waits.js";

export interface ActivationHost {
  /** Makes the entry durable; resolves after commit, rejects if it could not be written (e.g. LeaseLostError). */
  append(entry: NewEntry): Promise<void>;
  /** The oldest unconsumed event matching one of these waits (tried in order), if any. */
  findEvent(waits: readonly EventWait[]): Promise<MatchedEvent | undefined>;
  /** Creates the child run if it does not exist yet (idempotent); throws for an unknown workflow or invalid input. */
  startChild(request: ChildRequest): Promise<void>;
  /** Records an agent turn for workers if it does not exist yet (idempotent). */
  startAgentTurn(request: AgentTurnRequest): Promise<void>;
  /** The first of these turns a worker finished, if any. */
  findTurnOutcome(waits: readonly AgentWait[]): Promise<TurnOutcome | undefined>;
  /** The first of these children that has ended, if any. */
  findChildOutcome(waits: readonly ChildWait[]): Promise<ChildOutcome | undefined>;
  /**
   * Parks the run on `waits`. Resolves false when an event arrived in the
   * meantime, so the activation should look again instead of sleeping.
   */
  suspend(waits: readonly PendingWait[]): Promise<boolean>;
  /** Aborted when the activation must stop: lease lost, run cancelled, server shutting down. */
  readonly signal: AbortSignal;
  /** Size limits on step results, the output and agent requests (absent: none). */
  readonly limits?: ValueLimits;
  /**
   * Checked right before a step's function starts: an error when this process can no longer be sure it
   * holds the run (it slept past its lease, so a new holder may have run and journaled the step already).
   */
  leaseLost?(): Error | undefined;
  /**
   * Called as a step attempt starts (never on replay); the scope it returns runs the step's function and hears
   * how the attempt ended. The worker measures and traces attempts with it; absent, nothing is observed.
   */
  stepAttempt?(step: StepAttemptStart): StepAttemptScope;
  /**
   * Called each time the activation's driver resumes the workflow's code (after every quiet point). A host that runs
   * many activations on one thread notes whose code is about to run, to blame the right run if that code blocks.
   */
  enter?(): void;
  /** The live logger; the activation mutes it while replaying. */
  readonly logger: WorkflowLogger;
  now(): Date;
  /**
   * When every wait is the clock's (timers, retry backoffs) and the earliest comes due within this many ms, the
   * activation waits it out instead of parking the run (absent: it always parks). A server claims such runs a little
   * before they are due (server/store/runs/rows.ts), so they fire on time instead of a claim and a replay late; a
   * short sleep does not park at all. The entry is still journaled only once the clock has reached it.
   */
  readonly holdClockWaitsMs?: number | undefined;
}

/** A step attempt starting, as the host is told of it. */
export interface StepAttemptStart {
  name: string;
  attempt: number;
  /**
   * With a `timeout`: how long the attempt may run, and what to journal if it overruns without ever yielding (the
   * host's watchdog then stops the code and records the attempt's failure itself; `retryDelayMs` absent: no retry left).
   */
  timeout?: { ms: number; failure: FailureInfo; retryDelayMs: number | undefined; startedAt: Date };
  /** When the attempt began (epoch ms), for a host told of it only once it ended (absent: it begins now). */
  startedAt?: number;
}

/** One step attempt as the host observes it. */
export interface StepAttemptScope {
  /**
   * Calls the step's function (inside the host's context, e.g. a trace span). A host may first wait for earlier
   * entries to commit (a host that lets code run ahead of its commits, thread-host.ts): then it returns a promise.
   */
  run<T>(fn: () => T): T | Promise<Awaited<T>>;
  /**
   * The attempt ended: its value was journaled, it failed for good, or it failed and will be retried. `elapsedMs`:
   * how long it ran, when measured where it ran (a host told of the attempt late measures nothing itself).
   */
  end(outcome: AttemptOutcome, elapsedMs?: number): void;
}

/** How a step attempt ended: its value journaled, failed for good, or failed with a retry to come. */
export type AttemptOutcome = "completed" | "failed" | "retrying";

/** What `ctx.startAgent` asks the host to create (idempotently, like children). */
export interface AgentTurnRequest {
  name: string;
  turnId: string;
  agent: string;
  text: string;
  params: { [key: string]: JsonValue };
}

/** A turn a worker finished. */
export type TurnOutcome =
  | { turnId: string; agent: string; status: "completed"; result: JsonValue }
  | { turnId: string; agent: string; status: "failed"; error: FailureInfo };

/** A child run that ended, as a parent's wait sees it. */
export type ChildOutcome =
  | { childRunId: string; workflowName: string; status: "completed"; output: JsonValue }
  | { childRunId: string; workflowName: string; status: "failed" | "cancelled"; error: FailureInfo | undefined };

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
