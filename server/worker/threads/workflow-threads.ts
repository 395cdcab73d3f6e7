/**
 * Workflow code off the main thread. A few worker threads (CAIRN_WORKFLOW_THREADS, each with a heap limit) run every
 * activation of this process, many per thread; the main thread keeps RPCs, lease renewal, timers and every database
 * call, and answers each activation's host calls with the executor's real host (protocol.ts).
 *
 * A watchdog pings each thread. A thread silent for longer than CAIRN_BLOCKED_CODE_MS is terminated (that stops even
 * a spinning isolate) and replaced: the run whose code held it (the thread's shared slot, set each time a run's code
 * is entered) ends abnormally and counts towards the poison-run breaker; the other runs on that thread are only
 * re-queued (their journals are durable). A silent thread whose running step attempt is past its own `timeout` is
 * stopped at once, and that attempt is journaled as timed out. A thread that runs out of heap is blamed the same way.
 *
 * A thread whose young generation grew under load and that then stays idle is replaced by a fresh one (`replaceIdle`):
 * V8 never gives a grown young generation back, and a new thread is the only way to return that memory.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { StepAttemptScope, StepAttemptStart } from "../../core/host.js";
import { type ActivationOutcome, withEntriesFirst } from "../../core/activation.js";
import type { NewEntry } from "../../core/journal.js";
import type { Logger } from "../../logger.js";
import type { Gather } from "../../store/batcher.js";
import type { LocalCommits } from "../../store/local-commits.js";
import type { WorkflowRegistry } from "../../workflows/registry.js";
import type { ActivationRequest, ActivationRunner, DirectJournal, RunnerOutcome } from "../activation-runner.js";
import { type PackedBatch, packToThread, unpackFromThread } from "./packed-messages.js";
import type { AttemptOutcome } from "../../core/host.js";
import { attemptOutcomes, type FromThread, type HostCallName, type ToThread, type WireOutcome } from "./protocol.js";
import { RunningSlot } from "./running-slot.js";
import type { ThreadJournalOptions } from "./thread-journal.js";
import type { ThreadData } from "./thread-main.js";
import { ErrorRefs } from "./wire-error.js";

export interface WorkflowThreadsOptions {
  workflowDirs: readonly string[];
  /** CAIRN_WORKFLOW_THREADS. */
  threads: number;
  /** CAIRN_BLOCKED_CODE_MS. */
  blockedCodeMs: number;
  /** CAIRN_WORKFLOW_HEAP_MB: each thread's old-generation heap limit. */
  heapMb: number;
  /** The longest a group commit waits for the threads to answer (default 2 ms). */
  gatherCapMs?: number;
  /**
   * On PostgreSQL: each thread writes its activations' appends itself, over a pool of its own with these settings
   * (thread-journal.ts). Absent (PGlite): appends go through the main thread.
   */
  journal?: ThreadJournalOptions | undefined;
  /** Where this process marks the runs its statements are committing (the store's), for the threads' statements too. */
  commits?: LocalCommits | undefined;
  /** How long a thread whose young generation grew stays idle before it is replaced (default 5 s). */
  replaceIdleAfterMs?: number;
  /** The young generation size (bytes, as the thread reports it) above which an idle thread is replaced (default 16 MiB). */
  replaceAboveYoungBytes?: number;
  /** How long a replacement may take to load the workflows before it is given up (default 60 s). */
  replacementLoadMs?: number;
  logger: Logger;
}

/**
 * The longest a group commit waits for the threads to answer. A thread answers once what it was sent has run up to
 * its next host call or real wait, which is quick unless its code is busy for a while (a CPU-heavy step, a thread
 * the OS put aside): then the statement goes without what that thread would add.
 */
