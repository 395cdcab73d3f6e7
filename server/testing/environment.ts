/**
 * A test environment for workflow authors: the real engine core (the same Activation, replay and primitives
 * the server runs) over an in-memory journal, event store and virtual clock. No database, no server, no
 * waiting: `advance("30d")` moves the clock and fires what is due, and `result()` skips time by itself to the
 * next deadline. `replay()` checks a history exported by `cairn runs history --json` against changed code.
 *
 * Runs are driven to quiescence after every call: each runnable run is activated until it parks or ends, and
 * anything that could wake a parked run (an event, a fired deadline, an ended child, an answered agent turn)
 * re-activates every parked run, which parks again when nothing of its own moved.
 *
 * With `alwaysReplay`, every activation is followed by a replay from the top after each entry it added
 * (always-replay.ts), as a crash there would force: a handler that depends on something outside the journal
 * is paused with a DeterminismError naming the entry after which its replay went another way.
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { JsonObject, JsonValue, WorkflowDefinition, WorkflowLogger, Duration, WorkflowContext } from "../../sdk/workflow.js";
import { parseDuration } from "../../sdk/workflow.js";
import { Activation, type ActivationHost, type ActivationOutcome, type Handler } from "../core/activation.js";
import type { AgentTurnRequest, ChildOutcome, MatchedEvent, TurnOutcome } from "../core/host.js";
import type { JournalEntry, NewEntry } from "../core/journal.js";
import type { FailureInfo } from "../core/json.js";
import { nextDeadline, type PendingWait } from "../core/waits.js";
import { replayEveryPrefix } from "./always-replay.js";
import { type ExportedHistory, type ReplayReport, replayHistory } from "./replay-history.js";

export type { ExportedHistory, ReplayReport } from "./replay-history.js";

export type TestRunStatus = "queued" | "waiting" | "completed" | "failed" | "paused";

export interface TestRun {
  readonly runId: string;
  readonly workflowName: string;
  readonly input: JsonValue;
  status: TestRunStatus;
  output?: JsonValue;
  error?: FailureInfo;
  readonly journal: JournalEntry[];
  waits: PendingWait[];
  readonly createdAt: Date;
  readonly parentRunId?: string;
}

export interface TestTurn extends AgentTurnRequest {
  runId: string;
  outcome?: TurnOutcome;
}

/**
 * A workflow file in the plain export style (`import * as order from "./workflows/order.js"`): the same exports
 * the server's loader reads.
 */
export interface WorkflowModule {
  readonly WORKFLOW_NAME: string;
  readonly handler: (input: any, ctx: WorkflowContext) => unknown;
  readonly Input?: StandardSchemaV1;
}

/** What the environment runs: a `defineWorkflow` value or a plain-export workflow module. */
export type TestWorkflow = WorkflowDefinition<any, any> | WorkflowModule;

export interface TestEnvironmentOptions {
  workflows: readonly TestWorkflow[];
  /** Where the virtual clock starts (default: now). */
  startTime?: Date;
  /**
   * Replay each run from the start after every new journal entry, as a crash there would, and pause it with a
   * DeterminismError (result() rejects) when the replay goes another way than the live run did: clocks,
   * randomness or I/O outside steps show up in the test, not in production.
   */
  alwaysReplay?: boolean;
}


export interface TestEnvironment {
  /** The virtual clock. */
  now(): Date;
  /** Creates a run and drives it until it parks or ends. */
  start(workflow: TestWorkflow | string, input?: JsonObject, options?: { runId?: string }): Promise<TestRun>;
  /** Moves the clock forward and fires whatever came due. */
  advance(duration: Duration): Promise<void>;
  sendEvent(event: { eventType: string; correlationId: string; payload?: JsonValue; runId?: string }): Promise<void>;
  /** Agent turns handed out by ctx.startAgent / ctx.runAgent and not answered yet. */
  pendingTurns(): TestTurn[];
  /** Answers an agent turn (by turn id, or by the operation name when only one pending turn has it). */
  completeTurn(turn: string, result: JsonValue): Promise<void>;
  failTurn(turn: string, error: { name?: string; message: string }): Promise<void>;
  /** The run's output once it completed, skipping time to each next deadline; throws if it fails, pauses, or waits on something only you can send. */
  result<O = JsonValue>(run: TestRun | string): Promise<O>;
  run(runId: string): TestRun;
  /** What ctx.log wrote (live activations only, as on the server). */
  readonly logs: string[];
  /** Replays an exported history against `workflow` without running any step: ok, or the first divergence. */
  replay(history: ExportedHistory, workflow: TestWorkflow): Promise<ReplayReport>;
}

