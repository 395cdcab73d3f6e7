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
 * The activation owns no I/O. An `ActivationHost` makes entries durable,
 * finds events and parks the run; the activation never lets the handler see
 * an outcome before `host.append` has resolved, so nothing the handler
 * observed can be lost in a crash.
 */
import type {
  AgentRequest,
  AgentWaitOptions,
  Duration,
  JsonObject,
  JsonValue,
  StepContext,
  StartWorkflowOptions,
  StepOptions,
  WaitForEventOptions,
  WorkflowContext,
  WorkflowLogger,
} from "../../sdk/workflow.js";
import { AgentTurnFailedError, ChildWorkflowFailedError } from "../../sdk/workflow.js";
import { createHash } from "node:crypto";
import { parseDuration, parseInstant } from "./duration.js";
import { DeterminismError, InvalidInputError, PayloadTooLargeError, WorkflowNotFoundError } from "./errors.js";
import {
  type AgentTurnRequest,
  type AgentWait,
  type TurnOutcome,
  type ChildOutcome,
  type ChildRequest,
  type ChildWait,
  type EventWait,
  type JournalEntry,
  type MatchedEvent,
  type NewEntry,
  type OperationType,
  operationTypeOf,
  type PendingWait,
} from "./journal.js";
import { type ResolvedRetryPolicy, resolveRetryPolicy, retryDelayMs } from "./retry.js";
import { failureToError, type FailureInfo, inputLimit, normalizeJson, stepResultLimit, storedJson, toFailureInfo, toJsonValue, type ValueLimits } from "./json.js";

export type ActivationOutcome =
  | { kind: "completed"; output: JsonValue }
  | { kind: "failed"; failure: FailureInfo }
  /** The run is parked on these waits; the host has already recorded them. */
  | { kind: "suspended"; waits: PendingWait[] }
  /** The host withdrew the activation (lease lost, cancelled, shutdown): persist nothing more. */
  | { kind: "aborted"; reason: unknown };

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
  /** The live logger; the activation mutes it while replaying. */
  readonly logger: WorkflowLogger;
  now(): Date;
}

export interface RunIdentity {
  runId: string;
  workflowName: string;
  input: JsonValue;
  createdAt: Date;
}

export type Handler = (input: never, ctx: WorkflowContext) => unknown;

interface Operation {
  readonly name: string;
  readonly type: OperationType;
  settled: boolean;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** Timers, event waits and retry backoffs that have not resolved. */
  wait?: PendingWait;
  /** A step waiting out a retry backoff: starts its next attempt. */
  retry?: () => void;
}

interface LiveStep {
  operation: Operation;
  fn: (step: StepContext) => unknown;
  policy: ResolvedRetryPolicy;
  timeoutMs: number | undefined;
  startedAt: Date;
}

export class Activation {
  private readonly replay: readonly JournalEntry[];
  private replayed = 0;
  /** Recorded entries by operation name, for start parameters (a timer's fire time) and determinism checks. */
  private readonly recorded = new Map<string, JournalEntry[]>();
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
  private fatal: { error: unknown; abort: boolean } | undefined;

  constructor(
    private readonly run: RunIdentity,
    journal: readonly JournalEntry[],
    private readonly host: ActivationHost,
  ) {
    this.replay = journal.filter((entry) => entry.name !== "");
    for (const entry of this.replay) {
      const list = this.recorded.get(entry.name);
      if (list) list.push(entry);
      else this.recorded.set(entry.name, [entry]);
    }
    this.nextSequence = (journal.at(-1)?.sequence ?? 0) + 1;
    this.nextDelivery = this.nextSequence;
  }

