/**
 * Executes one activation of a claimed run: loads its journal, replays the
 * handler through the pure `Activation`, and persists what it decides, every
 * write fenced by the claim. This is the only place where the engine core
 * meets the database.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import type { ActivationHost } from "../core/activation.js";
import type { ActivationRunner, DirectJournal, RunnerOutcome } from "./activation-runner.js";
import { endAbnormally, releaseInnocent } from "../store/runs/abnormal-end.js";
import type { AttemptOutcome, StepAttemptScope, StepAttemptStart } from "../core/host.js";
import { LeaseLostError, RunCancelRequestedError, RunPauseRequestedError } from "../core/errors.js";
import { pauseHeld } from "../store/runs/pause.js";
import { pauseDiverged } from "../store/runs/pause-diverged.js";
import { isFailedAttempt, type JournalEntry, type NewEntry } from "../core/journal.js";
import { nextDeadline, type PendingWait } from "../core/waits.js";
import { checkSize, inputLimit, type ValueLimits } from "../core/json.js";
import { toWorkflowLogger, type Logger } from "../logger.js";
import type { ActivationOutcome as ActivationOutcomeLabel, Metrics } from "../metrics.js";
import type { Tracing } from "../tracing.js";
import { type Span, SpanStatusCode, context as otelContext, trace } from "@opentelemetry/api";
import { findTurnOutcome, insertTurn } from "../store/agents.js";
import { findEvent } from "../store/events.js";
import { lastSequence, loadJournal } from "../store/journal.js";
import { entryAsRead } from "../store/journal-writer.js";
import { toRecord } from "../store/journal-insert.js";
import type { Store } from "../store/store.js";
import { endRun, type RunEnding } from "../store/runs/finish.js";
import { type Fence, releaseRun } from "../store/runs/lease.js";
import { findChildOutcome, getRun } from "../store/runs/read.js";
import { insertChildRun } from "../store/runs/create.js";
import { suspendRun } from "../store/runs/park.js";
import { timedOut, timeoutError } from "../store/runs/timeout.js";
import type { RunRow } from "../store/schema.js";
import { validateInput, type WorkflowRegistry } from "../workflows/registry.js";

export interface RunExecutorDeps {
  /** The store; its journal writer appends entries of every run of this process in shared statements. */
  store: Store;
  registry: WorkflowRegistry;
  logger: Logger;
  /** An agent turn was created: workers long-polling for `agent` should look. */
  onTurnCreated(agent: string): void;
  /** A child run was queued: some process should claim it (and fire its run-level timeout, `timeoutMs` from now, if it has one). */
  onChildCreated(timeoutMs: number | undefined): void;
  /**
   * The run ended here (its final status committed); `row` is the final row when the store returned it, `entries`
   * the journal entries the end wrote (as a read would give them), when known.
   */
  onEnded(runId: string, row: RunRow | undefined, entries?: () => readonly JournalEntry[]): void;
  /** The run journaled an entry here (committed); `entries` gives it as a read of the journal would. */
  onAppended?(runId: string, entries: () => readonly JournalEntry[]): void;
  /** The run parked; `deadline` is when the clock alone will wake it; `journal` is its whole journal, when known. */
  onSuspended(run: RunRow, waits: readonly PendingWait[], deadline: Date | undefined, journal: JournalEntry[] | undefined): void;
  /** Size limits on journaled values and child inputs (absent: none). */
  limits?: ValueLimits;
  /** Where the activation, its step attempts and the run's end are counted (absent: nowhere). */
  metrics?: Metrics | undefined;
  /** When tracing is on: a span per activation and per step attempt, under the run's stored traceparent. */
  tracing?: Tracing | undefined;
  /** Until when (epoch ms, this process's clock) the claim `fence` is certainly still ours; absent: no check. */
  leaseValidUntil?(fence: Fence): number;
  /** Where the workflow's code runs: a workflow thread (the server's default) or this thread. */
  runner: ActivationRunner;
  /** ActivationHost.holdClockWaitsMs (absent: a run always parks on its waits). */
  holdClockWaitsMs?: number | undefined;
  /** CAIRN_MAX_ABNORMAL_ACTIVATIONS: abnormal ends in a row (blocked, crashed, out of memory) that pause the run. */
  maxAbnormalActivations?: number | undefined;
  /** The run went back to the queue after its thread was stopped: look for claimable runs. */
  onRequeued?(): void;
}

export class ShutdownError extends Error {
  override readonly name = "ShutdownError";
}

