/**
 * The `ActivationHost` an activation sees on a workflow thread: each method posts a request to the main thread,
 * whose executor host (server/worker/executor.ts) does the real work and posts the reply. Whenever this activation's
 * code is about to run (its handler starts, a step function is called, a reply resumes it, its driver passes a quiet
 * point) its id goes into the thread's shared slot, so the watchdog can blame exactly this run if that code blocks.
 *
 * Appends run ahead of their commit, one at a time. Waiting on this thread for each append's reply costs two hops
 * between threads (the reply, then whatever the code does next), and a hop to a thread that sat idle costs 0.1–0.5 ms
 * on a VM. So an append resolves at once when no other is ahead, and the code goes on while the main thread commits.
 * Nothing it does can outrun the commit:
 * - a step's function starts only once the entry ahead has committed (a step's side effects never act on an outcome
 *   that a crash could still take back), and only if the lease is still certainly held then;
 * - every host call made after the code may have seen that outcome goes marked `after`, and the main thread makes it
 *   only once the entry committed (a child is not created, a run does not park, on an uncommitted outcome);
 * - the main thread settles the activation's end only once its appends committed (workflow-threads.ts).
 * If the append fails, the activation is aborted, as an append that failed before the code saw it would abort it.
 * What this saves: a run whose last step is followed by its end sends the step's entry and the end in one message,
 * and the main thread writes the entry with the end, in one statement (workflow-threads.ts, `appendsBeforeEnds`).
 */
import type { WorkflowLogger } from "../../../sdk/workflow.js";
import type { ActivationHost, StepAttemptScope, StepAttemptStart } from "../../core/host.js";
import { LeaseLostError } from "../../core/errors.js";
import type { ValueLimits } from "../../core/json.js";
import type { Outbox } from "./outbox.js";
import type { AttemptOutcome, EndedAttempt, FromThread, HostCallName, WireError } from "./protocol.js";
import type { RunningSlot } from "./running-slot.js";
import { fromWire } from "./wire-error.js";

type CallMessage = Extract<FromThread, { t: "call" }>;

export class ThreadHost implements ActivationHost {
  private readonly controller = new AbortController();
  private readonly pending = new Map<number, { resolve: (value: never) => void; reject: (error: unknown) => void }>();
  private nextCall = 1;
  private nextAttempt = 1;
  /** The call number of the append that resolved before its commit, while it is not yet confirmed. */
  private ahead: number | undefined;
  /** The code passed a quiet point since: it may have seen the outcome of the append ahead. */
  private aheadSeen = false;
  /** Step functions waiting for the append ahead to commit. */
  private aheadWaiters: (() => void)[] = [];
  /** A step attempt that ended, for the append of its entry (which follows at once) to carry. */
  private endedAttempt: EndedAttempt | undefined;
  readonly logger: WorkflowLogger;
  /** The controller's signal, read once: the activation's driver checks it at every quiet point. */
  readonly signal: AbortSignal = this.controller.signal;

  constructor(
    private readonly id: number,
    private readonly runId: string,
    private readonly outbox: Outbox,
    private readonly slot: RunningSlot,
    readonly limits: ValueLimits | undefined,
    /** Until when the lease is certainly held (epoch ms), kept current by the watchdog's pings. */
    public validUntil: number | undefined,
    readonly holdClockWaitsMs: number | undefined,
  ) {
    this.logger = new ThreadLogger(id, outbox);
  }

  /** The main thread withdrew the activation (lease lost, cancel, shutdown, pause). */
  abort(reason: WireError): void {
    this.slot.enter(this.id);
    this.controller.abort(fromWire(reason));
  }

  /** The main thread answered call `call`. */
  settle(call: number, ok: boolean, value: unknown): void {
    if (call === this.ahead) return this.confirm(ok, value);
    const waiter = this.pending.get(call);
    if (!waiter) return;
    this.pending.delete(call);
    this.slot.enter(this.id);
    if (ok) waiter.resolve(value as never);
    else waiter.reject(fromWire(value as WireError));
  }