  get isReplaying(): boolean {
    return this.replayed < this.replay.length;
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
      if (this.host.signal.aborted) this.fail(this.host.signal.reason, true);
      if (this.fatal || this.handlerResult) {
        if (this.inFlight > 0 && !this.fatal?.abort) {
          // Steps the handler started but did not await still finish and persist before the run ends.
          await this.nextChange();
          continue;
        }
        return this.finalOutcome();
      }
      if (this.replayed < this.replay.length) {
        const entry = this.replay[this.replayed] as JournalEntry;
        const operation = this.operations.get(entry.name);
        if (!operation) {
          if (this.inFlight > 0) {
            await this.nextChange();
            continue;
          }
          this.fail(
            new DeterminismError(
              entry.name,
              `the journal of run ${this.run.runId} records "${entry.name}" (${entry.kind}) next, but workflow "${this.run.workflowName}" did not start that operation; the code changed under a running run — keep old operations for old runs or give new code new workflow names`,
            ),
            false,
          );
          continue;
        }
        this.replayed++;
        this.deliver(operation, entry);
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
      const waits = this.pendingWaits();
      if (this.startDueRetry(waits)) continue;
      if (waits.length === 0) {
        // Blocked on something that is not durable (a raw promise outside ctx): wait for it to move.
        await this.nextChange();
        continue;
      }
      const resolution = await this.resolveFromWorld(waits);
      if (resolution) {
        const operation = this.operations.get(resolution.name) as Operation;
        this.startWrite(resolution, operation);
        continue;
      }
      if (this.fatal) continue;
      try {
        if (await this.host.suspend(waits)) return { kind: "suspended", waits };
      } catch (error) {
        this.fail(error, true);
      }
    }
  }

  private finalOutcome(): ActivationOutcome {
    if (this.fatal) {
      return this.fatal.abort ? { kind: "aborted", reason: this.fatal.error } : { kind: "failed", failure: toFailureInfo(this.fatal.error) };
    }
    const result = this.handlerResult as NonNullable<typeof this.handlerResult>;
    if (!result.ok) return { kind: "failed", failure: toFailureInfo(result.error) };
    try {
      const output = result.value === undefined ? null : storedJson(result.value, "the workflow's return value", stepResultLimit(this.host.limits));
      return { kind: "completed", output };
    } catch (error) {
      return { kind: "failed", failure: toFailureInfo(error) };
    }
  }

  /**
   * An entry that resolves one of `waits` now: a matching event, an ended
   * child, a finished agent turn, or a timer / timeout that has come.
   * Events first: when an event and its deadline are both there, the event wins.
   */
  private async resolveFromWorld(waits: PendingWait[]): Promise<NewEntry | undefined> {
    const startedAt = this.host.now();
    try {
      return (
        (await this.eventArrived(waits, startedAt)) ??
        (await this.childEnded(waits, startedAt)) ??
        (await this.turnFinished(waits, startedAt)) ??
        this.deadlinePassed(waits, startedAt)
      );
    } catch (error) {
      // The store failed: this activation cannot go on (the next one retries from the journal).
      this.fail(error, true);
      return undefined;
    }
  }

  private async eventArrived(waits: readonly PendingWait[], startedAt: Date): Promise<NewEntry | undefined> {
    const events = waits.filter((w): w is EventWait => w.kind === "event");
    const match = events.length > 0 ? await this.host.findEvent(events) : undefined;
    if (!match) return undefined;
    const wait = events.find((w) => w.name === match.name) as EventWait;
    return {
      kind: "event_received",
      name: match.name,
      result: match.payload,
      eventId: match.eventId,
      eventType: wait.eventType,
      correlationId: wait.correlationId,
      attempt: 1,
      startedAt,
    };
  }

  private async childEnded(waits: readonly PendingWait[], startedAt: Date): Promise<NewEntry | undefined> {
    const children = waits.filter((w): w is ChildWait => w.kind === "child");
    const outcome = children.length > 0 ? await this.host.findChildOutcome(children) : undefined;
    if (!outcome) return undefined;
    const wait = children.find((w) => w.childRunId === outcome.childRunId) as ChildWait;
    const base = { name: wait.name, targetRunId: outcome.childRunId, attempt: 1, startedAt };
    if (outcome.status === "completed") return { kind: "child_completed", result: outcome.output ?? null, ...base };
    const cause = { name: outcome.error?.name ?? "Error", message: outcome.error?.message ?? outcome.status };
    const error = new ChildWorkflowFailedError(outcome.childRunId, outcome.workflowName, outcome.status, cause);
    const details = { childRunId: outcome.childRunId, workflowName: outcome.workflowName, status: outcome.status, failure: cause };
    return { kind: "child_failed", error: { ...toFailureInfo(error), details }, ...base };
  }

