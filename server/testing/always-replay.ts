/**
 * Always-replay: after an activation, the run is replayed from the top against every prefix of its journal
 * (each time with a fresh replay-only Activation), as a crash right after that entry would make a server
 * replay it. The probe host lets replay work and ends the replay at anything live (a write, a look at the
 * world); a step the replay starts is never run, so a renamed step is reported as the divergence it is rather
 * than hidden behind the live work it starts.
 * A prefix whose replay hits a determinism error the live activation did not, or a full replay that ends
 * differently, means the handler's path depends on something outside the journal (a clock, randomness, I/O,
 * state that changed between activations): the report names the prefix that broke. Used by the test kit's
 * `alwaysReplay` option and by the core tests' CAIRN_ALWAYS_REPLAY mode (test/support/execute.ts).
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { Activation, type ActivationHost, type ActivationOutcome, type Handler, type RunIdentity } from "../core/activation.js";
import type { JournalEntry } from "../core/journal.js";

/** Thrown by the probe host as soon as the replayed activation goes live: the replay itself got through. */
class ReplayEnd extends Error {
  override readonly name = "ReplayEnd";
}

export interface AlwaysReplayOptions {
  /** The shortest prefix to replay (default 0: every one); the prefixes below were checked already. */
  from?: number;
  /** The clock and the limits the live host had (replayed timers compare against the same time). */
  host: Pick<ActivationHost, "now" | "limits">;
}

/**
 * Replays `journal` (what the activation ended with) prefix by prefix; undefined when every replay agreed with
 * `outcome`, else what broke, naming the prefix.
 */
export async function replayEveryPrefix(
  run: RunIdentity,
  journal: readonly JournalEntry[],
  handler: Handler,
  outcome: ActivationOutcome,
  options: AlwaysReplayOptions,
): Promise<string | undefined> {
  const expectedDeterminismError = outcome.kind === "diverged" || (outcome.kind === "failed" && outcome.failure.name === "DeterminismError");
  for (let length = Math.max(0, options.from ?? 0); length <= journal.length; length++) {
    const replayed = await new Activation(run, journal.slice(0, length), probeHost(options.host), { replayOnly: true }).execute(handler);
    const at = `replaying ${length} of ${journal.length} journal entries (${journal.slice(0, length).map((e) => `${e.kind}:${e.name}`).join(", ")})`;
    const diverged = replayed.kind === "diverged" || (replayed.kind === "failed" && replayed.failure.name === "DeterminismError");
    if (diverged && !expectedDeterminismError) return `${at} hit a determinism error the activation did not: ${replayed.failure.message}`;
    const ended = outcome.kind === "completed" || outcome.kind === "failed";
    if (length === journal.length && ended && !sameEnd(replayed, outcome)) return `${at} ended ${describe(replayed)}, the activation ${describe(outcome)}`;
  }
  return undefined;
}

/** A host on which replay works and anything live ends the probe. */
function probeHost(host: Pick<ActivationHost, "now" | "limits">): ActivationHost {
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
    // A step the replay starts stays in flight: the replay-only activation reports what the journal expected.
    stepAttempt: () => ({ run: () => new Promise<never>(() => undefined) as never, end: muted }),
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
  if (a.kind === "completed" && b.kind === "completed") return sameJson(a.output, b.output);
  if (a.kind === "failed" && b.kind === "failed") return a.failure.name === b.failure.name && a.failure.message === b.failure.message;
  return false;
}

/** Deep equality of two JSON values (outputs are stored JSON: no cycles, no class instances). */
function sameJson(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((value, i) => sameJson(value, b[i] as JsonValue));
  const left = a as Record<string, JsonValue>;
  const right = b as Record<string, JsonValue>;
  const keys = Object.keys(left);
  return keys.length === Object.keys(right).length && keys.every((key) => key in right && sameJson(left[key] as JsonValue, right[key] as JsonValue));
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
