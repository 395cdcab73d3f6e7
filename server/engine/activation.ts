/**
 * One activation of a run: call the handler, answer each `ctx` operation from
 * the journal when it is recorded there (replay), run it live and persist it
 * when it is not. The activation owns no I/O: it is handed a journal and an
 * `ActivationHost` that makes entries durable, and returns what became of the
 * run. The host decides how (fenced SQL, group commit, an in-memory test
 * journal); the activation only promises never to resolve a live operation
 * before `host.append` has resolved, so nothing the handler observed can be
 * lost in a crash.
 */
import type {
  AgentRequest,
  Duration,
  JsonObject,
  JsonValue,
  StepContext,
  StepOptions,
  WaitForEventOptions,
  WorkflowContext,
  WorkflowLogger,
} from "../../sdk/workflow.js";
import { DeterminismError, NonJsonValueError, UnsupportedOperationError } from "./errors.js";
import { type EntryKind, indexJournal, type JournalEntry, type NewEntry, operationTypeOf, type OperationType } from "./journal.js";
import { failureToError, type FailureInfo, normalizeJson, toFailureInfo, toJsonValue } from "./json.js";

export type ActivationOutcome =
  | { kind: "completed"; output: JsonValue }
  | { kind: "failed"; failure: FailureInfo }
  /** The host withdrew the activation (lease lost, shutdown): persist nothing more. */
  | { kind: "aborted"; reason: unknown };

export interface ActivationHost {
  /** Makes the entry durable; resolves after commit, rejects if it could not be written (e.g. LeaseLostError). */
  append(entry: NewEntry): Promise<void>;
  /** Aborted when the activation must stop: lease lost, run cancelled, server shutting down. */
  readonly signal: AbortSignal;
  /** The live logger; the activation mutes it while replaying. */
  readonly logger: WorkflowLogger;
  now(): Date;
}

export interface RunIdentity {
  runId: string;
  workflowName: string;
  input: JsonValue;
}

export type Handler = (input: never, ctx: WorkflowContext) => unknown;

export class Activation {
  private readonly recorded: Map<string, JournalEntry[]>;
  /** Names the handler has used in this activation, with the operation type they were used for. */
  private readonly used = new Map<string, OperationType>();
  private readonly live = new Set<Promise<unknown>>();
  private unreplayed: number;
  /** A determinism error or host failure: it decides the outcome whatever the handler does with it. */
  private fatal: { error: unknown; abort: boolean } | undefined;

  constructor(
    private readonly run: RunIdentity,
    journal: readonly JournalEntry[],
    private readonly host: ActivationHost,
  ) {
    this.recorded = indexJournal(journal);
    this.unreplayed = this.recorded.size;
  }

  get isReplaying(): boolean {
    return this.unreplayed > 0;
  }

  async execute(handler: Handler): Promise<ActivationOutcome> {
    let outcome: ActivationOutcome;
    try {
      const output = await handler(this.run.input as never, this.createContext());
      outcome = { kind: "completed", output: output === undefined ? null : normalizeJson(toJsonValue(output, "the workflow's return value")) };
    } catch (error) {
      outcome = { kind: "failed", failure: toFailureInfo(error) };
    }
    // Operations the handler started but did not await still finish (and persist) before the run ends.
    await Promise.allSettled([...this.live]);
    if (this.fatal) {
      return this.fatal.abort
        ? { kind: "aborted", reason: this.fatal.error }
        : { kind: "failed", failure: toFailureInfo(this.fatal.error) };
    }
    if (this.host.signal.aborted) return { kind: "aborted", reason: this.host.signal.reason };
    return outcome;
  }