  private async turnFinished(waits: readonly PendingWait[], startedAt: Date): Promise<NewEntry | undefined> {
    const turns = waits.filter((w): w is AgentWait => w.kind === "agent");
    const outcome = turns.length > 0 ? await this.host.findTurnOutcome(turns) : undefined;
    if (!outcome) return undefined;
    const wait = turns.find((w) => w.turnId === outcome.turnId) as AgentWait;
    if (outcome.status === "completed") {
      return { kind: "agent_turn_completed", name: wait.name, result: outcome.result ?? null, targetTurnId: outcome.turnId, attempt: 1, startedAt };
    }
    return this.agentFailure(wait, outcome.error ?? { name: "Error", message: "agent turn failed" }, startedAt);
  }

  private deadlinePassed(waits: readonly PendingWait[], startedAt: Date): NewEntry | undefined {
    const now = this.host.now().getTime();
    for (const wait of waits) {
      if (wait.kind === "agent" && wait.timeoutAt && wait.timeoutAt.getTime() <= now) {
        return this.agentFailure(wait, { name: "AgentTimeoutError", message: `no result within the timeout (until ${wait.timeoutAt.toISOString()})` }, startedAt);
      }
      if (wait.kind === "timer" && wait.fireAt.getTime() <= now) {
        return { kind: "timer_fired", name: wait.name, fireAt: wait.fireAt, attempt: 1, startedAt };
      }
      if (wait.kind === "event" && wait.timeoutAt && wait.timeoutAt.getTime() <= now) {
        return {
          kind: "event_wait_timed_out",
          name: wait.name,
          eventType: wait.eventType,
          correlationId: wait.correlationId,
          timeoutAt: wait.timeoutAt,
          attempt: 1,
          startedAt,
        };
      }
    }
    return undefined;
  }

  /** A step whose backoff has passed runs its next attempt now (nothing is journaled for the wake-up itself). */
  private startDueRetry(waits: readonly PendingWait[]): boolean {
    const now = this.host.now().getTime();
    const due = waits.find((w) => w.kind === "retry" && w.fireAt.getTime() <= now);
    const operation = due && this.operations.get(due.name);
    const retry = operation?.retry;
    if (!operation || !retry) return false;
    delete operation.wait;
    delete operation.retry;
    retry();
    return true;
  }

  private agentFailure(wait: AgentWait, failure: FailureInfo, startedAt: Date): NewEntry {
    const cause = { name: failure.name, message: failure.message };
    const error = new AgentTurnFailedError(wait.turnId, wait.agent, cause);
    return {
      kind: "agent_turn_failed",
      name: wait.name,
      error: { ...toFailureInfo(error), details: { turnId: wait.turnId, agent: wait.agent, failure: cause } },
      targetTurnId: wait.turnId,
      attempt: 1,
      startedAt,
    };
  }

  private pendingWaits(): PendingWait[] {
    const waits: PendingWait[] = [];
    for (const operation of this.operations.values()) if (!operation.settled && operation.wait) waits.push(operation.wait);
    return waits;
  }

  /** Hands one journal entry's outcome to its operation. */
  private deliver(operation: Operation, entry: NewEntry): void {
    if (operation.settled) return;
    switch (entry.kind) {
      case "step_completed":
        return this.settle(operation, () => operation.resolve(entry.result));
      case "step_failed":
        return this.settle(operation, () => operation.reject(failureToError(entry.error ?? { name: "Error", message: "step failed" })));
      case "timer_fired":
        return this.settle(operation, () => operation.resolve(undefined));
      case "event_received":
        return this.settle(operation, () => operation.resolve(entry.result ?? null));
      case "event_wait_timed_out":
        return this.settle(operation, () => operation.resolve(null));
      case "child_started":
        return this.settle(operation, () =>
          entry.error ? operation.reject(failureToError(entry.error)) : operation.resolve(entry.targetRunId),
        );
      case "agent_turn_started":
        return this.settle(operation, () => operation.resolve(entry.targetTurnId));
      case "agent_turn_completed":
        return this.settle(operation, () => operation.resolve(entry.result ?? null));
      case "agent_turn_failed":
        return this.settle(operation, () => operation.reject(failureToError(entry.error ?? { name: "Error", message: "agent turn failed" })));
      case "child_completed":
        return this.settle(operation, () => operation.resolve(entry.result ?? null));
      case "child_failed":
        return this.settle(operation, () => operation.reject(failureToError(entry.error ?? { name: "Error", message: "child failed" })));
      default:
        // Start markers (timer_started, event_wait_started) and attempt records resolve nothing.
        return;
    }
  }

