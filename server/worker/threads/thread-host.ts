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
 *
 * On PostgreSQL the thread writes the appends itself (`direct`, thread-journal.ts) under the same rules: the append
 * ahead resolves at once, a step function waits for its commit, a call made after the code may have seen it goes
 * only once every write before it committed, and the end goes only once the writes settled (the last entries, if no
 * statement carried them yet, ride on the end instead: thread-main.ts).
 */
import type { WorkflowLogger } from "../../../sdk/workflow.js";
import { type ActivationOutcome, endsRun, withEntriesFirst } from "../../core/activation.js";
import type { ActivationHost, StepAttemptScope, StepAttemptStart } from "../../core/host.js";
import type { JournalEntry, NewEntry } from "../../core/journal.js";
import type { Fence } from "../../store/runs/lease.js";
import type { ThreadJournal, WriteAnswer } from "./thread-journal.js";
import { LeaseLostError } from "../../core/errors.js";
import type { ValueLimits } from "../../core/json.js";
import type { Outbox } from "./outbox.js";
import type { DirectReport } from "../activation-runner.js";
import type { AttemptOutcome } from "../../core/host.js";
import { attemptOutcomes, type EndedAttempt, type FromThread, type HostCallName, type WireError } from "./protocol.js";
import type { RunningSlot } from "./running-slot.js";
import { fromWire } from "./wire-error.js";

type CallMessage = Extract<FromThread, { t: "call" }>;

/** The thread's own writes of one activation (thread-journal.ts). */
export interface DirectWrites {
  journal: ThreadJournal;
  fence: Fence;
  nextSequence: number;
}

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
  /** Direct writes: settles once every write so far committed; rejected with the first that failed (never handled twice). */
  private writes: Promise<void> = Promise.resolve();
  /**
   * Direct writes: the entries this activation committed, flat (sequence, entry, commit time; built into journal
   * entries only for a run that parks), and whether one failed or was refused.
   */
  private readonly written: (number | NewEntry | Date)[] = [];
  private incomplete = false;
  readonly logger: WorkflowLogger;
  /** The controller's signal, read once: the activation's driver checks it at every quiet point. */
  readonly signal: AbortSignal = this.controller.signal;

  constructor(
    private readonly id: number,
    readonly runId: string,
    private readonly outbox: Outbox,
    private readonly slot: RunningSlot,
    readonly limits: ValueLimits | undefined,
    /** Until when the lease is certainly held (epoch ms), kept current by the watchdog's pings. */
    public validUntil: number | undefined,
    readonly holdClockWaitsMs: number | undefined,
    /** Present when this thread writes the activation's appends itself. */
    readonly direct?: DirectWrites | undefined,
    /** The main thread only counts this activation's attempts: they are tallied (`Outbox.tally`), not told each. */
    private readonly tallied = false,
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
    this.confirmed(ok ? undefined : fromWire(value as WireError));
  }

  private confirmed(failure: unknown): void {
    this.ahead = undefined;
    this.aheadSeen = false;
    const waiters = this.aheadWaiters.splice(0);
    this.slot.enter(this.id);
    // (On failure the waiting step functions never start: the abort ends the activation without them.)
    if (failure !== undefined) this.controller.abort(failure);
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
    if (this.tallied) {
      this.outbox.tally(this.id, attemptOutcomes.indexOf(outcome), elapsedMs);
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
    if (this.direct) return this.appendDirect(this.direct, entry);
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

  /** `append` when the thread writes itself: the same order and waits as through the main thread, without its messages. */
  private appendDirect(direct: DirectWrites, entry: NewEntry): Promise<void> {
    if (this.signal.aborted) return Promise.reject(this.signal.reason as Error);
    // The sequence is taken before the write so that concurrent operations of one run get distinct numbers.
    const sequence = direct.nextSequence++;
    const before = this.writes;
    const write = () => this.writeDirect(direct, sequence, entry);
    // If the code may have seen the outcome of the append ahead, this write goes only after the writes before it.
    const result = this.aheadSeen ? before.then(write) : write();
    this.writes = before.then(() => result);
    this.writes.catch(() => undefined);
    this.sendEndedAttemptAlone();
    // Another append is ahead: this one resolves once committed. Otherwise it becomes the append ahead.
    if (this.ahead !== undefined) return result;
    this.ahead = this.nextCall++;
    result.then(
      () => this.confirmed(undefined),
      (error: unknown) => this.confirmed(error),
    );
    return Promise.resolve();
  }

  private async writeDirect(direct: DirectWrites, sequence: number, entry: NewEntry): Promise<void> {
    let answer: WriteAnswer;
    try {
      answer = await direct.journal.write(this.id, { fence: direct.fence, sequence, entry });
    } catch (error) {
      this.incomplete = true;
      throw error;
    }
    if (answer === undefined) return; // Taken back: it rides on the run's end.
    if (answer === null) {
      // The fence matched nothing: the main thread knows why (a cancel or pause request, or a lost lease).
      this.incomplete = true;
      return this.call<void>("refusal", undefined);
    }
    this.written.push(sequence, entry, answer);
  }

  /** The ended attempt goes on its own: no append message carries it. */
  private sendEndedAttemptAlone(): void {
    const ended = this.takeEndedAttempt();
    if (ended) this.outbox.send({ t: "attempt_done", id: this.id, ...ended });
  }

  /**
   * Direct writes, at the activation's end: the run's end takes back its last entries if no statement carried them
   * yet (they are written with it), then the rest settle. A write that failed makes the end an abort with its error.
   */
  async settleWrites(outcome: ActivationOutcome): Promise<ActivationOutcome> {
    const direct = this.direct;
    if (!direct) return outcome;
    const trailing = endsRun(outcome) ? direct.journal.takeBack(this.id, direct.nextSequence) : [];
    direct.nextSequence -= trailing.length;
    try {
      await this.writes;
    } catch (error) {
      return { kind: "aborted", reason: error };
    }
    return withEntriesFirst(outcome, trailing);
  }

  /** Direct writes: what the executor needs from them once the activation ended with `outcome`. */
  directReport(outcome: ActivationOutcome): DirectReport | undefined {
    if (!this.direct) return undefined;
    const report: DirectReport = { next: this.direct.nextSequence };
    if (!endsRun(outcome)) {
      const entries: JournalEntry[] = [];
      for (let i = 0; i < this.written.length; i += 3) entries.push({ ...(this.written[i + 1] as NewEntry), sequence: this.written[i] as number, createdAt: this.written[i + 2] as Date } as JournalEntry);
      report.written = entries;
    }
    if (this.incomplete) report.incomplete = true;
    return report;
  }

  /** Drops every pending call: the activation is over (its thread-side state becomes garbage). */
  close(): void {
    this.pending.clear();
    this.aheadWaiters.length = 0;
  }

  private call<T>(op: HostCallName, arg: unknown): Promise<T> {
    // Direct writes: a call made after the code may have seen an uncommitted entry waits for it here.
    if (this.direct && this.aheadSeen && op !== "refusal") return this.writes.then(() => this.send<T>(op, arg));
    return this.send<T>(op, arg);
  }

  private send<T>(op: HostCallName, arg: unknown): Promise<T> {
    const call = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(call, { resolve: resolve as (value: never) => void, reject });
      const after = this.aheadSeen && !this.direct;
      const message: CallMessage = after ? { t: "call", id: this.id, call, op, arg, after: true } : { t: "call", id: this.id, call, op, arg };
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