  /** The append ahead committed, or failed: then the activation ends as if it had failed before the code saw it. */
  private confirm(ok: boolean, value: unknown): void {
    this.ahead = undefined;
    this.aheadSeen = false;
    const waiters = this.aheadWaiters.splice(0);
    this.slot.enter(this.id);
    // (On failure the waiting step functions never start: the abort ends the activation without them.)
    if (!ok) this.controller.abort(fromWire(value as WireError));
    else for (const wake of waiters) wake();
  }

  /** The activation's driver resumes the code: from here on, it may have seen the outcome of the append ahead. */
  enter(): void {
    if (this.ahead !== undefined) this.aheadSeen = true;
    this.slot.enter(this.id);
  }

  now(): Date {
    return new Date();
  }

  leaseLost(): Error | undefined {
    return this.validUntil !== undefined && Date.now() >= this.validUntil
      ? new LeaseLostError(this.runId, "this process went longer than the lease without renewing it, so it starts no more steps")
      : undefined;
  }

  stepAttempt(step: StepAttemptStart): StepAttemptScope {
    const key = this.nextAttempt++;
    // With a timeout, the watchdog must know the attempt before its function can spin: it goes at once. Without one,
    // the main thread only counts and traces it, so it hears of the attempt once, when it ended (an attempt cut off
    // by its thread's end is then not counted: the activation's abnormal end is).
    const attempt = new ThreadStepAttempt(this, key, step);
    if (step.timeout) this.outbox.sendNow({ t: "attempt", id: this.id, key, step });
    return attempt;
  }

  /** Runs a step attempt's function: at once, or once the append ahead committed if the code may have seen it. */
  runAttempt<T>(attempt: ThreadStepAttempt, fn: () => T): T | Promise<Awaited<T>> {
    if (!this.aheadSeen) return attempt.start(fn);
    const afterCommit = (): T | Promise<never> => {
      // The wait may have outlasted the lease (the process was stopped meanwhile, and the run may have moved on
      // elsewhere): checked again, as the core checked before the wait. The function then never starts.
      const lost = this.leaseLost();
      if (!lost) return attempt.start(fn);
      this.controller.abort(lost);
      return new Promise<never>(() => undefined);
    };
    return new Promise<void>((resolve) => this.aheadWaiters.push(resolve)).then(afterCommit) as Promise<Awaited<T>>;
  }

  /** A step attempt's function starts: the watchdog's slot names it (and its deadline, if it has a timeout). */
  enterStep(key: number, name: string, deadline: number): void {
    this.slot.enterStep(this.id, key, name, deadline);
  }

  /** A step attempt ended. */
  endAttempt(key: number, step: StepAttemptStart, startedAt: number, outcome: AttemptOutcome, elapsedMs: number): void {
    if (step.timeout) {
      this.outbox.send({ t: "attempt_end", id: this.id, key, outcome, elapsedMs });
      return;
    }
    // The core journals the attempt's outcome right after this, in the same turn: that append carries it. If it
    // does not (the journal's byte budget refused the entry), it goes alone.
    this.endedAttempt = { step: { name: step.name, attempt: step.attempt, startedAt }, outcome, elapsedMs };
    queueMicrotask(this.sendEndedAttempt);
  }

  private readonly sendEndedAttempt = (): void => {
    const ended = this.takeEndedAttempt();
    if (ended) this.outbox.send({ t: "attempt_done", id: this.id, ...ended });
  };