  private settle(operation: Operation, apply: () => void): void {
    operation.settled = true;
    delete operation.wait;
    apply();
  }

  /** Journals `entry` in the background; the handler sees it when its sequence number comes up. */
  private startWrite(entry: NewEntry, operation: Operation): void {
    const sequence = this.nextSequence++;
    this.inFlight++;
    this.host.append(entry).then(
      () => {
        this.committed.set(sequence, { entry, operation });
      },
      (error: unknown) => {
        this.fail(error, true);
      },
    ).finally(() => {
      this.inFlight--;
      this.poke();
    });
  }

  private poke(): void {
    this.changed = true;
    const wake = this.wakeLoop;
    this.wakeLoop = undefined;
    wake?.();
  }

  private async nextChange(): Promise<void> {
    if (this.changed) {
      this.changed = false;
      return;
    }
    await new Promise<void>((resolve) => (this.wakeLoop = resolve));
    this.changed = false;
  }

  /** Records a fatal condition; returns the error to throw into the handler. */
  private fail(error: unknown, abort: boolean): unknown {
    this.fatal ??= { error, abort };
    this.poke();
    return this.fatal.error;
  }

  private createContext(): WorkflowContext {
    return {
      runId: this.run.runId,
      workflowName: this.run.workflowName,
      log: this.replayAwareLogger(),
      step: (name, fn, options) => this.step(name, fn, options),
      sleep: (name, duration) => this.sleep(name, () => new Date(this.host.now().getTime() + parseDuration(duration))),
      sleepUntil: (name, when) => this.sleep(name, () => parseInstant(when)),
      waitForEvent: <T>(name: string, eventType: string, correlationId: string, options?: WaitForEventOptions) =>
        this.waitForEvent(name, eventType, correlationId, options) as Promise<T | null>,
      startWorkflow: (name, workflowName, input, options) => this.startWorkflow(name, workflowName, input, options),
      waitForWorkflow: <T>(name: string, runId: string) => this.waitForWorkflow(name, runId) as Promise<T>,
      // Two operations: `name` starts the child, `name/result` waits for it.
      runWorkflow: async <T>(name: string, workflowName: string, input?: JsonObject, options?: StartWorkflowOptions) =>
        this.waitForWorkflow(`${name}/result`, await this.startWorkflow(name, workflowName, input, options)) as Promise<T>,
      startAgent: (name, request) => this.startAgent(name, request),
      runAgent: async <T>(name: string, request: AgentRequest, options: AgentWaitOptions = {}) => {
        // The deadline is journaled with the turn's start, so every replay waits for the same instant.
        const recordedStart = this.recorded.get(name)?.find((e) => e.kind === "agent_turn_started");
        let timeoutAt = recordedStart?.timeoutAt;
        if (!recordedStart && options.timeout !== undefined) {
          try {
            timeoutAt = new Date(this.host.now().getTime() + parseDuration(options.timeout));
          } catch (error) {
            return rejected(this.invalid(name, "runAgent", error));
          }
        }
        const turnId = await this.startAgent(name, request, timeoutAt);
        const agent = typeof request.agent === "string" && request.agent ? request.agent : name;
        return this.waitForAgent(`${name}/result`, turnId, agent, timeoutAt) as Promise<T>;
      },
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

  /**
   * Registers operation `name` and returns it with its recorded entries. A
   * reused name or a journal that recorded the name as another kind of
   * operation is a determinism error: it fails the run, whatever the handler catches.
   */
  private register<T>(name: string, type: OperationType): { operation: Operation; promise: Promise<T>; recorded: JournalEntry[] } {
    if (this.fatal) throw this.fatal.error;
    if (typeof name !== "string" || name.length === 0) {
      throw this.fail(new DeterminismError(String(name), `every ctx operation needs a non-empty name (got ${JSON.stringify(name)})`), false);
    }
    if (this.operations.has(name)) {
      throw this.fail(
        new DeterminismError(
          name,
          `operation name "${name}" is used twice in workflow "${this.run.workflowName}" (run ${this.run.runId}); names identify durable operations and must be unique within a run — give each call its own name, e.g. "${name}-2" or a name built from a loop index`,
        ),
        false,
      );
    }
    const recorded = this.recorded.get(name) ?? [];
    const first = recorded[0];
    if (first && operationTypeOf(first.kind) !== type) {
      throw this.fail(
        new DeterminismError(
          name,
          `operation "${name}" in workflow "${this.run.workflowName}" (run ${this.run.runId}) is a ctx.${type} now but the journal recorded it as ${first.kind}; the workflow code changed under a running run — keep old names for old behaviour or give the new operation a new name`,
        ),
        false,
      );
    }
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
    return { operation, promise, recorded };
  }

  /** An invalid argument to a durable primitive fails the run, naming the operation. */
  private invalid(name: string, primitive: string, error: unknown): unknown {
    const cause = error instanceof Error ? error.message : String(error);
    const failure = new Error(`ctx.${primitive}("${name}"): ${cause}`);
    failure.name = "InvalidOperationError";
    return this.fail(failure, false);
  }

  private step<T>(name: string, fn: (step: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T> {
    const { operation, promise, recorded } = this.register<T>(name, "step");
    if (recorded.some((e) => e.kind === "step_completed" || e.kind === "step_failed")) return promise;
    let policy: ResolvedRetryPolicy;
    let timeoutMs: number | undefined;
    try {
      policy = resolveRetryPolicy(options?.retry);
      timeoutMs = options?.timeout === undefined ? undefined : parseDuration(options.timeout);
    } catch (error) {
      return rejected(this.invalid(name, "step", error));
    }
    const failures = recorded.filter((e) => e.kind === "step_attempt_failed");
    const attempt = failures.length + 1;
    const startedAt = recorded[0]?.startedAt ?? this.host.now();
    const live = { operation, fn: fn as (step: StepContext) => unknown, policy, timeoutMs, startedAt };
    const retryAt = failures.at(-1)?.fireAt;
    if (retryAt && retryAt.getTime() > this.host.now().getTime()) this.awaitRetry(live, attempt, retryAt);
    else this.runAttempt(live, attempt);
    return promise;
  }

  /** Parks a step until its backoff passes; the run may suspend meanwhile (the backoff is durable). */
  private awaitRetry(live: LiveStep, attempt: number, retryAt: Date): void {
    live.operation.wait = { kind: "retry", name: live.operation.name, fireAt: retryAt, nextAttempt: attempt };
    live.operation.retry = () => this.runAttempt(live, attempt);
  }

  private runAttempt(live: LiveStep, attempt: number): void {
    const { operation, policy, startedAt } = live;
    const name = operation.name;
    const lost = this.host.leaseLost?.();
    if (lost) {
      this.fail(lost, true);
      return;
    }
    this.inFlight++;
    void this.runStep(name, live.fn, attempt, live.timeoutMs)
      .then((settled) => {
        if ("value" in settled) {
          this.startWrite({ kind: "step_completed", name, attempt, startedAt, ...(settled.value === undefined ? {} : { result: settled.value }) }, operation);
          return;
        }
        const delayMs = retryDelayMs(policy, attempt, settled.failure);
        if (delayMs === undefined) {
          this.startWrite({ kind: "step_failed", name, error: settled.failure, attempt, startedAt }, operation);
          return;
        }
        const retryAt = new Date(this.host.now().getTime() + delayMs);
        this.startWrite({ kind: "step_attempt_failed", name, error: settled.failure, attempt, startedAt, fireAt: retryAt }, operation);
        this.awaitRetry(live, attempt + 1, retryAt);
      })
      .finally(() => {
        this.inFlight--;
        this.poke();
      });
  }

  /** One attempt of a step's function; a timeout aborts its signal and fails the attempt whatever the function does. */
  private async runStep(
    name: string,
    fn: (step: StepContext) => unknown,
    attempt: number,
    timeoutMs: number | undefined,
  ): Promise<{ value: JsonValue | undefined } | { failure: FailureInfo }> {
    const timeout = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      if (timeoutMs === undefined) return;
      timer = setTimeout(() => {
        const error = new Error(`step "${name}" attempt ${attempt} timed out after ${timeoutMs} ms`);
        error.name = "StepTimeoutError";
        timeout.abort(error);
        reject(error);
      }, timeoutMs);
    });
    timedOut.catch(() => undefined);
    const signal = timeoutMs === undefined ? this.host.signal : AbortSignal.any([this.host.signal, timeout.signal]);
    try {
      const value = await Promise.race([fn({ idempotencyKey: `${this.run.runId}:${name}`, attempt, signal }), timedOut]);
      if (value === undefined) return { value: undefined };
      return { value: storedJson(value, `step "${name}" result`, stepResultLimit(this.host.limits)) };
    } catch (error) {
      return { failure: toFailureInfo(error) };
    } finally {
      clearTimeout(timer);
    }
  }

  private startWorkflow(name: string, workflowName: string, input: JsonObject = {}, options: StartWorkflowOptions = {}): Promise<string> {
    const { operation, promise, recorded } = this.register<string>(name, "child");
    if (recorded.length > 0) return promise;
    let request: ChildRequest;
    try {
      if (typeof workflowName !== "string" || workflowName.length === 0) throw new Error("workflowName must be a non-empty string");
      const json = normalizeJson(toJsonValue(input, "the child's input"));
      if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("the child's input must be a JSON object");
      request = { name, childRunId: childRunId(this.run.runId, name), workflowName, input: json, detached: options.detached === true };
    } catch (error) {
      return rejected(this.invalid(name, "startWorkflow", error));
    }
    const startedAt = this.host.now();
    this.inFlight++;
    // If the process dies between creating the child and journaling it, the replay derives the same id and finds it.
    this.host
      .startChild(request)
      .then(
        () => ({ kind: "child_started" as const, name, targetRunId: request.childRunId, attempt: 1, startedAt }),
        (error: unknown) => {
          // Only a bad request is the child's creation error; a store failure stops the activation (retried later).
          const badRequest = error instanceof WorkflowNotFoundError || error instanceof InvalidInputError || error instanceof PayloadTooLargeError;
          if (!badRequest) throw error;
          return { kind: "child_started" as const, name, error: toFailureInfo(error), attempt: 1, startedAt };
        },
      )
      .then((entry) => this.startWrite(entry, operation))
      .catch((error: unknown) => this.fail(error, true))
      .finally(() => {
        this.inFlight--;
        this.poke();
      });
    return promise;
  }

  private startAgent(name: string, request: AgentRequest, timeoutAt?: Date): Promise<string> {
    const { operation, promise, recorded } = this.register<string>(name, "agent");
    if (recorded.length > 0) return promise;
    let turn: AgentTurnRequest;
    try {
      if (typeof request !== "object" || request === null) throw new Error("the request must be an object like { text: \"...\" }");
      const { agent = name, text, ...rest } = request;
      if (typeof agent !== "string" || agent.length === 0) throw new Error("agent must be a non-empty string");
      if (typeof text !== "string") throw new Error("text must be a string");
      const params = storedJson({ ...rest, text }, "the agent request", inputLimit(this.host.limits)) as { [key: string]: JsonValue };
      delete params.text;
      turn = { name, turnId: derivedId(this.run.runId, `agent:${name}`), agent, text, params };
    } catch (error) {
      return rejected(this.invalid(name, "startAgent", error));
    }
    const startedAt = this.host.now();
    this.inFlight++;
    // Like children: a turn created just before a crash is found again under the same id.
    this.host
      .startAgentTurn(turn)
      .then(() =>
        this.startWrite(
          { kind: "agent_turn_started", name, targetTurnId: turn.turnId, attempt: 1, startedAt, ...(timeoutAt ? { timeoutAt } : {}) },
          operation,
        ),
      )
      .catch((error: unknown) => this.fail(error, true))
      .finally(() => {
        this.inFlight--;
        this.poke();
      });
    return promise;
  }

  private waitForAgent(name: string, turnId: string, agent: string, timeoutAt: Date | undefined): Promise<unknown> {
    const { operation, promise, recorded } = this.register<unknown>(name, "agent_wait");
    if (recorded.length > 0) return promise;
    operation.wait = { kind: "agent", name, turnId, agent, timeoutAt };
    return promise;
  }

  private waitForWorkflow(name: string, runId: string): Promise<unknown> {
    const { operation, promise, recorded } = this.register<unknown>(name, "child_wait");
    if (recorded.length > 0) return promise;
    if (typeof runId !== "string" || runId.length === 0) return rejected(this.invalid(name, "waitForWorkflow", new Error("runId must be a run id")));
    operation.wait = { kind: "child", name, childRunId: runId };
    return promise;
  }

  private sleep(name: string, fireAtOf: () => Date): Promise<void> {
    const { operation, promise, recorded } = this.register<void>(name, "timer");
    const started = recorded.find((e) => e.kind === "timer_started");
    let fireAt: Date;
    if (started?.fireAt) {
      fireAt = started.fireAt;
    } else {
      try {
        fireAt = fireAtOf();
      } catch (error) {
        return rejected(this.invalid(name, "sleep", error));
      }
      this.startWrite({ kind: "timer_started", name, fireAt, attempt: 1, startedAt: this.host.now() }, operation);
    }
    if (!recorded.some((e) => e.kind === "timer_fired")) operation.wait = { kind: "timer", name, fireAt };
    return promise;
  }

  private waitForEvent(name: string, eventType: string, correlationId: string, options: WaitForEventOptions = {}): Promise<unknown> {
    const { operation, promise, recorded } = this.register<unknown>(name, "event");
    const started = recorded.find((e) => e.kind === "event_wait_started");
    let wait: EventWait;
    if (started) {
      wait = {
        kind: "event",
        name,
        eventType: started.eventType ?? eventType,
        correlationId: started.correlationId ?? correlationId,
        timeoutAt: started.timeoutAt,
        lookbackFrom: started.lookbackFrom,
      };
    } else {
      try {
        if (typeof eventType !== "string" || eventType.length === 0) throw new Error("eventType must be a non-empty string");
        if (typeof correlationId !== "string") throw new Error("correlationId must be a string");
        const now = this.host.now();
        const timeoutAt = options.timeout === undefined ? undefined : new Date(now.getTime() + parseDuration(options.timeout));
        const lookback = options.lookback ?? "run";
        const lookbackFrom =
          lookback === "all" ? undefined : lookback === "run" ? this.run.createdAt : new Date(now.getTime() - parseDuration(lookback));
        wait = { kind: "event", name, eventType, correlationId, timeoutAt, lookbackFrom };
      } catch (error) {
        return rejected(this.invalid(name, "waitForEvent", error));
      }
      this.startWrite(
        {
          kind: "event_wait_started",
          name,
          eventType: wait.eventType,
          correlationId: wait.correlationId,
          ...(wait.timeoutAt ? { timeoutAt: wait.timeoutAt } : {}),
          ...(wait.lookbackFrom ? { lookbackFrom: wait.lookbackFrom } : {}),
          attempt: 1,
          startedAt: this.host.now(),
        },
        operation,
      );
    }
    if (!recorded.some((e) => e.kind === "event_received" || e.kind === "event_wait_timed_out")) operation.wait = wait;
    return promise;
  }
}

/** A child's run id is a function of its parent and the operation name: creating it twice finds the first. */
export function childRunId(parentRunId: string, name: string): string {
  return derivedId(parentRunId, name);
}

/** A UUID that is a pure function of its inputs (version 8). */
function derivedId(runId: string, name: string): string {
  const bytes = createHash("sha256").update(`${runId}\u0000${name}`).digest();
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x80; // UUID version 8 (custom)
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80; // RFC 4122 variant
  const hex = bytes.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** A rejected promise already marked handled: the handler decides whether to await it. */
function rejected(error: unknown): Promise<never> {
  const promise = Promise.reject(error);
  promise.catch(() => undefined);
  return promise;
}

export type { Duration };
