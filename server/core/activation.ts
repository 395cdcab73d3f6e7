/**
 * One activation of a run: call the handler and feed it outcomes, one at a
 * time, in journal order. Outcomes come from the journal first (replay); after
 * that, from live steps as they commit, and — when the handler is blocked with
 * nothing in flight — from the world: a due timer or a matching event, chosen
 * here and journaled before the handler sees it. When nothing can move, the
 * activation suspends and the run waits in the database.
 *
 * Delivering exactly one outcome per quiet point, in sequence order, makes
 * replay reproduce the live run even through Promise.race and Promise.all:
 * the handler sees the same outcomes in the same order at the same points.
 *
 * This file is the driver: the quiet-point loop and the `OperationKernel` it
 * lends the primitives (primitives/*.ts own the `ctx` methods, their entries
 * and their waits; replay.ts owns matching and determinism checks). It owns no
 * I/O: an `ActivationHost` makes entries durable, finds events and parks the
 * run, and the activation never lets the handler see an outcome before
 * `host.append` has resolved, so nothing the handler observed can be lost in a crash.
 */
import type { Duration, JsonValue, WorkflowContext, WorkflowLogger } from "../../sdk/workflow.js";
import type { ActivationHost } from "./host.js";
import type { NewEntry } from "./journal.js";
import { type FailureInfo, stepResultLimit, storedJson, toFailureInfo } from "./json.js";
import { primitiveMethods, settleWith } from "./primitives/index.js";
import type { Operation, OperationKernel, OperationType, RunIdentity } from "./primitives/primitive.js";
import { rejected } from "./primitives/settled.js";
import { startDueRetry } from "./primitives/step.js";
import { Replay } from "./replay.js";
import { DeterminismError } from "./errors.js";
import type { JournalEntry } from "./journal.js";
import { JournalBudget } from "./journal-budget.js";
import { nextDeadline, onClockAlone, type PendingWait, waitDescriptors } from "./waits.js";

export type { ActivationHost } from "./host.js";
export type { RunIdentity } from "./primitives/primitive.js";
export { childRunId } from "./ids.js";

export type ActivationOutcome =
  /** `deferred`: entries (recorded values, patch markers) the host writes with the run's end, before it. */
  | { kind: "completed"; output: JsonValue; deferred?: NewEntry[] }
  | { kind: "failed"; failure: FailureInfo; deferred?: NewEntry[] }
  /**
   * The code no longer does what the recorded journal says (a DeterminismError found while replaying): the
   * host pauses the run with this reason instead of failing it, so a fixed deploy and ResumeRun continue it.
   */
  | { kind: "diverged"; failure: FailureInfo }
  /** The run is parked on these waits; the host has already recorded them. */
  | { kind: "suspended"; waits: PendingWait[] }
  /** The host withdrew the activation (lease lost, cancelled, shutdown): persist nothing more. */
  | { kind: "aborted"; reason: unknown };

/** The outcome ends the run (completed or failed), rather than parking it or giving it up. */
export function endsRun<O extends { kind: string }>(outcome: O): outcome is Extract<O, { kind: "completed" | "failed" }> {
  return outcome.kind === "completed" || outcome.kind === "failed";
}

/**
 * A run's end with `entries` (appended right before it, not yet written) journaled first, in the end's own statement.
 * Any other outcome is returned as it is.
 */
export function withEntriesFirst<O extends { kind: string; deferred?: NewEntry[] }>(outcome: O, entries: readonly NewEntry[]): O {
  if (entries.length === 0 || !endsRun(outcome)) return outcome;
  return { ...outcome, deferred: [...entries, ...(outcome.deferred ?? [])] };
}

export type Handler = (input: never, ctx: WorkflowContext) => unknown;

export interface ActivationOptions {
  /**
   * Check a recorded journal against the code, nothing more (cairn/testing's replay): the activation ends
   * `aborted` with ReplayComplete as soon as the recorded entries are all delivered, and a divergence is found
   * at once even while the code's new operations are in flight (the host never lets them finish).
   */
  replayOnly?: boolean;
}

/** A replay-only activation got through every recorded entry. */
export class ReplayComplete extends Error {
  override readonly name = "ReplayComplete";
}