export function createTestEnvironment(options: TestEnvironmentOptions): TestEnvironment {
  const workflows = new Map<string, Workflow>();
  for (const workflow of options.workflows.map(workflowFrom)) {
    if (workflows.has(workflow.name)) throw new Error(`two workflows named "${workflow.name}" in this test environment`);
    workflows.set(workflow.name, workflow);
  }
  let clock = options.startTime?.getTime() ?? Date.now();
  let counter = 0;
  const runs = new Map<string, TestRun>();
  const events: { id: string; eventType: string; correlationId: string; payload: JsonValue; runId?: string; createdAt: Date }[] = [];
  const turns = new Map<string, TestTurn>();
  const logs: string[] = [];
  const logger = (runId: string): WorkflowLogger => {
    const at = (level: string) => (message: string) => void logs.push(`${level} ${runId}: ${message}`);
    return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  };

  function workflowOf(name: string): Workflow {
    const workflow = workflows.get(name);
    if (!workflow) throw new Error(`unknown workflow "${name}"; this environment has: ${[...workflows.keys()].join(", ") || "none"}`);
    return workflow;
  }

  function createRun(workflowName: string, input: JsonValue, runId: string, parentRunId?: string): TestRun {
    const run: TestRun = { runId, workflowName, input, status: "queued", journal: [], waits: [], createdAt: new Date(clock), ...(parentRunId ? { parentRunId } : {}) };
    runs.set(runId, run);
    return run;
  }

  function hostFor(run: TestRun): ActivationHost {
    const append = (entry: NewEntry) => {
      run.journal.push({ ...entry, sequence: (run.journal.at(-1)?.sequence ?? 0) + 1, createdAt: new Date(clock) });
    };
    return {
      signal: new AbortController().signal,
      logger: logger(run.runId),
      now: () => new Date(clock),
      append: async (entry) => append(entry),
      findEvent: async (waits): Promise<MatchedEvent | undefined> => {
        const consumed = new Set(run.journal.flatMap((e) => (e.kind === "event_received" ? [e.eventId] : [])));
        for (const wait of waits) {
          const event = events.find(
            (e) =>
              e.eventType === wait.eventType &&
              e.correlationId === wait.correlationId &&
              (!e.runId || e.runId === run.runId) &&
              !consumed.has(e.id) &&
              (!wait.lookbackFrom || e.createdAt >= wait.lookbackFrom),
          );
          if (event) return { name: wait.name, eventId: event.id, payload: event.payload };
        }
        return undefined;
      },
      startChild: async (request) => {
        workflowOf(request.workflowName);
        if (!runs.has(request.childRunId)) createRun(request.workflowName, request.input, request.childRunId, run.runId);
      },
      startAgentTurn: async (turn) => {
        if (!turns.has(turn.turnId)) turns.set(turn.turnId, { ...turn, runId: run.runId });
      },
      findTurnOutcome: async (waits) => waits.map((w) => turns.get(w.turnId)?.outcome).find((outcome) => outcome !== undefined),
      findChildOutcome: async (waits): Promise<ChildOutcome | undefined> => {
        for (const wait of waits) {
          const child = runs.get(wait.childRunId);
          if (child?.status === "completed") return { childRunId: child.runId, workflowName: child.workflowName, status: "completed", output: child.output ?? null };
          if (child?.status === "failed") return { childRunId: child.runId, workflowName: child.workflowName, status: "failed", error: child.error };
        }
        return undefined;
      },
      suspend: async (waits) => {
        run.waits = [...waits];
        return true;
      },
    };
  }

  async function activate(run: TestRun): Promise<void> {
    const workflow = workflowOf(run.workflowName);
    let input: unknown = run.input;
    if (workflow.input) {
      const validated = await workflow.input["~standard"].validate(run.input);
      if (validated.issues) {
        run.status = "failed";
        run.error = { name: "InvalidInputError", message: validated.issues.map((issue) => issue.message).join("; ") };
        return;
      }
      input = validated.value;
    }
    const identity = { runId: run.runId, workflowName: run.workflowName, input, createdAt: run.createdAt };
    const checkedUpTo = run.journal.length;
    const outcome = await new Activation(identity, run.journal, hostFor(run)).execute(workflow.handler);
    record(run, outcome);
    if (options.alwaysReplay && outcome.kind !== "aborted" && run.journal.length > checkedUpTo) {
      // The prefix the activation started from was replayed by the activation itself; every longer one is new.
      const problem = await replayEveryPrefix(identity, run.journal, workflow.handler, outcome, { from: checkedUpTo + 1, host: { now: () => new Date(clock) } });
      if (problem) {
        run.status = "paused";
        run.waits = [];
        delete run.output;
        run.error = { name: "DeterminismError", message: `always-replay: ${problem}` };
      }
    }
  }

  /** Applies an activation's outcome to the run: its state, and the entries written with its end. */
  function record(run: TestRun, outcome: ActivationOutcome): void {
    switch (outcome.kind) {
      case "suspended":
        run.status = "waiting";
        return;
      case "completed":
      case "failed": {
        for (const entry of outcome.deferred ?? []) run.journal.push({ ...entry, sequence: (run.journal.at(-1)?.sequence ?? 0) + 1, createdAt: new Date(clock) });
        run.status = outcome.kind;
        run.waits = [];
        if (outcome.kind === "completed") run.output = outcome.output;
        else run.error = outcome.failure;
        const base = { name: "", attempt: 1, startedAt: new Date(clock), sequence: (run.journal.at(-1)?.sequence ?? 0) + 1, createdAt: new Date(clock) };
        run.journal.push(outcome.kind === "completed" ? { ...base, kind: "run_completed", result: outcome.output } : { ...base, kind: "run_failed", error: outcome.failure });
        return;
      }
      case "diverged":
        run.status = "paused";
        run.error = outcome.failure;
        return;
      case "aborted":
        throw outcome.reason;
    }
  }

  /** Activates queued runs until none is left; an ended run wakes every parked run (its parent may wait on it). */
  async function settle(): Promise<void> {
    for (let rounds = 0; ; rounds++) {
      const queued = [...runs.values()].filter((run) => run.status === "queued");
      if (queued.length === 0) return;
      if (rounds > 10_000) throw new Error("the test environment did not settle after 10000 activations");
      for (const run of queued) {
        await activate(run);
        if (run.status === "completed" || run.status === "failed") wakeAll();
      }
    }
  }

  function wakeAll(): void {
    for (const run of runs.values()) if (run.status === "waiting") run.status = "queued";
  }

  async function wakeAndSettle(): Promise<void> {
    wakeAll();
    await settle();
  }

  function findTurn(key: string): TestTurn {
    const direct = turns.get(key);
    if (direct && !direct.outcome) return direct;
    const named = [...turns.values()].filter((turn) => !turn.outcome && turn.name === key);
    if (named.length !== 1) throw new Error(`no single pending agent turn "${key}"; pending: ${[...turns.values()].filter((t) => !t.outcome).map((t) => `${t.name} (${t.turnId})`).join(", ") || "none"}`);
    return named[0] as TestTurn;
  }

  const env: TestEnvironment = {
    logs,
    now: () => new Date(clock),
    async start(workflow, input = {}, startOptions = {}) {
      const name = typeof workflow === "string" ? workflow : workflowFrom(workflow).name;
      workflowOf(name);
      const run = createRun(name, input, startOptions.runId ?? `test-run-${++counter}`);
      await settle();
      return run;
    },
    async advance(duration) {
      clock += parseDuration(duration);
      await wakeAndSettle();
    },
    async sendEvent(event) {
      events.push({ id: `test-event-${++counter}`, eventType: event.eventType, correlationId: event.correlationId, payload: event.payload ?? null, ...(event.runId ? { runId: event.runId } : {}), createdAt: new Date(clock) });
      await wakeAndSettle();
    },
    pendingTurns: () => [...turns.values()].filter((turn) => !turn.outcome),
    async completeTurn(key, result) {
      const turn = findTurn(key);
      turn.outcome = { turnId: turn.turnId, agent: turn.agent, status: "completed", result };
      await wakeAndSettle();
    },
    async failTurn(key, error) {
      const turn = findTurn(key);
      turn.outcome = { turnId: turn.turnId, agent: turn.agent, status: "failed", error: { name: error.name ?? "Error", message: error.message } };
      await wakeAndSettle();
    },
    run(runId) {
      const run = runs.get(runId);
      if (!run) throw new Error(`no run ${runId} in this test environment`);
      return run;
    },
    async result<O>(handle: TestRun | string): Promise<O> {
      const run = env.run(typeof handle === "string" ? handle : handle.runId);
      await settle();
      for (;;) {
        if (run.status === "completed") return run.output as O;
        if (run.status === "failed" || run.status === "paused") {
          throw Object.assign(new Error(`run ${run.runId} ${run.status}: ${run.error?.name}: ${run.error?.message}`), { failure: run.error });
        }
        // Time skipping: jump to the earliest deadline any parked run has (a child's timer counts too).
        const deadlines = [...runs.values()].filter((r) => r.status === "waiting").flatMap((r) => nextDeadline(r.waits) ?? []);
        const next = deadlines.sort((a, b) => a.getTime() - b.getTime())[0];
        if (!next) throw new Error(`run ${run.runId} waits on ${run.waits.map((w) => `${w.kind} ${w.name}`).join(", ")} and no timer can wake it: send the event or answer the turn first`);
        clock = Math.max(clock, next.getTime());
        await wakeAndSettle();
      }
    },
    async replay(history, workflow) {
      const { handler, name, input } = workflowFrom(workflow);
      // An exported run holds its input as it was sent: the handler gets it through the schema, as on a server.
      if (!input) return replayHistory(history, handler, name);
      const validated = await input["~standard"].validate(history.run.input ?? {});
      if (validated.issues) return { ok: false, error: { name: "InvalidInputError", message: `the run's input no longer matches the workflow's schema: ${validated.issues.map((issue) => issue.message).join("; ")}` } };
      return replayHistory({ ...history, run: { ...history.run, input: validated.value as JsonValue } }, handler, name);
    },
  };
  return env;
}

/** A workflow as the environment runs it, whichever way its file declares it. */
interface Workflow {
  name: string;
  handler: Handler;
  input?: StandardSchemaV1 | undefined;
}

function workflowFrom(workflow: TestWorkflow): Workflow {
  if ("WORKFLOW_NAME" in workflow) return { name: workflow.WORKFLOW_NAME, handler: workflow.handler as Handler, input: workflow.Input };
  return { name: workflow.name, handler: workflow.handler as Handler, input: workflow.input };
}