/**
 * Runs `run` (already claimed under `fence`) until it ends, parks, or `signal`
 * aborts. If the process dies anywhere in here, nothing half-done is visible:
 * each journal entry commits alone, and the lease lapses so another process
 * replays the run from its journal. `journal` may be passed when it is known
 * (a run created a moment ago has none) to skip the read.
 */
export async function executeRun(
  deps: RunExecutorDeps,
  run: RunRow,
  fence: Fence,
  signal: AbortSignal,
  journal?: JournalEntry[],
): Promise<void> {
  const logger = deps.logger.child({ runId: run.id, workflow: run.workflowName });
  const workflow = run.workflowName;
  const metrics = deps.metrics;
  const activationStarted = performance.now();
  // Runs created while tracing was off have no traceparent and stay untraced.
  const span = deps.tracing && run.traceParent ? startActivationSpan(deps.tracing, run) : undefined;
  const activationEnded = (outcome: ActivationOutcomeLabel) => {
    if (span) {
      span.setAttribute("cairn.activation.outcome", outcome);
      if (outcome !== "completed" && outcome !== "suspended" && outcome !== "cancelled") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
      span.end();
    }
    if (!metrics) return;
    metrics.activations.inc({ workflow, outcome });
    metrics.activationDuration.observe({ workflow }, (performance.now() - activationStarted) / 1000);
    if (outcome === "lease_lost") metrics.leaseLosses.inc({ workflow });
  };
  const entries = journal ?? (await loadJournal(deps.store.db, run.id));
  let nextSequence = (entries.at(-1)?.sequence ?? 0) + 1;
  // The whole journal as committed so far, handed to the scheduler when the run parks (so its next claim here skips the read).
  const committed: JournalEntry[] = [...entries];
  let complete = true;

  /** Why a fenced write matched nothing: a cancel or pause request (we still hold the run) or a lost lease. */
  const refusal = async (): Promise<Error> => {
    const current = await getRun(deps.store.db, run.namespace, run.id);
    if (current?.leaseOwner === fence.owner && current.leaseEpoch === fence.epoch && current.cancelRequestedAt) {
      return new RunCancelRequestedError(run.id, current.cancelReason ?? "cancelled");
    }
    if (current?.leaseOwner === fence.owner && current.leaseEpoch === fence.epoch && current.pauseRequestedAt) {
      return new RunPauseRequestedError(run.id);
    }
    return new LeaseLostError(run.id);
  };

  const host: ActivationHost = {
    signal,
    limits: deps.limits,
    // After a pause longer than the lease (GC, a frozen VM, SIGSTOP) a new holder may have run the next step already.
    leaseLost: () =>
      deps.leaseValidUntil && Date.now() >= deps.leaseValidUntil(fence)
        ? new LeaseLostError(run.id, "this process went longer than the lease without renewing it, so it starts no more steps")
        : undefined,
    logger: toWorkflowLogger(logger),
    now: () => new Date(),
    holdClockWaitsMs: deps.holdClockWaitsMs,
    ...(metrics || span ? { stepAttempt: (step: StepAttemptStart) => observedAttempt(step, workflow, metrics, span && deps.tracing ? { tracing: deps.tracing, parent: span } : undefined) } : {}),
    append: async (entry: NewEntry) => {
      if (signal.aborted) throw signal.reason;
      // The sequence is taken before the write so that concurrent operations of one run get distinct numbers.
      const sequence = nextSequence++;
      let createdAt: Date | null;
      try {
        createdAt = await deps.store.journal.write(fence, sequence, entry);
      } catch (error) {
        complete = false;
        throw error;
      }
      if (!createdAt) {
        complete = false;
        throw await refusal();
      }
      committed.push({ ...entry, sequence, createdAt });
      // Watchers here take it as told (built only if there are any), instead of reading it on the store's notice.
      deps.onAppended?.(run.id, () => [entryAsRead(toRecord({ fence, sequence, entry }), run.namespace, createdAt)]);
      logFailedAttempt(logger, entry);
    },
    findEvent: (waits) => findEvent(deps.store.db, run.namespace, run.id, waits),
    startChild: async (request) => {
      const workflow = deps.registry.get(request.workflowName);
      const limit = inputLimit(deps.limits);
      if (limit) checkSize(JSON.stringify(request.input), "the child's input", limit);
      await validateInput(workflow, request.input);
      const created = await insertChildRun(deps.store.db, {
        id: request.childRunId,
        namespace: run.namespace,
        workflowName: workflow.name,
        input: request.input,
        metadata: {},
        parentRunId: run.id,
        detached: request.detached,
        // The child workflow's default run-level timeout, counted from the child's creation.
        timeoutMs: workflow.timeoutMs,
        // The child's trace continues from the activation that started it.
        traceParent: span && deps.tracing ? deps.tracing.traceParentOf(span) : undefined,
      });
      if (created) {
        metrics?.runsCreated.inc({ workflow: workflow.name, origin: "child" });
        deps.onChildCreated(workflow.timeoutMs);
      }
    },
    startAgentTurn: async (turn) => {
      const traceParent = span && deps.tracing ? deps.tracing.traceParentOf(span) : undefined;
      const created = await insertTurn(deps.store.db, { ...turn, namespace: run.namespace, runId: run.id, workflowName: run.workflowName, traceParent });
      if (created) deps.onTurnCreated(turn.agent);
    },
    findTurnOutcome: (waits) => findTurnOutcome(deps.store.db, run.namespace, waits.map((w) => w.turnId)),
    findChildOutcome: (waits) => findChildOutcome(deps.store.db, run.namespace, waits.map((w) => w.childRunId)),
    suspend: async (waits) => {
      if (signal.aborted) throw signal.reason;
      try {
        return await suspendRun(deps.store.db, fence, run.namespace, waits);
      } catch (error) {
        throw error instanceof LeaseLostError ? await refusal() : error;
      }
    },
  };

  // A runner that writes the appends itself (a workflow thread on PostgreSQL) follows the same fence and sequence, and
  // reports what it wrote once its writes settled; it tells each entry as it commits, for the watchers here.
  const direct: DirectJournal = {
    fence,
    nextSequence,
    ended: (report) => {
      nextSequence = report.next;
      if (report.incomplete) complete = false;
      if (report.written) committed.push(...report.written);
    },
    refusal,
    appended: (sequence, entry, createdAt) => {
      deps.onAppended?.(run.id, () => [entryAsRead(toRecord({ fence, sequence, entry }), run.namespace, createdAt)]);
      logFailedAttempt(logger, entry);
    },
  };

  let outcome: RunnerOutcome;
  if (run.cancelRequestedAt) {
    // Cancelled while its previous holder ran it; that holder died before stopping.
    outcome = { kind: "aborted", reason: new RunCancelRequestedError(run.id, run.cancelReason ?? "cancelled") };
  } else if (run.pauseRequestedAt) {
    // Paused while its previous holder ran it; that holder died before stopping.
    outcome = { kind: "aborted", reason: new RunPauseRequestedError(run.id) };
  } else {
    const leaseValidUntil = deps.leaseValidUntil;
    outcome = await deps.runner.run(
      {
        run: { runId: run.id, workflowName: run.workflowName, input: run.input as JsonValue, createdAt: run.createdAt },
        journal: entries,
        host,
        leaseValidUntil: leaseValidUntil && (() => leaseValidUntil(fence)),
        direct,
        // With no span to end, an attempt is only counted: a runner may tally them instead of telling each.
        ...(metrics && !(span && deps.tracing) ? { countAttempt: (outcome: AttemptOutcome, elapsedMs: number) => countAttempt(metrics, workflow, outcome, elapsedMs) } : {}),
      },
      deps.registry,
    );
  }

  if (outcome.kind === "abnormal" || outcome.kind === "overran" || outcome.kind === "released") {
    await endContained(deps, run, fence, outcome, logger, () => nextSequence++);
    deps.onRequeued?.();
    activationEnded(outcome.kind === "released" ? "released" : "abnormal");
    return;
  }

  let ending: RunEnding;
  switch (outcome.kind) {
    case "suspended": {
      const deadline = nextDeadline(outcome.waits);
      logger.debug({ waits: outcome.waits.map((w) => w.name), deadline }, "run suspended");
      // Parallel writes commit in any order; a gap (a failed write) means the journal is not known here.
      committed.sort((a, b) => a.sequence - b.sequence);
      const known = complete && committed.every((e, i) => e.sequence === i + 1) ? committed : undefined;
      deps.onSuspended(run, outcome.waits, deadline, known);
      activationEnded("suspended");
      return;
    }
    case "aborted": {
      const reason = outcome.reason;
      if (reason instanceof RunCancelRequestedError) {
        // The notice that stopped us may not carry the reason; the run row does.
        const current = await getRun(deps.store.db, run.namespace, run.id);
        if (current && timedOut(current)) {
          // The request was the run's timeout (run-timeouts.ts), not a CancelRun: the run fails.
          const error = timeoutError(current);
          ending = { status: "failed", error: { name: error.name, message: error.message } };
          break;
        }
        ending = { status: "cancelled", error: { name: "CancelledError", message: current?.cancelReason || reason.reason } };
        break;
      }
      if (reason instanceof RunPauseRequestedError) {
        // PauseRun: stop here, journal the pause and give the run up; ResumeRun queues it again.
        const paused = await pauseHeld(deps.store.db, fence);
        if (paused) {
          deps.onEnded(run.id, undefined);
          logger.info("activation stopped: run paused");
        } else logger.warn("pause not recorded: lease lost or cancelled meanwhile");
        return;
      }
      if (reason instanceof ShutdownError) {
        // Hand the run back so another process resumes it without waiting for the lease to lapse.
        await releaseRun(deps.store.db, fence).catch((error: unknown) => logger.warn({ err: error }, "could not release run"));
        logger.info("activation stopped by shutdown; run released");
        activationEnded("shutdown");
      } else if (reason instanceof LeaseLostError) {
        logger.warn({ reason: reason.message }, "activation stopped: lease lost");
        activationEnded("lease_lost");
      } else {
        activationEnded("store_error");
        // The store failed under us: keep the lease until it lapses, so the run is retried after a pause, not in a loop.
        logger.error({ err: reason }, "activation stopped by a store error; the run resumes after its lease lapses");
      }
      return;
    }
    case "diverged": {
      const reason = `${outcome.failure.message}. The run is paused, not failed: deploy code that matches its journal (or branches with ctx.patched) and ResumeRun continues it`;
      const startedAfter = entries.at(-1)?.sequence ?? 0;
      const written = committed.filter((entry) => entry.sequence > startedAfter).map((entry) => entry.sequence);
      if (await pauseDiverged(deps.store.db, fence, reason, written.sort((a, b) => a - b))) {
        deps.onEnded(run.id, undefined);
        activationEnded("diverged");
        logger.warn({ reason: outcome.failure.message }, "run paused: its journal no longer matches the workflow code");
      } else {
        logger.warn("divergence pause not recorded: lease lost or cancelled meanwhile");
        activationEnded("lease_lost");
      }
      return;
    }
    case "completed":
      ending = { status: "completed", output: outcome.output };
      break;
    case "failed":
      ending = { status: "failed", error: outcome.failure };
      break;
  }
  // Entries to journal before the end: values drawn after the run's last write (ctx.now() just before returning) and,
  // from a workflow thread, the run's last step when it arrived with the end (workflow-threads.ts).
  const deferred = outcome.kind === "completed" || outcome.kind === "failed" ? (outcome.deferred ?? []) : [];
  let riding: { sequence: number; entry: NewEntry }[] = [];
  if (deferred.length > 0 && run.parentRunId) {
    // A child's end is its own transaction (it wakes the parent): they go first, in one statement. If the fence refused
    // them, the end below is refused too (or wins a cancel race). If the store failed, the run must not end: they
    // may hold its last step's completion, and an end without it would leave a step executed that the journal never
    // saw (and a gap in the sequence). Keep the lease until it lapses; the run replays from what did commit.
    try {
      await Promise.all(deferred.map((entry) => deps.store.journal.append(fence, nextSequence++, entry)));
    } catch (error) {
      activationEnded("store_error");
      logger.error({ err: error }, "entries before the run's end not journaled (store error); the run resumes after its lease lapses");
      return;
    }
  } else riding = deferred.map((entry) => ({ sequence: nextSequence++, entry }));
  // A crash before this commits leaves the run claimed; after the lease lapses it replays to the same end. The entries
  // riding on it commit with it or not at all.
  const ended = await endRun(deps.store, fence, nextSequence++, ending, run.parentRunId, riding);
  if (ended) {
    for (const { entry } of riding) logFailedAttempt(logger, entry);
    activationEnded(ending.status);
    metrics?.runsEnded.inc({ workflow, status: ending.status });
    deps.onEnded(run.id, ended.row, ended.entries);
    if (ending.status === "failed") logger.warn({ status: ending.status, error: ending.error }, "run failed");
    else logger.info({ status: ending.status }, "run finished");
  } else {
    logger.warn({ status: ending.status }, "run end not recorded: lease lost");
    activationEnded("lease_lost");
  }
}