export class Activation {
  private readonly replay: Replay;
  private readonly operations = new Map<string, Operation>();
  /** Live entries that committed, waiting for their turn (sequence order) to reach the handler. */
  private readonly committed = new Map<number, { entry: NewEntry; operation: Operation }>();
  private nextSequence: number;
  private nextDelivery: number;
  /** Live steps running and journal writes not yet committed. */
  private inFlight = 0;
  private changed = false;
  private wakeLoop: (() => void) | undefined;
  private handlerResult: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  /** A determinism error or host failure: it decides the outcome whatever the handler does with it. */
  private fatal: { error: unknown; abort: boolean; diverged: boolean } | undefined;
  /** Deferred entries (kernel.defer) with their sequence numbers: they go out with the next write. */
  private riders: { sequence: number; entry: NewEntry; operation: Operation }[] = [];
  private readonly kernel: OperationKernel;
  private readonly budget: JournalBudget;

  constructor(
    private readonly run: RunIdentity,
    journal: readonly JournalEntry[],
    private readonly host: ActivationHost,
    private readonly options: ActivationOptions = {},
  ) {
    this.replay = new Replay(run, journal);
    this.budget = new JournalBudget(run.runId, host.limits?.journalBytes, journal);
    this.nextSequence = (journal.at(-1)?.sequence ?? 0) + 1;
    this.nextDelivery = this.nextSequence;
    this.kernel = {
      run,
      host,
      register: (name, type) => this.register(name, type),
      recorded: (name) => this.replay.recordedFor(name),
      write: (entry, operation) => this.startWrite(entry, operation),
      defer: (entry, operation) => {
        this.riders.push({ sequence: this.nextSequence++, entry, operation });
      },
      replaying: () => this.replay.isReplaying,
      track: (work) => this.track(work),
      fail: (error, abort) => this.fail(error, abort),
      invalid: (name, primitive, error) => rejected(this.invalid(name, primitive, error)),
      poke: () => this.poke(),
    };
  }

  get isReplaying(): boolean {
    return this.replay.isReplaying;
  }

  async execute(handler: Handler): Promise<ActivationOutcome> {
    const onAbort = () => this.poke();
    this.host.signal.addEventListener("abort", onAbort);
    try {
      void Promise.resolve()
        .then(() => handler(this.run.input as never, this.createContext()))
        .then(
          (value: unknown) => (this.handlerResult = { ok: true, value }),
          (error: unknown) => (this.handlerResult = { ok: false, error }),
        )
        .finally(() => this.poke());
      return await this.loop();
    } finally {
      this.host.signal.removeEventListener("abort", onAbort);
    }
  }

  /** Delivers one outcome per quiet point until the handler settles or the run must suspend. */
  private async loop(): Promise<ActivationOutcome> {
    for (;;) {
      // Let the handler react to the last outcome until it blocks again.
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.host.enter?.();
      if (this.host.signal.aborted) this.fail(this.host.signal.reason, true);
      if (this.fatal || this.handlerResult) {
        // (A replay-only check never lets its in-flight work finish: it reports at once.)
        if (this.inFlight > 0 && !this.fatal?.abort && !this.options.replayOnly) {
          // Steps the handler started but did not await still finish and persist before the run ends.
          await this.nextChange();
          continue;
        }
        return this.finalOutcome();
      }
      if (this.options.replayOnly && !this.replay.isReplaying) return { kind: "aborted", reason: new ReplayComplete("every recorded entry replayed") };
      if (this.replay.isReplaying) {
        const next = this.replay.next(this.operations);
        if (next.kind === "blocked") {
          if (this.inFlight > 0 && !this.options.replayOnly) {
            await this.nextChange();
            continue;
          }
          this.fail(next.error, false);
          continue;
        }
        this.deliver(next.operation, next.entry);
        continue;
      }
      const ready = this.committed.get(this.nextDelivery);
      if (ready) {
        this.committed.delete(this.nextDelivery++);
        this.deliver(ready.operation, ready.entry);
        continue;
      }
      if (this.inFlight > 0) {
        await this.nextChange();
        continue;
      }
      if (startDueRetry(this.operations.values(), this.host.now())) continue;
      const waits = this.pendingWaits();
      if (waits.length === 0) {
        // Blocked on something that is not durable (a raw promise outside ctx): wait for it to move.
        await this.nextChange();
        continue;
      }
      const resolution = await this.resolveFromWorld(waits);
      if (resolution) {
        this.startWrite(resolution, this.operations.get(resolution.name) as Operation);
        continue;
      }
      if (this.fatal) continue;
      if (this.riders.length > 0) {
        // Parking without a write of its own (a child or retry wait): the deferred values need their own commit.
        this.startWrite(undefined, undefined);
        continue;
      }
      const holdMs = this.clockHold(waits);
      if (holdMs !== undefined) {
        // Due in a moment: wait here (the loop then resolves it by the clock) rather than park and be claimed again.
        // A poke (an abort, a step the handler left running) ends the wait early; the loop looks again.
        const timer = setTimeout(this.pokeFromTimer, holdMs);
        await this.nextChange();
        clearTimeout(timer);
        continue;
      }
      try {
        if (await this.host.suspend(waits)) return { kind: "suspended", waits };
      } catch (error) {
        this.fail(error, true);
      }
    }
  }

