/**
 * A workflow thread: it loads the workflow modules itself (handlers can't cross threads) and runs many activations
 * at once, each with a `ThreadHost` that forwards to the main thread. Workflow code that throws where nothing catches
 * it, or leaves a rejection unhandled, ends only the activation whose code was running (the shared slot says which);
 * the thread and its other activations go on. Code that never yields is the watchdog's business (workflow-threads.ts):
 * it terminates the whole thread from the outside.
 */
import { parentPort, workerData } from "node:worker_threads";
import { promisify } from "node:util";
import { getHeapSpaceStatistics } from "node:v8";
import type { JsonValue } from "../../../sdk/workflow.js";
import { Activation, type ActivationOutcome } from "../../core/activation.js";
import { toFailureInfo } from "../../core/json.js";
import { createLogger } from "../../logger.js";
import { loadWorkflows } from "../../workflows/loader.js";
import { validateInput, type WorkflowRegistry } from "../../workflows/registry.js";
import { fullCollection, IdleCollector } from "./idle-collector.js";
import { Outbox } from "./outbox.js";
import { type PackedBatch, unpackToThread } from "./packed-messages.js";
import type { ActivationStart, ToThread, WireOutcome } from "./protocol.js";
import { RunningSlot } from "./running-slot.js";
import { ThreadHost } from "./thread-host.js";
import { ThreadJournal, type ThreadJournalOptions } from "./thread-journal.js";
import { toWire } from "./wire-error.js";

export interface ThreadData {
  workflowDirs: string[];
  /** The thread's RunningSlot: what it runs right now, for the watchdog. */
  slot: SharedArrayBuffer;
  /** On PostgreSQL: the thread writes its activations' appends itself, over a pool of its own (thread-journal.ts). */
  journal?: ThreadJournalOptions | undefined;
}

const port = parentPort;
if (!port) throw new Error("thread-main.ts runs only as a worker thread");
const data = workerData as ThreadData;
const slot = new RunningSlot(data.slot);
const running = new Map<number, ThreadHost>();
/** Runs this process tails (WatchRun): their entries are told as they commit (thread-journal.ts). */
const tailedRuns = new Set<string>();
const tailed = (activation: number): boolean => tailedRuns.size > 0 && tailedRuns.has(running.get(activation)?.runId ?? "");
/** The thread's own setImmediate, before attributeTimers wraps it. */
const later = setImmediate;
const collect = fullCollection();
// After the collection, the thread tells the pool how big its young generation grew: a grown one is memory that only
// replacing the thread gives back (workflow-threads.ts, `replaceIdle`).
const idleCollector = new IdleCollector(setTimeout, clearTimeout, undefined, () => {
  collect();
  outbox.send({ t: "idle", youngBytes: youngGenerationBytes() });
});

const pendingImmediates = attributeTimers(slot);
const outbox = new Outbox(port, () => pendingImmediates() > 0, later);
// Its statements go when the thread is idle, with its messages: every activation resumed has appended by then.
const journal = data.journal ? new ThreadJournal(data.journal, (flush) => outbox.whenIdle(flush), (message) => outbox.send(message), tailed) : undefined;

// The main thread already logged every load and skip; a thread's load is the same files again, so it stays quiet.
const registry: WorkflowRegistry = await loadWorkflows(data.workflowDirs, createLogger("silent"));

process.on("uncaughtException", (error) => crash(error, "uncaught exception"));
process.on("unhandledRejection", (reason) => crash(reason, "unhandled rejection"));

port.on("message", (batch: PackedBatch<ToThread>) => {
  const messages = unpackToThread(batch);
  // One message per turn, as if each had come alone: an unhandled rejection is noticed at the end of a turn, and the
  // slot must still name the activation whose code the turn ran.
  receive(messages[0] as ToThread);
  for (let i = 1; i < messages.length; i++) later(receive, messages[i] as ToThread);
  outbox.batchReceived();
});

function receive(message: ToThread): void {
  switch (message.t) {
    case "start":
      void start(message);
      return;
    case "reply":
      running.get(message.id)?.settle(message.call, message.ok, message.ok ? message.value : message.error);
      return;
    case "abort":
      running.get(message.id)?.abort(message.reason);
      return;
    case "ping":
      for (const [id, validUntil] of message.leases) {
        const host = running.get(id);
        if (host) host.validUntil = validUntil;
      }
      outbox.send({ t: "pong", seq: message.seq });
      return;
    case "tailed":
      if (message.on) tailedRuns.add(message.runId);
      else tailedRuns.delete(message.runId);
      return;
  }
}
outbox.send({ t: "ready", workflows: registry.list().map((w) => w.name) });