const defaultGatherCapMs = 2;
/** How often the watchdog pings a thread that has no activation. */
const idlePingMs = 5000;
/**
 * Each thread's young generation, MB: the most V8 may grow it to (it starts at about 2 MB). Activations live for the
 * length of a run, a few round trips: with 16 MB a busy thread collected its young generation 15 times a second and
 * copied most of the runs in flight each time, and the collections took a fifth of the thread's time and more of
 * V8's helper threads' (W1 through the thread cost 1.26–1.55× the CPU per step of W1 on the main thread); with 64 MB,
 * 4 a second, and W1's price fell from about 0.85 to about 0.9 (docs/benchmarks.md). What a grown young generation
 * keeps is given back when the thread is replaced after a quiet spell (`replaceIdle`).
 */
const threadYoungGenerationMb = 64;
/** How long a thread whose young generation grew stays idle before it is replaced. */
const defaultReplaceIdleAfterMs = 5000;
/** A young generation larger than this (its size as V8 reports it) has grown under load: replacing the thread pays. */
const defaultReplaceAboveYoungBytes = 16 * 1024 * 1024;
/**
 * How long a replacement may take to load the workflows (about a second from the sources) before it is stopped and
 * the idle thread serves on: a workflow file changed on disk to loop at import must not leave a thread spinning.
 */
const defaultReplacementLoadMs = 60_000;

/**
 * The default thread count: one per core but one, at least one and at most four. The main thread (RPCs, the database
 * client, every group commit) needs a core of its own: on two cores, a second workflow thread cost more server CPU
 * per step (1.66× the in-thread server against 1.26–1.37× with one) and more PostgreSQL work, because the activations
 * one group commit resumed then answered at different times, so the next statements carried fewer rows.
 */
export function defaultWorkflowThreads(cores = availableParallelism()): number {
  return Math.max(1, Math.min(4, cores - 1));
}

interface LiveActivation {
  id: number;
  request: ActivationRequest;
  refs: ErrorRefs;
  /** Its step attempts with a timeout that have not ended (the watchdog enforces those). */
  attempts: Map<number, { step: StepAttemptStart; startedAt: number; scope: StepAttemptScope | undefined }>;
  /** Settles once every append the thread has sent so far committed; rejected with the first that failed. */
  appended: Promise<void>;
  /** The thread reported the activation's end: replies would find nothing there to resume. */
  ended: boolean;
  /** Appends that came right before the activation's end: they are written with it (`withEntriesFirst`). */
  trailing: NewEntry[];
  finish(outcome: RunnerOutcome): void;
}

class WorkflowThread {
  readonly activations = new Map<number, LiveActivation>();
  ready = false;
  /** Stopped (terminated by the watchdog, exited, or pool closed): its activations are settled. */
  dead = false;
  /** When the unanswered ping went out (absent: none pending). */
  pingedAt: number | undefined;
  /** When the last ping went out. */
  lastPingAt = 0;
  lastError: unknown;
  /** Messages for the thread, sent together at the end of this turn. */
  readonly outbox: ToThread[] = [];
  /** The thread's journal statements in flight, each with the end of its mark in LocalCommits. */
  readonly statements = new Map<number, () => void>();
  /** Batches posted to the thread, and how many of them it has answered (it went idle after handling them). */
  sent = 0;
  answered = 0;
  /** Since when the thread has had no activation (absent: it has some, or is not ready). */
  idleSince: number | undefined;
  /** Its young generation's size when it last fell idle (the thread reports it after its idle collection). */
  youngBytes = 0;
  /** The thread this one was started to replace, until it is ready and takes over. */
  replaces: WorkflowThread | undefined;
  /** Replaced: it takes no new activation and is stopped once its last one ends. */
  retiring = false;
  readonly spawnedAt = Date.now();
  constructor(
    readonly worker: Worker,
    /** What the thread runs right now, written by the thread. */
    readonly slot: RunningSlot,
  ) {}
}