  private finalOutcome(): ActivationOutcome {
    if (this.fatal) {
      if (this.fatal.abort) return { kind: "aborted", reason: this.fatal.error };
      if (this.fatal.diverged) return { kind: "diverged", failure: toFailureInfo(this.fatal.error) };
      return { kind: "failed", failure: toFailureInfo(this.fatal.error), ...this.takeRiders() };
    }
    this.warnPending();
    const result = this.handlerResult as NonNullable<typeof this.handlerResult>;
    if (!result.ok) return { kind: "failed", failure: toFailureInfo(result.error), ...this.takeRiders() };
    try {
      const output = result.value === undefined ? null : storedJson(result.value, "the workflow's return value", stepResultLimit(this.host.limits));
      return { kind: "completed", output, ...this.takeRiders() };
    } catch (error) {
      return { kind: "failed", failure: toFailureInfo(error), ...this.takeRiders() };
    }
  }

  /** The deferred entries still unwritten, for the host's final write (absent when there are none). */
  private takeRiders(): { deferred?: NewEntry[] } {
    const deferred = this.riders.splice(0).map((rider) => rider.entry);
    return deferred.length > 0 ? { deferred } : {};
  }

  /** Operations the handler started but never saw end (a missing `await`, a lost race): likely a bug, so say which. */
  private warnPending(): void {
    const pending = [...this.operations.values()].filter((operation) => !operation.settled).map((operation) => operation.name);
    if (pending.length === 0) return;
    this.host.logger.warn(`workflow returned with operations still pending: ${pending.join(", ")} (a missing await?)`, { operations: pending });
  }

  /**
   * An entry that resolves one of `waits` now: from the world (an event, an
   * ended child, a finished agent turn, in the order of `waitDescriptors`), then
   * a deadline that has come. Events first: when an event and its deadline are
   * both there, the event wins.
   */
  private async resolveFromWorld(waits: PendingWait[]): Promise<NewEntry | undefined> {
    const startedAt = this.host.now();
    try {
      for (const descriptor of Object.values(waitDescriptors)) {
        if (!descriptor.byWorld) continue;
        const ofKind = waits.filter((w) => w.kind === descriptor.kind);
        if (ofKind.length === 0) continue;
        const entry = await descriptor.byWorld(this.host, ofKind as never, startedAt);
        if (entry) return entry;
      }
      const now = this.host.now();
      for (const wait of waits) {
        const entry = waitDescriptors[wait.kind].byClock?.(wait as never, now, startedAt);
        if (entry) return entry;
      }
      return undefined;
    } catch (error) {
      // The store failed: this activation cannot go on (the next one retries from the journal).
      this.fail(error, true);
      return undefined;
    }
  }

  private pendingWaits(): PendingWait[] {
    const waits: PendingWait[] = [];
    for (const operation of this.operations.values()) if (!operation.settled && operation.wait) waits.push(operation.wait);
    return waits;
  }

  /** Hands one journal entry's outcome to its operation. */
  private deliver(operation: Operation, entry: NewEntry): void {
    if (operation.settled) return;
    settleWith(
      entry,
      (apply) => {
        operation.settled = true;
        delete operation.wait;
        apply();
      },
      operation,
    );
  }