async function start(message: ActivationStart): Promise<void> {
  const { id, run } = message;
  const direct = journal && message.direct ? { journal, fence: message.direct.fence, nextSequence: message.direct.nextSequence } : undefined;
  const host = new ThreadHost(id, run.runId, outbox, slot, message.limits, message.validUntil, message.holdClockWaitsMs, direct, message.tally === true);
  running.set(id, host);
  idleCollector.busy();
  host.enter();
  let outcome: ActivationOutcome;
  try {
    const workflow = registry.get(run.workflowName);
    const input = await validateInput(workflow, run.input);
    host.enter();
    const identity = { runId: run.runId, workflowName: run.workflowName, input: input as JsonValue, createdAt: run.createdAt };
    outcome = await new Activation(identity, message.journal, host).execute(workflow.handler);
  } catch (error) {
    // The workflow is not loaded here or its input no longer validates: the run can't execute anywhere sensible.
    outcome = { kind: "failed", failure: toFailureInfo(error) };
  }
  // Crashed meanwhile: that end was already reported.
  if (running.get(id) !== host) return;
  if (direct) {
    // The end goes once the activation's own writes settled (thread-host.ts, `settleWrites`).
    outcome = await host.settleWrites(outcome);
    if (running.get(id) !== host) return;
  }
  running.delete(id);
  host.close();
  if (running.size === 0) idleCollector.idle();
  outbox.send({ t: "done", id, outcome: wireOutcome(outcome), direct: host.directReport(outcome) });
}

/** The young generation's reserved size (both semi-spaces), which V8 grows under load up to the pool's limit. */
function youngGenerationBytes(): number {
  return getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.space_size ?? 0;
}

function wireOutcome(outcome: ActivationOutcome): WireOutcome {
  return outcome.kind === "aborted" ? { kind: "aborted", reason: toWire(outcome.reason) } : outcome;
}

/** Ends the activation whose code was running when `error` escaped; the thread goes on. */
function crash(error: unknown, how: "uncaught exception" | "unhandled rejection"): void {
  const id = slot.activation;
  const host = running.get(id);
  if (!host) return; // Its activation already ended: nothing is left to blame, nothing to stop.
  running.delete(id);
  host.close();
  if (running.size === 0) idleCollector.idle();
  // Its step functions may listen on the signal: they stop too.
  host.abort({ name: "WorkflowCrashedError", message: `workflow code left an ${how}` });
  outbox.send({ t: "crashed", id, failure: toFailureInfo(error), how });
}

/**
 * Timer callbacks are a way into an activation's code that no host reply announces: each one is wrapped to note, as
 * it fires, the activation that scheduled it. (I/O callbacks a step awaits are not: see ARCHITECTURE.md.) The
 * immediates not yet run are counted: while there are any, code that was resumed has not yet reached its next host
 * call or real wait (the activation's driver takes a turn per quiet point), and the outbox holds its message.
 */
function attributeTimers(owner: RunningSlot): () => number {
  type Scheduler = (callback: unknown, ...rest: unknown[]) => unknown;
  // A count and a mark on each pending immediate, not a Set of them: the activations' quiet points schedule several
  // immediates a step, and a Set that grows and empties all the time reallocates its table (4 % of what the thread
  // allocated in W1, sampled).
  let pendingImmediates = 0;
  const pending = Symbol("pending immediate");
  type Marked = { [pending]?: boolean };
  const settle = (handle: unknown): void => {
    if (handle && (handle as Marked)[pending]) {
      (handle as Marked)[pending] = false;
      pendingImmediates--;
    }
  };
  const wrap = (original: Scheduler, counted: boolean): Scheduler => {
    const wrapped: Scheduler = (callback, ...rest) => {
      if (typeof callback !== "function") return Reflect.apply(original, globalThis, [callback, ...rest]);
      const scheduledBy = owner.activation;
      const handle = Reflect.apply(original, globalThis, [function (this: unknown, ...args: unknown[]) {
        if (counted) settle(handle);
        owner.enter(scheduledBy);
        return (callback as (...args: unknown[]) => unknown).apply(this, args);
      }, ...rest]);
      if (counted) {
        (handle as Marked)[pending] = true;
        pendingImmediates++;
      }
      return handle;
    };
    const custom = (original as unknown as Record<symbol, unknown>)[promisify.custom];
    if (custom) Object.defineProperty(wrapped, promisify.custom, { value: custom });
    return wrapped;
  };
  const timers = globalThis as unknown as Record<"setTimeout" | "setInterval" | "setImmediate" | "clearImmediate", Scheduler>;
  for (const name of ["setTimeout", "setInterval", "setImmediate"] as const) timers[name] = wrap(timers[name], name === "setImmediate");
  const clearImmediate = timers.clearImmediate;
  timers.clearImmediate = (handle) => {
    settle(handle);
    return Reflect.apply(clearImmediate, globalThis, [handle]);
  };
  return () => pendingImmediates;
}
