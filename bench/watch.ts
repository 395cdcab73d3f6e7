/**
 * Watch delay: how long a journal entry takes to reach WatchRun watchers.
 *
 * One bench_watched run is created (eager) with a gate: it parks on an event
 * before its first step. W watchers then open WatchRun (after_sequence 0) on
 * one HTTP/2 connection of their own; a watcher counts as subscribed when its
 * first message (the run snapshot) arrives, which the server sends only after
 * it registered the subscription. Once all are subscribed, SendEvent opens the
 * gate and the run writes its entries (event_received, S steps of ~stepMs
 * each, run_completed). Per entry and watcher the delay is the arrival time
 * (Date.now()) minus the entry's created_at (server clock, same machine,
 * 1 ms resolution); only entries created after the watcher subscribed count.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fromJson } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp, ValueSchema } from "@bufbuild/protobuf/wkt";
import { EntryKind, RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import { GATE_EVENT, WORKFLOW_NAME as WATCHED_WORKFLOW } from "./workflows/watched.js";
import type { WorkflowClient } from "./client.js";
import { withTimeout } from "./timeout.js";

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function millis(timestamp: Timestamp | undefined): number | undefined {
  return timestamp ? timestampDate(timestamp).getTime() : undefined;
}

export interface WatchDelayResult {
  watchers: number;
  steps: number;
  stepMs: number;
  failures: string[];
  /** First WatchRun call → every watcher has its snapshot. */
  subscribeMs: number;
  /** Arrival − created_at of every counted entry of every watcher, ms, ascending. */
  delaysMs: number[];
  /** The run_completed entry only, one per watcher, ascending. */
  lastEntryDelaysMs: number[];
  /** Entries each watcher counted (expected: steps + 2, event_received and run_completed included). */
  entriesPerWatcher: { min: number; max: number; expected: number };
  /** Entries seen but not counted (created before the watcher subscribed: the backlog). */
  excluded: number;
  /** event_received → run_completed (server clock): the run's own pace under this many watchers; ideal ≈ steps × stepMs. */
  runMs: number;
  /** Gate SendEvent → the last watcher's stream ended. */
  wallMs: number;
}

interface WatcherTally {
  subscribedAt: number | undefined;
  delays: number[];
  lastEntryDelay: number | undefined;
  counted: number;
  excluded: number;
  createdAt: Map<EntryKind, number>;
}