  // Methods, not arrow-function fields: a thread makes a host per activation, and the core calls them as methods.
  append(entry: Parameters<ActivationHost["append"]>[0]): Promise<void> {
    if (this.ahead !== undefined) return this.call<void>("append", entry);
    const call = this.nextCall++;
    this.ahead = call;
    this.outbox.send(this.withAttempt({ t: "call", id: this.id, call, op: "append", arg: entry }));
    return Promise.resolve();
  }
  findEvent(waits: Parameters<ActivationHost["findEvent"]>[0]): ReturnType<ActivationHost["findEvent"]> {
    return this.call("findEvent", waits);
  }
  startChild(request: Parameters<ActivationHost["startChild"]>[0]): ReturnType<ActivationHost["startChild"]> {
    return this.call("startChild", request);
  }
  startAgentTurn(request: Parameters<ActivationHost["startAgentTurn"]>[0]): ReturnType<ActivationHost["startAgentTurn"]> {
    return this.call("startAgentTurn", request);
  }
  findTurnOutcome(waits: Parameters<ActivationHost["findTurnOutcome"]>[0]): ReturnType<ActivationHost["findTurnOutcome"]> {
    return this.call("findTurnOutcome", waits);
  }
  findChildOutcome(waits: Parameters<ActivationHost["findChildOutcome"]>[0]): ReturnType<ActivationHost["findChildOutcome"]> {
    return this.call("findChildOutcome", waits);
  }
  suspend(waits: Parameters<ActivationHost["suspend"]>[0]): ReturnType<ActivationHost["suspend"]> {
    return this.call("suspend", waits);
  }

  /** Drops every pending call: the activation is over (its thread-side state becomes garbage). */
  close(): void {
    this.pending.clear();
    this.aheadWaiters.length = 0;
  }

  private call<T>(op: HostCallName, arg: unknown): Promise<T> {
    const call = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(call, { resolve: resolve as (value: never) => void, reject });
      const message: CallMessage = this.aheadSeen ? { t: "call", id: this.id, call, op, arg, after: true } : { t: "call", id: this.id, call, op, arg };
      this.outbox.send(op === "append" ? this.withAttempt(message) : message);
    });
  }

  private withAttempt(message: CallMessage): CallMessage {
    const attempt = this.takeEndedAttempt();
    if (attempt) message.attempt = attempt;
    return message;
  }

  private takeEndedAttempt(): EndedAttempt | undefined {
    const ended = this.endedAttempt;
    this.endedAttempt = undefined;
    return ended;
  }
}

/** An activation's log records, sent to the main thread's logger (methods: one object per activation, not five). */
class ThreadLogger implements WorkflowLogger {
  constructor(
    private readonly id: number,
    private readonly outbox: Outbox,
  ) {}

  debug(message: string, fields?: Record<string, unknown>): void {
    this.send("debug", message, fields);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.send("info", message, fields);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.send("warn", message, fields);
  }
  error(message: string, fields?: Record<string, unknown>): void {
    this.send("error", message, fields);
  }

  private send(level: "debug" | "info" | "warn" | "error", message: string, fields: Record<string, unknown> | undefined): void {
    this.outbox.send({ t: "log", id: this.id, level, message, fields: cloneable(fields) });
  }
}

/** Log fields go by structured clone: anything that can't (functions, class instances with handles) goes as JSON. */
function cloneable(fields: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (fields === undefined) return undefined;
  try {
    structuredClone(fields);
    return fields;
  } catch {
    try {
      return JSON.parse(JSON.stringify(fields)) as Record<string, unknown>;
    } catch {
      return { fields: String(fields) };
    }
  }
}

/**
 * One step attempt as its thread host sees it. A class, not a scope of closures: an attempt is made every step, and
 * its closures were a twentieth of what a workflow thread allocated in W1 (sampled).
 */
class ThreadStepAttempt implements StepAttemptScope {
  private readonly started = performance.now();
  private readonly startedAt = Date.now();

  constructor(
    private readonly host: ThreadHost,
    private readonly key: number,
    private readonly step: StepAttemptStart,
  ) {}

  run<T>(fn: () => T): T | Promise<Awaited<T>> {
    return this.host.runAttempt(this, fn);
  }

  start<T>(fn: () => T): T {
    this.host.enterStep(this.key, this.step.name, this.step.timeout ? this.startedAt + this.step.timeout.ms : 0);
    return fn();
  }

  end(outcome: AttemptOutcome): void {
    this.host.endAttempt(this.key, this.step, this.startedAt, outcome, performance.now() - this.started);
  }
}