export class WorkflowThreads implements ActivationRunner {
  private readonly threads: WorkflowThread[] = [];
  private nextId = 1;
  private pingSeq = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private lastWatch = Date.now();
  private closed = false;
  private readonly pingMs: number;
  /** Waiters for a ready thread (all threads are being replaced). */
  private waiters: (() => void)[] = [];
  /** Group commits waiting for the threads to answer, and the cap on that wait. */
  private gathering: (() => void)[] = [];
  private gatherTimer: NodeJS.Timeout | undefined;
  /** Runs this process tails (WatchRun), counted: the threads that write their entries tell them as they commit. */
  private readonly tailedRuns = new Map<string, number>();

  constructor(private readonly options: WorkflowThreadsOptions) {
    this.pingMs = Math.max(10, Math.min(250, Math.floor(options.blockedCodeMs / 4)));
  }

  /** Starts the threads; rejects if one can't load the workflows (start-up stops, as when the main thread can't). */
  async start(): Promise<void> {
    const started = Array.from({ length: Math.max(1, this.options.threads) }, () => this.spawn());
    await Promise.all(started.map((thread) => this.whenReady(thread)));
    this.lastWatch = Date.now();
    this.watchdog = setInterval(() => this.watch(), this.pingMs);
    this.watchdog.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    const all = this.threads.splice(0);
    for (const thread of all) this.settleAll(thread, undefined, "server shutting down");
    this.releaseGathered();
    await Promise.allSettled(all.map((thread) => thread.worker.terminate()));
  }

  get size(): number {
    return this.threads.length;
  }

  /**
   * How the store's group commits gather items with workflow threads (store.gatherWith): after one turn of this
   * thread, a statement waits until every thread has answered what it was last sent, so the activations that one
   * commit resumed, on every thread, are all in the next. In-thread, one turn of the main thread did that; here
   * their appends arrive later, and without the wait a statement carried about half of them (twice the statements,
   * commits and round trips per step).
   */
  readonly gather: Gather = (flush) => {
    setImmediate(() => {
      if (this.quiet()) return flush();
      this.gathering.push(flush);
      this.gatherTimer ??= setTimeout(() => this.releaseGathered(), this.options.gatherCapMs ?? defaultGatherCapMs);
    });
  };

  /** Every live thread has answered everything posted to it. */
  private quiet(): boolean {
    for (const thread of this.threads) if (!thread.dead && thread.ready && thread.answered < thread.sent) return false;
    return true;
  }

  /** A thread answered or went away: the waiting group commits go if no other thread still owes an answer. */
  private releaseIfQuiet(): void {
    if (this.gathering.length > 0 && this.quiet()) this.releaseGathered();
  }

  private releaseGathered(): void {
    clearTimeout(this.gatherTimer);
    this.gatherTimer = undefined;
    for (const flush of this.gathering.splice(0)) flush();
  }

  async run(request: ActivationRequest, _registry: WorkflowRegistry): Promise<RunnerOutcome> {
    // Picked and taken in one synchronous stretch: a claimed batch's activations, started in one turn, spread over
    // the threads (awaiting the pick first would let them all choose the same least busy thread).
    const thread = this.leastBusy() ?? (await this.readyThread());
    thread.idleSince = undefined;
    const id = this.nextId++;
    if (this.nextId > 0x7fff_fff0) this.nextId = 1;
    const refs = new ErrorRefs();
    const { host } = request;
    return new Promise<RunnerOutcome>((resolve) => {
      const onAbort = () => this.post(thread, { t: "abort", id, reason: refs.toWire(host.signal.reason) });
      const live: LiveActivation = {
        id,
        request,
        refs,
        attempts: new Map(),
        appended: Promise.resolve(),
        ended: false,
        trailing: [],
        finish: (outcome) => {
          if (!thread.activations.delete(id)) return;
          if (thread.activations.size === 0) this.becameIdle(thread);
          host.signal.removeEventListener("abort", onAbort);
          for (const attempt of live.attempts.values()) attempt.scope?.end("failed");
          resolve(outcome);
        },
      };
      thread.activations.set(id, live);
      host.signal.addEventListener("abort", onAbort);
      this.post(thread, {
        t: "start",
        id,
        run: request.run,
        journal: request.journal,
        limits: host.limits,
        validUntil: request.leaseValidUntil?.(),
        holdClockWaitsMs: host.holdClockWaitsMs,
        direct: request.direct && this.options.journal ? { fence: request.direct.fence, nextSequence: request.direct.nextSequence } : undefined,
        tally: request.countAttempt ? true : undefined,
      });
      if (host.signal.aborted) onAbort();
    });
  }