export async function watchDelay(
  client: WorkflowClient,
  watchClient: WorkflowClient,
  options: { watchers: number; steps: number; stepMs: number; signal: AbortSignal; tag?: string },
): Promise<WatchDelayResult> {
  const gate = `watch-${options.tag ?? randomBytes(3).toString("hex")}-${options.watchers}`;
  const failures: string[] = [];
  const result: WatchDelayResult = {
    watchers: options.watchers,
    steps: options.steps,
    stepMs: options.stepMs,
    failures,
    subscribeMs: Number.NaN,
    delaysMs: [],
    lastEntryDelaysMs: [],
    entriesPerWatcher: { min: 0, max: 0, expected: options.steps + 2 },
    excluded: 0,
    runMs: Number.NaN,
    wallMs: Number.NaN,
  };
  const stop = new AbortController();
  // Every watcher's stream listens on it: hundreds of listeners are expected.
  setMaxListeners(0, stop.signal);
  const onAbort = () => stop.abort(new Error("interrupted"));
  options.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const input = fromJson(ValueSchema, { steps: options.steps, stepMs: options.stepMs, gate });
    const { run } = await client.createRun({ workflowName: WATCHED_WORKFLOW, input, eagerStart: true });
    const runId = run?.runId;
    if (!runId) throw new Error("CreateRun answered without a run id");
    await awaitWaiting(client, runId, options.signal);

    const tallies: WatcherTally[] = [];
    const subscribed: Promise<void>[] = [];
    const subscribing = performance.now();
    const streams = Array.from({ length: options.watchers }, () => {
      const tally: WatcherTally = { subscribedAt: undefined, delays: [], lastEntryDelay: undefined, counted: 0, excluded: 0, createdAt: new Map() };
      tallies.push(tally);
      let onSubscribed: () => void = () => undefined;
      subscribed.push(new Promise<void>((resolve) => (onSubscribed = resolve)));
      return (async () => {
        try {
          for await (const update of watchClient.watchRun({ runId, afterSequence: 0n }, { signal: stop.signal })) {
            const now = Date.now();
            if (update.update.case === "run") {
              if (tally.subscribedAt === undefined) {
                tally.subscribedAt = now;
                onSubscribed();
              }
              continue;
            }
            if (update.update.case !== "entry") continue;
            const entry = update.update.value;
            const created = millis(entry.createdAt);
            if (created === undefined) continue;
            tally.createdAt.set(entry.kind, created);
            if (tally.subscribedAt !== undefined && created > tally.subscribedAt) {
              tally.counted++;
              tally.delays.push(now - created);
              if (entry.kind === EntryKind.RUN_COMPLETED) tally.lastEntryDelay = now - created;
            } else {
              tally.excluded++;
            }
          }
        } finally {
          // A stream that failed before its snapshot must not hold up the gate.
          onSubscribed();
        }
      })();
    });
    const watching = Promise.allSettled(streams);

    await withTimeout(Promise.all(subscribed), 30_000, `not all ${options.watchers} watchers subscribed within 30 s`);
    result.subscribeMs = performance.now() - subscribing;
    const missing = tallies.filter((t) => t.subscribedAt === undefined).length;
    if (missing > 0) failures.push(`${missing} watchers ended before their snapshot`);

    const opening = performance.now();
    const sent = await client.sendEvent({ eventType: GATE_EVENT, correlationId: gate, payload: fromJson(ValueSchema, {}) });
    if (!sent.matchedRunIds.includes(runId)) throw new Error(`gate event matched ${JSON.stringify(sent.matchedRunIds)}, not the parked run`);

    // Every stream ends by itself once the run is over; give up well after the run should have finished.
    const budgetMs = options.steps * options.stepMs * 10 + 60_000;
    const timer = setTimeout(() => stop.abort(new Error(`watchers still open after ${budgetMs} ms`)), budgetMs);
    const settled = await watching;
    clearTimeout(timer);
    result.wallMs = performance.now() - opening;
    for (const outcome of settled) if (outcome.status === "rejected") failures.push(`watcher: ${message(outcome.reason)}`);

    const delays: number[] = [];
    const last: number[] = [];
    for (const tally of tallies) {
      for (const delay of tally.delays) delays.push(delay);
      if (tally.lastEntryDelay !== undefined) last.push(tally.lastEntryDelay);
      result.excluded += tally.excluded;
    }
    result.delaysMs = delays.sort((a, b) => a - b);
    result.lastEntryDelaysMs = last.sort((a, b) => a - b);
    const counts = tallies.map((t) => t.counted);
    result.entriesPerWatcher = { min: Math.min(...counts), max: Math.max(...counts), expected: options.steps + 2 };
    if (result.entriesPerWatcher.min < result.entriesPerWatcher.expected) {
      failures.push(`a watcher counted ${result.entriesPerWatcher.min} entries, expected ${result.entriesPerWatcher.expected}`);
    }
    const first = tallies[0];
    const received = first?.createdAt.get(EntryKind.EVENT_RECEIVED);
    const completed = first?.createdAt.get(EntryKind.RUN_COMPLETED);
    if (received !== undefined && completed !== undefined) result.runMs = completed - received;
  } catch (error) {
    failures.push(message(error));
    stop.abort(error);
  } finally {
    options.signal.removeEventListener("abort", onAbort);
  }
  return result;
}

async function awaitWaiting(client: WorkflowClient, runId: string, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
    const { run } = await client.getRun({ runId });
    const status = run?.status ?? RunStatus.UNSPECIFIED;
    if (status === RunStatus.WAITING) return;
    if (status !== RunStatus.QUEUED && status !== RunStatus.RUNNING) throw new Error(`run ${runId} is ${RunStatus[status]}, expected WAITING on its gate`);
    if (performance.now() > deadline) throw new Error(`run ${runId}: not WAITING on its gate after 10 s`);
    await sleep(2);
  }
}


/** One small unmeasured watch so the stream paths and the run feed's listener are warm. */
export async function warmUpWatch(client: WorkflowClient, watchClient: WorkflowClient, signal: AbortSignal): Promise<void> {
  const result = await watchDelay(client, watchClient, { watchers: 2, steps: 3, stepMs: 1, signal, tag: `warm-${randomBytes(3).toString("hex")}` });
  if (result.failures.length > 0) throw new Error(`watch warm-up failed: ${result.failures.join("; ")}`);
}
