/**
 * What every primitive file is made of. A primitive (step, timer, event,
 * child, agent) owns, in one file: its `ctx` methods (written against the
 * `OperationKernel` the activation lends it), the journal entries it writes and
 * how each settles its operation on replay, the wait it parks the run on, how
 * the world or the clock resolves that wait, and how all of it is described to
 * people (`waiting_on`, history summaries, the CLI and the console).
 */
import type { WorkflowContext } from "../../../sdk/workflow.js";
import type { ActivationHost } from "../host.js";
import type { EntryKind, EntryOf, JournalEntry, NewEntry } from "../journal.js";
import type { PendingWait, WaitRecord } from "../waits.js";

/** The kind of durable operation a `ctx` call is, for determinism checks. */
export type OperationType = "step" | "timer" | "event" | "child" | "child_wait" | "agent" | "agent_wait" | "value" | "patch";

/** One named `ctx` call in this activation. */
export interface Operation {
  readonly name: string;
  readonly type: OperationType;
  settled: boolean;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** Timers, event waits, child and agent waits and retry backoffs that have not resolved. */
  wait?: PendingWait;
  /** A step waiting out a retry backoff: starts its next attempt. */
  retry?: () => void;
}

export interface RunIdentity {
  runId: string;
  workflowName: string;
  input: unknown;
  createdAt: Date;
}

/** What the activation lends a primitive's `ctx` methods. */
export interface OperationKernel {
  readonly run: RunIdentity;
  readonly host: ActivationHost;
  /**
   * Registers operation `name` and returns it with its recorded entries. A reused name or a journal that
   * recorded the name as another type of operation is a determinism error that fails the run.
   */
  register<T>(name: string, type: OperationType): { operation: Operation; promise: Promise<T>; recorded: readonly JournalEntry[] };
  /** Entries the journal holds for `name` (for operations that read another's start, like runAgent's deadline). */
  recorded(name: string): readonly JournalEntry[];
  /** Journals `entry` in the background; the handler sees it when its sequence number comes up. */
  write(entry: NewEntry, operation: Operation): void;
  /**
   * Journals `entry` (of an operation already settled) with the next write, in the same statement: no commit
   * of its own. Entries still deferred when the handler returns go with the activation's final write.
   */
  defer(entry: NewEntry, operation: Operation): void;
  /** Whether the handler is still inside the journal's recorded entries (the replay cursor has not reached the end). */
  replaying(): boolean;
  /** Work in flight that must finish (or fail the activation) before the activation may suspend. */
  track(work: Promise<unknown>): void;
  /** Records a fatal condition (a determinism error, or with `abort` a host failure); returns the error to throw. */
  fail(error: unknown, abort: boolean): unknown;
  /** An invalid argument to a durable primitive: fails the run, naming the operation; returns a rejected promise. */
  invalid(name: string, primitive: string, error: unknown): Promise<never>;
  /** Wakes the quiet-point loop (a step attempt finished). */
  poke(): void;
}

/** How one entry kind settles its operation on delivery, and how it reads in a history. */
export interface EntryDescriptor<E extends NewEntry> {
  /** The operation type that writes this kind (determinism checks); run-level entries have none. */
  readonly operation?: OperationType;
  /** Resolves or rejects the operation; start markers and attempt records settle nothing. */
  settle?(entry: E, operation: Operation): void;
  /** One line for people: "step charge completed", "timer cool-off fires at 2026-12-05T10:00:00.000Z". */
  summary(entry: E): string;
}

export type EntryDescriptors<K extends EntryKind> = { readonly [P in K]: EntryDescriptor<EntryOf<P>> };

/** A wait kind: its shape, how it is stored, described and shown, and what resolves it. */
export interface WaitDescriptor<W extends PendingWait, R extends WaitRecord> {
  readonly kind: W["kind"];
  /** When the clock alone wakes the run for this wait (undefined: only the world can). */
  deadline(wait: W): Date | undefined;
  /** The JSON the store keeps in `runs.waiting_on`. */
  record(wait: W): R;
  /** One line for people, from the stored record: "event order.paid (correlation o-1) until …". */
  describe(record: R): string;
  /** The `cairn.v1.WaitingOn` target oneof: its case and plain fields (Dates become Timestamps at the edge). */
  target(record: R): { case: string; value: Record<string, unknown> };
  /** The entry that resolves the wait when its deadline has passed at `now` (undefined: not yet). */
  byClock?(wait: W, now: Date, startedAt: Date): NewEntry | undefined;
  /** The entry that resolves one of these waits from the world (an event, an ended child, a finished turn). */
  byWorld?(host: ActivationHost, waits: readonly W[], startedAt: Date): Promise<NewEntry | undefined>;
}

export type ContextMethods<K extends keyof WorkflowContext> = (kernel: OperationKernel) => Pick<WorkflowContext, K>;