/**
 * The run's thread was stopped under it (its own code blocked it, crashed or ran it out of memory, or another run's
 * did). Its own fault counts towards the poison-run breaker; a step that overran its timeout has that attempt
 * journaled as timed out first (so its retry policy decides); an innocent run is only handed back. If the process dies
 * in here, the lease lapses and the sweep requeues the run (counting it abnormal: the cost of a crash).
 */
async function endContained(
  deps: RunExecutorDeps,
  run: RunRow,
  fence: Fence,
  outcome: Extract<RunnerOutcome, { kind: "abnormal" | "overran" | "released" }>,
  logger: Logger,
  sequence: () => number,
): Promise<void> {
  if (outcome.kind === "released") {
    await releaseInnocent(deps.store.db, fence).catch((error: unknown) => logger.warn({ err: error }, "could not release run"));
    logger.info({ cause: outcome.cause }, "activation stopped; run released to run again");
    return;
  }
  if (outcome.kind === "overran") {
    // The stopped thread may have written the run's entries itself, and told nothing of them: the journal says how far it got.
    const last = await lastSequence(deps.store.db, run.id).catch(() => undefined);
    const written = await deps.store.journal.append(fence, last === undefined ? sequence() : last + 1, outcome.entry).catch((error: unknown) => {
      logger.warn({ err: error }, "timed-out step attempt not journaled");
      return false;
    });
    if (written) {
      await releaseRun(deps.store.db, fence).catch((error: unknown) => logger.warn({ err: error }, "could not release run"));
      logger.warn({ cause: outcome.cause }, "step attempt stopped: it overran its timeout without yielding");
      return;
    }
  }
  const ended = await endAbnormally(deps.store.db, fence, outcome.cause, deps.maxAbnormalActivations);
  if (ended?.status === "paused") {
    deps.onEnded(run.id, undefined);
    logger.warn({ cause: outcome.cause, streak: ended.streak }, "run paused: its activations ended abnormally CAIRN_MAX_ABNORMAL_ACTIVATIONS times in a row");
  } else if (ended) {
    logger.warn({ cause: outcome.cause, streak: ended.streak }, "activation ended abnormally; run requeued");
  } else logger.warn({ cause: outcome.cause }, "abnormal end not recorded: lease lost meanwhile");
}