  private createContext(): WorkflowContext {
    const unsupported = (primitive: string) => () =>
      Promise.reject(this.fail(new UnsupportedOperationError(`ctx.${primitive} is not supported by this server version yet`), false));
    return {
      runId: this.run.runId,
      workflowName: this.run.workflowName,
      log: this.replayAwareLogger(),
      step: (name, fn, options) => this.step(name, fn, options),
      sleep: unsupported("sleep") as (name: string, duration: Duration) => Promise<void>,
      sleepUntil: unsupported("sleepUntil") as (name: string, when: Date | string | number) => Promise<void>,
      waitForEvent: unsupported("waitForEvent") as <T>(n: string, t: string, c: string, o?: WaitForEventOptions) => Promise<T | null>,
      startWorkflow: unsupported("startWorkflow") as (n: string, w: string, i?: JsonObject) => Promise<string>,
      waitForWorkflow: unsupported("waitForWorkflow") as <T>(n: string, r: string) => Promise<T>,
      runWorkflow: unsupported("runWorkflow") as <T>(n: string, w: string, i?: JsonObject) => Promise<T>,
      startAgent: unsupported("startAgent") as (n: string, r: AgentRequest) => Promise<string>,
      runAgent: unsupported("runAgent") as <T>(n: string, r: AgentRequest) => Promise<T>,
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

  /** Records a fatal condition; returns the error to throw into the handler. */
  private fail(error: unknown, abort: boolean): unknown {
    this.fatal ??= { error, abort };
    return this.fatal.error;
  }

  /** Registers `name` for this activation and returns its recorded entries (empty when it runs live). */
  private claim(name: string, type: OperationType): JournalEntry[] {
    if (this.fatal) throw this.fatal.error;
    if (typeof name !== "string" || name.length === 0) {
      throw this.fail(new DeterminismError(String(name), `every ctx operation needs a non-empty name (got ${JSON.stringify(name)})`), false);
    }
    if (this.used.has(name)) {
      throw this.fail(
        new DeterminismError(
          name,
          `operation name "${name}" is used twice in workflow "${this.run.workflowName}" (run ${this.run.runId}); names identify durable operations and must be unique within a run — give each call its own name, e.g. "${name}-2" or a name built from a loop index`,
        ),
        false,
      );
    }
    this.used.set(name, type);
    const entries = this.recorded.get(name) ?? [];
    const last = entries.at(-1);
    if (last) {
      const recordedType = operationTypeOf(last.kind);
      if (recordedType !== type) {
        throw this.fail(
          new DeterminismError(
            name,
            `operation "${name}" in workflow "${this.run.workflowName}" (run ${this.run.runId}) is a ctx.${type} now but the journal recorded it as ${last.kind}; the workflow code changed under a running run — keep old names for old behaviour or give the new operation a new name`,
          ),
          false,
        );
      }
      this.unreplayed--;
    }
    return entries;
  }

  private async step<T>(name: string, fn: (step: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T> {
    const entries = this.claim(name, "step");
    const final = entries.find((e) => e.kind === "step_completed" || e.kind === "step_failed");
    if (final) return resolveRecorded<T>(final);
    if (options?.retry || options?.timeout) {
      // Retries and per-attempt timeouts arrive with the composition work; refusing beats silently ignoring them.
      throw this.fail(new UnsupportedOperationError(`step "${name}": retry and timeout options are not supported by this server version yet`), false);
    }
    const startedAt = this.host.now();
    const attempt = 1;
    const running = this.runLive(name, fn, { idempotencyKey: `${this.run.runId}:${name}`, attempt, signal: this.host.signal });
    this.live.add(running);
    try {
      const settled = await running;
      const entry: NewEntry =
        "failure" in settled
          ? { kind: "step_failed", name, error: settled.failure, attempt, startedAt }
          : { kind: "step_completed", name, attempt, startedAt, ...(settled.value === undefined ? {} : { result: settled.value }) };
      await this.persist(entry);
      return resolveRecorded<T>(entry);
    } finally {
      this.live.delete(running);
    }
  }

  private async runLive(
    name: string,
    fn: (step: StepContext) => unknown,
    stepContext: StepContext,
  ): Promise<{ value: JsonValue | undefined } | { failure: FailureInfo }> {
    try {
      const value = await fn(stepContext);
      if (value === undefined) return { value: undefined };
      return { value: normalizeJson(toJsonValue(value, `step "${name}" result`)) };
    } catch (error) {
      if (error instanceof NonJsonValueError) return { failure: toFailureInfo(error) };
      return { failure: toFailureInfo(error) };
    }
  }

  /** A failed write means the activation can't go on (the lease is gone or the store is down): abort it. */
  private async persist(entry: NewEntry): Promise<void> {
    if (this.fatal) throw this.fatal.error;
    try {
      await this.host.append(entry);
    } catch (error) {
      throw this.fail(error, true);
    }
  }
}

function resolveRecorded<T>(entry: NewEntry): T {
  if (entry.kind === "step_failed" || entry.error) throw failureToError(entry.error ?? { name: "Error", message: "step failed" });
  return entry.result as T;
}

export type { EntryKind };