  /**
   * This process starts (`on`) or stops tailing a run. Threads that write their runs' entries themselves tell the main
   * thread those of tailed runs only: for the others, nobody here would take them (a watcher that comes later reads
   * them on the store's notice, as it would those of a run executed elsewhere).
   */
  tailed(runId: string, on: boolean): void {
    if (!this.options.journal) return;
    const count = (this.tailedRuns.get(runId) ?? 0) + (on ? 1 : -1);
    if (count > 0) this.tailedRuns.set(runId, count);
    else this.tailedRuns.delete(runId);
    if (count === (on ? 1 : 0)) for (const thread of this.threads) this.post(thread, { t: "tailed", runId, on });
  }

  /** `replaces`: the thread this one takes over from once it is ready (`replaceIdle`). */
  private spawn(replaces?: WorkflowThread): WorkflowThread {
    const slot = new RunningSlot();
    const data: ThreadData = { workflowDirs: [...this.options.workflowDirs], slot: slot.buffer, journal: this.options.journal };
    const [entry, evaluated] = threadEntry();
    // (The thread's console output goes to this process's stdout and stderr, as the code's would in-thread.)
    const worker = new Worker(entry, { ...evaluated, workerData: data, resourceLimits: { maxOldGenerationSizeMb: this.options.heapMb, maxYoungGenerationSizeMb: threadYoungGenerationMb } });
    const thread = new WorkflowThread(worker, slot);
    thread.replaces = replaces;
    this.threads.push(thread);
    worker.on("message", (batch: PackedBatch<FromThread>) => {
      const messages = unpackFromThread(batch);
      if (messages.length === 1) this.receive(thread, messages[0] as FromThread);
      else {
        const riding = appendsBeforeEnds(messages);
        for (let i = 0; i < messages.length; i++) this.receive(thread, messages[i] as FromThread, riding.has(i));
      }
    });
    worker.on("error", (error) => {
      thread.lastError = error;
    });
    worker.on("exit", (code) => this.exited(thread, code));
    // (Posted before the thread listens: its port holds them until it does.)
    for (const runId of this.tailedRuns.keys()) this.post(thread, { t: "tailed", runId, on: true });
    return thread;
  }

