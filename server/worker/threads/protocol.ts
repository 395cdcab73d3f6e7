/**
 * The messages between the main thread (RPCs, leases, timers, every database call) and a workflow thread (handlers
 * and step functions). An activation on a thread talks to its host on the main thread only through these: each
 * host call is one message out and one reply back; step attempts and log records go out without a reply.
 * Everything crosses by structured clone (Dates survive; errors cross as `WireError`), several messages of one turn as
 * one batch, in which each step's append and its reply are packed (packed-messages.ts).
 */
import type { JsonValue } from "../../../sdk/workflow.js";
import type { ActivationOutcome } from "../../core/activation.js";
import type { AttemptOutcome, StepAttemptStart } from "../../core/host.js";
import type { FailureInfo, ValueLimits } from "../../core/json.js";
import type { JournalEntry, NewEntry } from "../../core/journal.js";
import type { Fence } from "../../store/runs/lease.js";
import type { DirectReport } from "../activation-runner.js";

/** An error as it crosses the port; `ref` points back at the main thread's original object (its class matters there). */
export interface WireError {
  name: string;
  message: string;
  stack?: string | undefined;
  ref?: number | undefined;
}

/** The host methods a thread calls on the main thread (each answered by one `reply`). */
export type HostCallName = "append" | "findEvent" | "startChild" | "startAgentTurn" | "findTurnOutcome" | "findChildOutcome" | "suspend" | "refusal";

export interface ActivationStart {
  t: "start";
  id: number;
  run: { runId: string; workflowName: string; input: JsonValue; createdAt: Date };
  journal: JournalEntry[];
  limits?: ValueLimits | undefined;
  /** Until when (epoch ms) the lease is certainly held; absent: never checked. */
  validUntil?: number | undefined;
  /** The host's `holdClockWaitsMs`. */
  holdClockWaitsMs?: number | undefined;
  /** Present when the thread writes this activation's appends itself (thread-journal.ts): its fence and next sequence. */
  direct?: { fence: Fence; nextSequence: number } | undefined;
  /** The main thread only counts this activation's step attempts (no span to end): the thread tallies them (`tally`). */
  tally?: true | undefined;
}

/** An entry a thread's statement committed. */
export interface CommittedEntry {
  id: number;
  sequence: number;
  entry: NewEntry;
  createdAt: number;
}


export type ToThread =
  | ActivationStart
  | { t: "reply"; id: number; call: number; ok: true; value: unknown }
  | { t: "reply"; id: number; call: number; ok: false; error: WireError }
  | { t: "abort"; id: number; reason: WireError }
  /** The watchdog's ping; it carries the renewed lease horizons of the thread's activations (id, epoch ms). */
  | { t: "ping"; seq: number; leases: [number, number][] }
  /** Whether this process tails the run now (a WatchRun): only then are its entries told as they commit. */
  | { t: "tailed"; runId: string; on: boolean };

/** An activation's end as it crosses: `aborted` carries its reason as a WireError. */
export type WireOutcome = Exclude<ActivationOutcome, { kind: "aborted" }> | { kind: "aborted"; reason: WireError };

/** Attempt outcomes by number, as a `tally` carries them. */
export const attemptOutcomes: readonly AttemptOutcome[] = ["completed", "failed", "retrying"];

/** A step attempt without a timeout that ended, as the main thread counts and traces it. */
export interface EndedAttempt {
  step: StepAttemptStart;
  outcome: AttemptOutcome;
  elapsedMs: number;
}

export type FromThread =
  | { t: "ready"; workflows: string[] }
  /**
   * `after`: the code that made this call may have seen the outcome of an append not yet committed (thread-host.ts,
   * `append`), so the main thread makes it only once the activation's earlier appends have committed, and fails it
   * with their error if one did not.
   */
  | { t: "call"; id: number; call: number; op: HostCallName; arg: unknown; after?: true; attempt?: EndedAttempt }
  /** A step attempt with a timeout starts (the watchdog enforces it), then ends. */
  | { t: "attempt"; id: number; key: number; step: StepAttemptStart }
  | { t: "attempt_end"; id: number; key: number; outcome: AttemptOutcome; elapsedMs: number }
  /**
   * A step attempt without a timeout, told once it ended: one message instead of two. It usually rides on the append
   * of the attempt's entry (`call.attempt`), which follows at once; alone only when no append took it.
   */
  | ({ t: "attempt_done"; id: number } & EndedAttempt)
  /**
   * Step attempts without a timeout that ended, of activations the main thread only counts (`ActivationStart.tally`):
   * (activation id, outcome's index in `attemptOutcomes`, elapsed ms) each, first in a batch (before any `done`).
   */
  | { t: "tally"; attempts: number[] }
  | { t: "log"; id: number; level: "debug" | "info" | "warn" | "error"; message: string; fields?: Record<string, unknown> | undefined }
  /** The activation ended; the main thread settles it once its appends have committed (an append may still be in flight). */
  | { t: "done"; id: number; outcome: WireOutcome; direct?: DirectReport | undefined }
  /**
   * The thread's journal statement `statement` is about to go with these activations' entries, of runs this process
   * tails: until it is `committed`, a store notice of them waits for its telling instead of reading
   * (store/local-commits.ts). A statement with none of them is not announced.
   */
  | { t: "committing"; statement: number; ids: number[] }
  /**
   * Statement `statement` settled; the entries it committed (`createdAt` epoch ms) that this process's watchers or log
   * take: those of tailed runs, and failed attempts. Sent only if it was announced or has such entries.
   */
  | { t: "committed"; statement: number; entries: CommittedEntry[] }
  /** Workflow code of this activation threw where nothing caught it, or left a rejection unhandled. */
  | { t: "crashed"; id: number; failure: FailureInfo; how: "uncaught exception" | "unhandled rejection" }
  | { t: "pong"; seq: number }
  /** The thread fell idle and collected its garbage; its young generation is this big now (V8 never shrinks it). */
  | { t: "idle"; youngBytes: number }
  /** The thread went idle after handling the first `n` batches the main thread sent it: what they resumed has answered. */
  | { t: "answered"; n: number };