  /**
   * Journals `entry` in the background, preceded by the deferred entries (all appended in the same turn, so the
   * host's group commit carries them in one statement); the handler sees it when its sequence number comes up.
   * Without an entry, only the deferred ones are written.
   */
  private startWrite(entry: NewEntry | undefined, operation: Operation | undefined): void {
    const writes = this.riders.splice(0);
    if (entry && operation) writes.push({ sequence: this.nextSequence++, entry, operation });
    for (const write of writes) {
      const overBudget = this.budget.admit(write.entry);
      if (overBudget) {
        // Nothing of this turn is written: the run fails with the error (a run-level outcome, not a step failure to retry).
        this.fail(overBudget, false);
        return;
      }
    }
    this.inFlight++;
    Promise.all(writes.map((write) => this.host.append(write.entry)))
      .then(
        () => {
          for (const write of writes) this.committed.set(write.sequence, { entry: write.entry, operation: write.operation });
        },
        (error: unknown) => {
          this.fail(error, true);
        },
      )
      .finally(() => {
        this.inFlight--;
        this.poke();
      });
  }

  /** Work a primitive started (a step attempt, creating a child or a turn): the loop waits for it before suspending. */
  private track(work: Promise<unknown>): void {
    this.inFlight++;
    work
      .catch((error: unknown) => this.fail(error, true))
      .finally(() => {
        this.inFlight--;
        this.poke();
      });
  }

  /** How long to wait in place for `waits` (all the clock's, the earliest due within the host's hold), if so. */
  private clockHold(waits: readonly PendingWait[]): number | undefined {
    const holdWithinMs = this.host.holdClockWaitsMs;
    if (holdWithinMs === undefined || this.options.replayOnly) return undefined;
    if (!onClockAlone(waits)) return undefined;
    const due = nextDeadline(waits);
    if (due === undefined) return undefined;
    const inMs = due.getTime() - this.host.now().getTime();
    // (Already due: the clock resolved nothing only if this instant is a hair before it by the host's own clock.)
    return inMs <= holdWithinMs ? Math.max(1, inMs) : undefined;
  }

  private readonly pokeFromTimer = (): void => this.poke();

  private poke(): void {
    this.changed = true;
    const wake = this.wakeLoop;
    this.wakeLoop = undefined;
    wake?.();
  }

  /**
   * Waits for the next poke; a poke since the last call counts, and then there is nothing to wait for (no promise:
   * the loop passes here several times per step, and each promise was garbage).
   */
  private nextChange(): Promise<void> | undefined {
    if (this.changed) {
      this.changed = false;
      return undefined;
    }
    return new Promise<void>((resolve) => (this.wakeLoop = resolve)).then(this.changeSeen);
  }

  private readonly changeSeen = (): void => {
    this.changed = false;
  };

  /** Records a fatal condition; returns the error to throw into the handler. */
  private fail(error: unknown, abort: boolean): unknown {
    // Found while replaying recorded entries, a determinism error means the code changed under the run: it pauses.
    this.fatal ??= { error, abort, diverged: !abort && error instanceof DeterminismError && this.replay.isReplaying };
    this.poke();
    return this.fatal.error;
  }

  private createContext(): WorkflowContext {
    return {
      runId: this.run.runId,
      workflowName: this.run.workflowName,
      log: this.replayAwareLogger(),
      ...primitiveMethods(this.kernel),
    };
  }

  private replayAwareLogger(): WorkflowLogger {
    const logger = this.host.logger;
    const gate =
      (level: keyof WorkflowLogger) =>
      (message: string, fields?: Record<string, unknown>): void => {
        if (!this.isReplaying) logger[level](message, fields);
      };
    return { debug: gate("debug"), info: gate("info"), warn: gate("warn"), error: gate("error") };
  }

  private register<T>(name: string, type: OperationType): { operation: Operation; promise: Promise<T>; recorded: readonly JournalEntry[] } {
    if (this.fatal) throw this.fatal.error;
    const problem = this.replay.checkRegistration(name, type, this.operations.has(name));
    if (problem) throw this.fail(problem, false);
    let resolve!: (value: unknown) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res as (value: unknown) => void;
      reject = rej;
    });
    // An outcome nobody awaits (a lost Promise.race, a step started and never awaited) must not crash the process.
    promise.catch(() => undefined);
    const operation: Operation = { name, type, settled: false, resolve, reject };
    this.operations.set(name, operation);
    this.poke();
    return { operation, promise, recorded: this.replay.recordedFor(name) };
  }

  /** An invalid argument to a durable primitive fails the run, naming the operation. */
  private invalid(name: string, primitive: string, error: unknown): unknown {
    const cause = error instanceof Error ? error.message : String(error);
    const failure = new Error(`ctx.${primitive}("${name}"): ${cause}`);
    failure.name = "InvalidOperationError";
    return this.fail(failure, false);
  }
}

export type { Duration };
