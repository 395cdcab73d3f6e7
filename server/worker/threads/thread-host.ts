/**
 * The `ActivationHost` an activation sees on a workflow thread: each method posts a request to the main thread,
 * whose executor host (server/worker/executor.ts) does the real work and posts the reply. Whenever this activation's
 * code is about to run (its handler starts, a step function is called, a reply resumes it, its driver passes a quiet
 * point) its id goes into the thread's shared slot, so the watchdog can blame exactly this run if that code blocks.
 */
import type { WorkflowLogger } from "../../../sdk/workflow.js";
import type { ActivationHost, StepAttemptScope, StepAttemptStart } from "../../core/host.js";
import { LeaseLostError } from "../../core/errors.js";
import type { ValueLimits } from "../../core/json.js";
import type { Outbox } from "./outbox.js";
import type { HostCallName, WireError } from "./protocol.js";
import type { RunningSlot } from "./running-slot.js";
import { fromWire } from "./wire-error.js";

export class ThreadHost implements ActivationHost {
  private readonly controller = new AbortController();
  private readonly pending = new Map<number, { resolve: (value: never) => void; reject: (error: unknown) => void }>();
  private nextCall = 1;
  private nextAttempt = 1;
  readonly logger: WorkflowLogger;

  constructor(
    private readonly id: number,
    private readonly runId: string,
    private readonly outbox: Outbox,
    private readonly slot: RunningSlot,
    readonly limits: ValueLimits | undefined,
    /** Until when the lease is certainly held (epoch ms), kept current by the watchdog's pings. */
    public validUntil: number | undefined,
  ) {
    const log =
      (level: "debug" | "info" | "warn" | "error") =>
      (message: string, fields?: Record<string, unknown>): void =>
        this.outbox.send({ t: "log", id, level, message, fields: cloneable(fields) });
    this.logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The main thread withdrew the activation (lease lost, cancel, shutdown, pause). */
  abort(reason: WireError): void {
    this.enter();
    this.controller.abort(fromWire(reason));
  }

  /** The main thread answered call `call`. */
  settle(call: number, ok: boolean, value: unknown): void {
    const waiter = this.pending.get(call);
    if (!waiter) return;
    this.pending.delete(call);
    this.enter();
    if (ok) waiter.resolve(value as never);
    else waiter.reject(fromWire(value as WireError));
  }

  enter(): void {
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
    const started = performance.now();
    const startedAt = Date.now();
    // With a timeout, the watchdog must know the attempt before its function can spin: it goes at once. Without one,
    // the main thread only counts and traces it, so it hears of the attempt once, when it ended (an attempt cut off
    // by its thread's end is then not counted: the activation's abnormal end is).
    if (step.timeout) this.outbox.sendNow({ t: "attempt", id: this.id, key, step });
    return {
      run: (fn) => {
        this.slot.enterStep(this.id, key, step.name, step.timeout ? startedAt + step.timeout.ms : 0);
        return fn();
      },
      end: (outcome) => {
        const elapsedMs = performance.now() - started;
        if (step.timeout) this.outbox.send({ t: "attempt_end", id: this.id, key, outcome, elapsedMs });
        else this.outbox.send({ t: "attempt_done", id: this.id, step: { name: step.name, attempt: step.attempt, startedAt }, outcome, elapsedMs });
      },
    };
  }

  append = (entry: Parameters<ActivationHost["append"]>[0]) => this.call<void>("append", entry);
  findEvent: ActivationHost["findEvent"] = (waits) => this.call("findEvent", waits);
  startChild: ActivationHost["startChild"] = (request) => this.call("startChild", request);
  startAgentTurn: ActivationHost["startAgentTurn"] = (request) => this.call("startAgentTurn", request);
  findTurnOutcome: ActivationHost["findTurnOutcome"] = (waits) => this.call("findTurnOutcome", waits);
  findChildOutcome: ActivationHost["findChildOutcome"] = (waits) => this.call("findChildOutcome", waits);
  suspend: ActivationHost["suspend"] = (waits) => this.call("suspend", waits);

  /** Drops every pending call: the activation is over (its thread-side state becomes garbage). */
  close(): void {
    this.pending.clear();
  }

  private call<T>(op: HostCallName, arg: unknown): Promise<T> {
    const call = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(call, { resolve: resolve as (value: never) => void, reject });
      this.outbox.send({ t: "call", id: this.id, call, op, arg });
    });
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