  private whenReady(thread: WorkflowThread): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (thread.ready) return resolve();
        if (thread.dead) return reject(thread.lastError instanceof Error ? thread.lastError : new Error("a workflow thread exited while loading the workflows"));
        setTimeout(check, 5);
      };
      check();
    });
  }

  /** The ready thread with the fewest activations, if any thread is ready. */
  private leastBusy(): WorkflowThread | undefined {
    let best: WorkflowThread | undefined;
    for (const thread of this.threads) {
      if (!thread.ready || thread.dead || thread.retiring) continue;
      if (!best || thread.activations.size < best.activations.size) best = thread;
    }
    return best;
  }

  /** Waits while every thread is being replaced. */
  private async readyThread(): Promise<WorkflowThread> {
    for (;;) {
      const best = this.leastBusy();
      if (best) return best;
      if (this.closed) throw new Error("workflow threads are closed");
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /**
   * Queues `message` for the thread: everything for one thread in one turn (the replies a group commit resolved at
   * once, the starts of a claimed batch) goes as one message once the turn's promise callbacks have run.
   */
  private post(thread: WorkflowThread, message: ToThread): void {
    if (thread.dead) return;
    thread.outbox.push(message);
    if (thread.outbox.length > 1) return;
    process.nextTick(() => {
      const batch = thread.outbox.splice(0);
      if (thread.dead || batch.length === 0) return;
      thread.sent++;
      thread.worker.postMessage(packToThread(batch));
    });
  }

  /** `endsNext`: the activation's end follows this message in its batch (`appendsBeforeEnds`). */
  private receive(thread: WorkflowThread, message: FromThread, endsNext = false): void {
    if (message.t === "pong") {
      thread.pingedAt = undefined;
      return;
    }
    if (message.t === "answered") {
      thread.answered = message.n;
      this.releaseIfQuiet();
      return;
    }
    if (message.t === "ready") {
      thread.ready = true;
      thread.idleSince = Date.now();
      if (thread.replaces) this.handOver(thread.replaces, thread);
      for (const wake of this.waiters.splice(0)) wake();
      return;
    }
    if (message.t === "idle") {
      thread.youngBytes = message.youngBytes;
      return;
    }
    if (message.t === "committing") {
      // Marked until its tellings are out, as the main thread's own statements are (store/local-commits.ts).
      if (this.options.commits) {
        const runIds: string[] = [];
        for (const id of message.ids) {
          const live = thread.activations.get(id);
          if (live) runIds.push(live.request.run.runId);
        }
        thread.statements.set(message.statement, this.options.commits.begin(runIds));
      }
      return;
    }
    if (message.t === "tally") {
      const { attempts } = message;
      for (let i = 0; i < attempts.length; i += 3) {
        thread.activations.get(attempts[i] as number)?.request.countAttempt?.(attemptOutcomes[attempts[i + 1] as number] as AttemptOutcome, attempts[i + 2] as number);
      }
      return;
    }
    if (message.t === "committed") {
      for (const { id, sequence, entry, createdAt } of message.entries) thread.activations.get(id)?.request.direct?.appended(sequence, entry, new Date(createdAt));
      const end = thread.statements.get(message.statement);
      thread.statements.delete(message.statement);
      // After the promise callbacks the tellings resumed, as LocalCommits.around ends its mark.
      if (end) setImmediate(end);
      return;
    }
    const live = thread.activations.get(message.id);
    if (!live) return;
    const host = live.request.host;
    switch (message.t) {
      case "call": {
        if (message.attempt) host.stepAttempt?.(message.attempt.step).end(message.attempt.outcome, message.attempt.elapsedMs);
        if (message.op === "append" && endsNext) {
          // The run's last entry came with its end (the append ran ahead, thread-host.ts): it is written with the end,
          // in one statement, instead of a commit of its own before it. If the end is not a run's end (the activation
          // was aborted), nothing of it is written, as if the append had failed.
          live.trailing.push(message.arg as NewEntry);
          return;
        }
        const method =
          message.op === "refusal"
            ? () => (live.request.direct as DirectJournal).refusal().then((error) => Promise.reject(error))
            : (host[message.op as Exclude<HostCallName, "refusal">] as (arg: unknown) => Promise<unknown>);
        // A call made after the code may have seen an uncommitted append waits for it (thread-host.ts, `append`).
        const result = message.after ? live.appended.then(() => method(message.arg)) : method(message.arg);
        if (message.op === "append") {
          live.appended = live.appended.then(() => result as Promise<void>);
          live.appended.catch(() => undefined);
        }
        void result.then(
          (value) => !live.ended && this.post(thread, { t: "reply", id: live.id, call: message.call, ok: true, value }),
          (error: unknown) => !live.ended && this.post(thread, { t: "reply", id: live.id, call: message.call, ok: false, error: live.refs.toWire(error) }),
        );
        return;
      }
      case "attempt":
        live.attempts.set(message.key, { step: message.step, startedAt: Date.now(), scope: host.stepAttempt?.(message.step) });
        return;
      case "attempt_end":
        live.attempts.get(message.key)?.scope?.end(message.outcome, message.elapsedMs);
        live.attempts.delete(message.key);
        return;
      case "attempt_done":
        host.stepAttempt?.(message.step).end(message.outcome, message.elapsedMs);
        return;
      case "log":
        host.logger[message.level](message.message, message.fields);
        return;
      case "done": {
        if (message.direct) live.request.direct?.ended(message.direct);
        const outcome = withEntriesFirst(message.outcome, live.trailing);
        live.ended = true;
        // Its last append may still be committing: the end is written after it, or not at all if it fails.
        void live.appended.then(
          () => live.finish(outcome.kind === "aborted" ? ({ kind: "aborted", reason: live.refs.resolve(outcome.reason) } satisfies ActivationOutcome) : outcome),
          (error: unknown) => live.finish({ kind: "aborted", reason: error }),
        );
        return;
      }
      case "crashed":
        live.finish({ kind: "abnormal", cause: `crashed its activation with an ${message.how} (${message.failure.name}: ${message.failure.message})`, failure: message.failure });
        return;
    }
  }

  /** The watchdog's tick: ping quiet threads, stop those silent too long. */
  private watch(): void {
    const now = Date.now();
    const stalled = now - this.lastWatch > Math.max(4 * this.pingMs, 1000);
    this.lastWatch = now;
    if (stalled) {
      // This thread itself did not run for a while (SIGSTOP, a frozen VM, a long GC): the threads' silence counts from now.
      for (const thread of this.threads) if (thread.pingedAt !== undefined) thread.pingedAt = now;
      return;
    }
    for (const thread of [...this.threads]) {
      if (thread.replaces && !thread.ready && !thread.dead && now - thread.spawnedAt > (this.options.replacementLoadMs ?? defaultReplacementLoadMs)) {
        this.retire(thread, undefined, undefined, "its replacement thread did not load");
        continue;
      }
      if (!thread.ready || thread.dead) continue;
      if (this.grownAndIdle(thread, now)) this.replaceIdle(thread);
      if (thread.pingedAt === undefined) {
        // A thread without activations holds no run up: pinged now and then, not every tick (each ping wakes both
        // threads; with many idle servers' threads that was most of their idle CPU). The next activation it is
        // given brings it back to every tick.
        if (thread.activations.size === 0 && now - thread.lastPingAt < idlePingMs) continue;
        thread.pingedAt = now;
        thread.lastPingAt = now;
        const leases: [number, number][] = [];
        for (const live of thread.activations.values()) {
          const validUntil = live.request.leaseValidUntil?.();
          if (validUntil !== undefined) leases.push([live.id, validUntil]);
        }
        this.post(thread, { t: "ping", seq: ++this.pingSeq, leases });
        continue;
      }
      const silentMs = now - thread.pingedAt;
      if (silentMs > this.options.blockedCodeMs) {
        this.stop(thread, "blocked");
        continue;
      }
      if (silentMs < this.pingMs) continue;
      // Silent for a while: is the code running now a step function already past its own timeout?
      const step = thread.slot.step;
      if (step && step.deadline > 0 && now > step.deadline && thread.activations.get(thread.slot.activation)?.attempts.has(step.key)) this.stop(thread, "overran");
    }
  }

  /** The thread's young generation grew under load and it has been idle long enough: replacing it pays. */
  private grownAndIdle(thread: WorkflowThread, now: number): boolean {
    if (thread.retiring || thread.idleSince === undefined || this.closed || this.replacementOf(thread)) return false;
    const afterMs = this.options.replaceIdleAfterMs ?? defaultReplaceIdleAfterMs;
    return now - thread.idleSince >= afterMs && thread.youngBytes > (this.options.replaceAboveYoungBytes ?? defaultReplaceAboveYoungBytes);
  }

  /**
   * Starts a fresh thread to replace an idle one whose young generation grew (memory V8 keeps for good). The idle
   * thread serves on while the new one loads the workflows (activations that come meanwhile go to it); once the new
   * one is ready, the old takes no more and is stopped when it has none (`handOver`). Loading costs the new thread
   * some CPU (a few hundred ms from the sources, less built), once per quiet spell after a burst.
   */
  private replaceIdle(thread: WorkflowThread): void {
    this.options.logger.debug({ youngBytes: thread.youngBytes }, "replacing an idle workflow thread whose young generation grew, to give that memory back");
    this.spawn(thread);
  }

  /** The fresh thread loading to replace `thread`, if any. */
  private replacementOf(thread: WorkflowThread): WorkflowThread | undefined {
    return this.threads.find((other) => other.replaces === thread);
  }

  /** The replacement `fresh` is ready: `old` takes no new activation and stops once it has none. */
  private handOver(old: WorkflowThread, fresh: WorkflowThread): void {
    fresh.replaces = undefined;
    if (old.dead) return;
    old.retiring = true;
    if (old.activations.size === 0) this.dismiss(old);
  }

  /** The thread has no activation now: a retiring one is stopped. */
  private becameIdle(thread: WorkflowThread): void {
    thread.idleSince = Date.now();
    if (thread.retiring && !thread.dead) this.dismiss(thread);
  }

  /** Stops a thread that holds no activation (replaced), without replacing it. */
  private dismiss(thread: WorkflowThread): void {
    thread.dead = true;
    const index = this.threads.indexOf(thread);
    if (index >= 0) this.threads.splice(index, 1);
    void thread.worker.terminate();
    this.releaseIfQuiet();
  }

  /** Terminates a thread whose code would not yield; blames the run in the slot and re-queues the others. */
  private stop(thread: WorkflowThread, why: "blocked" | "overran"): void {
    const culprit = thread.activations.get(thread.slot.activation);
    const step = thread.slot.step;
    const attempt = step && culprit?.attempts.get(step.key);
    let outcome: RunnerOutcome | undefined;
    if (culprit) {
      if (why === "overran" && attempt?.step.timeout) {
        outcome = { kind: "overran", entry: overrunEntry(attempt.step), cause: `step "${attempt.step.name}" ran past its ${attempt.step.timeout.ms} ms timeout without yielding` };
      } else {
        const where = step ? `in step "${step.name}"` : "in its handler";
        const cause = `blocked its thread for more than ${this.options.blockedCodeMs} ms (CAIRN_BLOCKED_CODE_MS) ${where}`;
        outcome = { kind: "abnormal", cause, failure: { name: "WorkflowCodeBlockedError", message: `run ${culprit.request.run.runId} ${cause}` } };
      }
    }
    this.options.logger.warn({ runId: culprit?.request.run.runId, step: step?.name, activations: thread.activations.size, why }, "workflow thread stopped: its code did not yield; replacing it");
    this.retire(thread, culprit, outcome, why === "blocked" ? "its thread was stopped: another run's code blocked it" : "its thread was stopped: another run's step overran its timeout");
  }

  private exited(thread: WorkflowThread, code: number): void {
    if (thread.dead) return;
    const error = thread.lastError as (Error & { code?: string }) | undefined;
    const culprit = thread.activations.get(thread.slot.activation);
    const cause =
      error?.code === "ERR_WORKER_OUT_OF_MEMORY"
        ? `ran its thread out of memory (over ${this.options.heapMb} MB, CAIRN_WORKFLOW_HEAP_MB)`
        : `ended its thread (exit code ${code}${error ? `: ${error.message}` : ""})`;
    this.options.logger.warn({ runId: culprit?.request.run.runId, activations: thread.activations.size, err: error, code }, "workflow thread ended; replacing it");
    const outcome: RunnerOutcome | undefined = culprit && { kind: "abnormal", cause, failure: { name: error?.code === "ERR_WORKER_OUT_OF_MEMORY" ? "WorkflowOutOfMemoryError" : "WorkflowThreadExitedError", message: `run ${culprit.request.run.runId} ${cause}` } };
    this.retire(thread, culprit, outcome, "its thread ended: another run's code broke it");
  }

  /** Settles every activation of a dead thread and starts its replacement. */
  private retire(thread: WorkflowThread, culprit: LiveActivation | undefined, outcome: RunnerOutcome | undefined, innocentCause: string): void {
    const wasReady = thread.ready;
    thread.dead = true;
    const index = this.threads.indexOf(thread);
    if (index >= 0) this.threads.splice(index, 1);
    void thread.worker.terminate();
    if (culprit && outcome) culprit.finish(outcome);
    this.settleAll(thread, culprit, innocentCause);
    this.releaseIfQuiet();
    if (this.closed) return;
    // A replacement that broke or hung before it was ready: the thread it was to replace serves on (it tries again
    // after its next burst). A retiring thread that broke: its replacement already serves.
    if (thread.replaces && !thread.replaces.dead) {
      thread.replaces.youngBytes = 0;
      this.options.logger.warn({ err: thread.lastError }, "a replacement workflow thread could not load the workflows; the idle one it was to replace serves on");
      return;
    }
    // (A thread that broke while its replacement loads leaves that replacement to take its place.)
    if (thread.retiring || this.replacementOf(thread)) return;
    if (!wasReady) {
      // It failed while loading the workflows (a file changed on disk?): try again later, not in a tight loop.
      this.options.logger.error({ err: thread.lastError }, "a workflow thread could not load the workflows; retrying in 1 s");
      setTimeout(() => !this.closed && this.spawn(), 1000).unref();
      return;
    }
    this.spawn();
  }

  private settleAll(thread: WorkflowThread, except: LiveActivation | undefined, cause: string): void {
    thread.dead = true;
    // Its statements in flight commit or not without it: nothing will tell their entries, watchers read them.
    for (const end of thread.statements.values()) end();
    thread.statements.clear();
    for (const live of [...thread.activations.values()]) if (live !== except) live.finish({ kind: "released", cause });
  }
}

/**
 * The positions in a thread's batch of appends followed by their activation's end as a run's end (completed or
 * failed), with only log records of that activation between: those appends can ride on the end. One pass from the
 * back, remembering per activation whether the next message of its own is such an end.
 */
function appendsBeforeEnds(batch: readonly FromThread[]): Set<number> {
  const riding = new Set<number>();
  const endsNext = new Map<number, boolean>();
  for (let i = batch.length - 1; i >= 0; i--) {
    const message = batch[i] as FromThread;
    if (!("id" in message) || message.t === "log") continue;
    if (message.t === "call" && message.op === "append" && endsNext.get(message.id) === true) riding.add(i);
    endsNext.set(message.id, message.t === "done" && (message.outcome.kind === "completed" || message.outcome.kind === "failed"));
  }
  return riding;
}

/** The step attempt's timed-out failure, as the core would have journaled it had the code yielded. */
function overrunEntry(step: StepAttemptStart): NewEntry {
  const timeout = step.timeout as NonNullable<StepAttemptStart["timeout"]>;
  if (timeout.retryDelayMs === undefined) return { kind: "step_failed", name: step.name, error: timeout.failure, attempt: step.attempt, startedAt: timeout.startedAt };
  return {
    kind: "step_attempt_failed",
    name: step.name,
    error: timeout.failure,
    attempt: step.attempt,
    startedAt: timeout.startedAt,
    fireAt: new Date(Date.now() + timeout.retryDelayMs),
  };
}

/**
 * How to start a thread: the compiled server runs thread-main.js as is; from the sources, the thread first registers
 * tsx (worker threads don't inherit `--import tsx`), then imports thread-main.ts.
 */
function threadEntry(): [string | URL, { eval: true }?] {
  const fromSources = import.meta.url.endsWith(".ts");
  const entry = new URL(fromSources ? "./thread-main.ts" : "./thread-main.js", import.meta.url);
  if (!fromSources) return [entry];
  const tsx = typeof import.meta.resolve === "function" ? import.meta.resolve("tsx/esm/api") : "tsx/esm/api";
  return [`import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`, { eval: true }];
}