function startActivationSpan(tracing: Tracing, run: RunRow): Span {
  return tracing.tracer.startSpan(
    `activation ${run.workflowName}`,
    { attributes: { "cairn.run_id": run.id, "cairn.workflow": run.workflowName, "cairn.lease_epoch": run.leaseEpoch, "cairn.activation": run.activationCount } },
    tracing.contextOf(run.traceParent),
  );
}

/** Times one step attempt for the metrics, and traces it as a child of the activation's span. */
function observedAttempt(
  step: StepAttemptStart,
  workflow: string,
  metrics: Metrics | undefined,
  traced: { tracing: Tracing; parent: Span } | undefined,
): StepAttemptScope {
  const started = performance.now();
  const parentContext = traced ? trace.setSpan(otelContext.active(), traced.parent) : undefined;
  const span = traced?.tracing.tracer.startSpan(
    `step ${step.name}`,
    { attributes: { "cairn.step": step.name, "cairn.step.attempt": step.attempt }, ...(step.startedAt === undefined ? {} : { startTime: step.startedAt }) },
    parentContext,
  );
  return {
    // With a context manager registered by the embedding process, the step's own instrumented calls nest under it.
    run: (fn) => (span ? otelContext.with(trace.setSpan(otelContext.active(), span), fn) : fn()),
    end: (outcome, elapsedMs) => {
      if (span) {
        span.setAttribute("cairn.step.outcome", outcome);
        if (outcome !== "completed") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
        span.end();
      }
      if (metrics) countAttempt(metrics, workflow, outcome, elapsedMs ?? performance.now() - started);
    },
  };
}

/** One step attempt that ended, in the metrics. */
function countAttempt(metrics: Metrics, workflow: string, outcome: AttemptOutcome, elapsedMs: number): void {
  metrics.stepAttempts.inc({ workflow, outcome });
  metrics.stepDuration.observe({ workflow, outcome }, elapsedMs / 1000);
}

/** Failed step attempts are journaled, not thrown: the log is where an operator sees them as they happen. */
function logFailedAttempt(logger: Logger, entry: NewEntry): void {
  if (!isFailedAttempt(entry)) return;
  if (entry.kind === "step_attempt_failed") {
    logger.warn({ step: entry.name, attempt: entry.attempt, error: entry.error, retryAt: entry.fireAt }, "step attempt failed; will retry");
  } else {
    logger.warn({ step: entry.name, attempt: entry.attempt, error: entry.error }, "step failed");
  }
}
