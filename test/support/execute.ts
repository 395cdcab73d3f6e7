/**
 * Runs one activation of the core for a test. Under CAIRN_ALWAYS_REPLAY=1 (the `core:always-replay` vitest
 * project), it then replays the run from the top against every prefix of the journal it ended with, each time
 * with a fresh Activation, as a crash at that point would: a handler whose path depends on something outside
 * the journal (time, randomness, a closure that changed) shows up as a DeterminismError the single activation
 * never hit.
 */
import { isDeepStrictEqual } from "node:util";
import { Activation, type ActivationHost, type ActivationOutcome, type Handler, type RunIdentity } from "../../server/core/activation.js";
import type { JournalEntry } from "../../server/core/journal.js";

export const alwaysReplay = process.env.CAIRN_ALWAYS_REPLAY === "1";

export interface ExecuteOptions {
  /** Off for tests whose handler is meant to change between activations (they test the determinism errors). */
  alwaysReplay?: boolean;
}

/** `new Activation(run, journal, host).execute(handler)`, plus the replay check when the mode is on. */
export async function executeActivation(
  run: RunIdentity,
  journal: readonly JournalEntry[],
  host: ActivationHost & { readonly journal: readonly JournalEntry[] },
  handler: Handler,
  options: ExecuteOptions = {},
): Promise<ActivationOutcome> {
  const outcome = await new Activation(run, journal, host).execute(handler);
  if (alwaysReplay && options.alwaysReplay !== false) await replayEveryPrefix(run, host, handler, outcome);
  return outcome;
}

/** Thrown by the probe host as soon as the replayed activation goes live: the replay itself got through. */
class ReplayEnd extends Error {
  override readonly name = "ReplayEnd";
}

async function replayEveryPrefix(
  run: RunIdentity,
  host: ActivationHost & { readonly journal: readonly JournalEntry[] },
  handler: Handler,
  outcome: ActivationOutcome,
): Promise<void> {
  const journal = [...host.journal];
  const expectedDeterminismError = outcome.kind === "diverged" || (outcome.kind === "failed" && outcome.failure.name === "DeterminismError");
  for (let length = 0; length <= journal.length; length++) {
    const replayed = await new Activation(run, journal.slice(0, length), probeHost(host)).execute(handler);
    const at = `replaying ${length} of ${journal.length} journal entries (${journal.slice(0, length).map((e) => `${e.kind}:${e.name}`).join(", ")})`;
    const diverged = replayed.kind === "diverged" || (replayed.kind === "failed" && replayed.failure.name === "DeterminismError");
    if (diverged && !expectedDeterminismError) {
      throw new Error(`always-replay: ${at} hit a determinism error the activation did not: ${replayed.failure.message}`);
    }
    const ended = outcome.kind === "completed" || outcome.kind === "failed";
    if (length === journal.length && ended && !sameEnd(replayed, outcome)) {
      throw new Error(`always-replay: ${at} ended ${describe(replayed)}, the activation ${describe(outcome)}`);
    }
  }
}

/** A host on which replay works and anything live (a step, a write, a look at the world) ends the probe. */
function probeHost(host: ActivationHost): ActivationHost {
  const controller = new AbortController();
  const end = (): never => {
    const error = new ReplayEnd("the replay reached live work");
    controller.abort(error);
    throw error;
  };
  const muted = () => undefined;
  return {
    signal: controller.signal,
    logger: { debug: muted, info: muted, warn: muted, error: muted },
    ...(host.limits ? { limits: host.limits } : {}),
    now: () => host.now(),
    leaseLost: () => {
      controller.abort(new ReplayEnd("the replay reached a live step"));
      return new ReplayEnd("the replay reached a live step");
    },
    append: async () => end(),
    findEvent: async () => end(),
    startChild: async () => end(),
    startAgentTurn: async () => end(),
    findTurnOutcome: async () => end(),
    findChildOutcome: async () => end(),
    suspend: async () => end(),
  };
}

function sameEnd(a: ActivationOutcome, b: ActivationOutcome): boolean {
  if (a.kind === "completed" && b.kind === "completed") return isDeepStrictEqual(a.output, b.output);
  if (a.kind === "failed" && b.kind === "failed") return a.failure.name === b.failure.name && a.failure.message === b.failure.message;
  return false;
}

function describe(outcome: ActivationOutcome): string {
  switch (outcome.kind) {
    case "completed":
      return `completed with ${JSON.stringify(outcome.output)}`;
    case "failed":
      return `failed with ${outcome.failure.name}: ${outcome.failure.message}`;
    case "diverged":
      return `diverged (paused): ${outcome.failure.message}`;
    case "suspended":
      return `suspended on ${outcome.waits.map((w) => w.name).join(", ")}`;
    case "aborted":
      return `aborted (${String(outcome.reason)})`;
  }
}
