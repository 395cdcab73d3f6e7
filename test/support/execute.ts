/**
 * Runs one activation of the core for a test. Under CAIRN_ALWAYS_REPLAY=1 (the `core:always-replay` vitest
 * project), it then replays the run from the top against every prefix of the journal it ended with, each time
 * with a fresh Activation, as a crash at that point would (server/testing/always-replay.ts, which the test kit's
 * `alwaysReplay` option uses too): a handler whose path depends on something outside the journal (time,
 * randomness, a closure that changed) shows up as a DeterminismError the single activation never hit.
 */
import { Activation, type ActivationHost, type ActivationOutcome, type Handler, type RunIdentity } from "../../server/core/activation.js";
import type { JournalEntry } from "../../server/core/journal.js";
import { replayEveryPrefix } from "../../server/testing/always-replay.js";

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
  if (alwaysReplay && options.alwaysReplay !== false) {
    const problem = await replayEveryPrefix(run, [...host.journal], handler, outcome, { host });
    if (problem) throw new Error(`always-replay: ${problem}`);
  }
  return outcome;
}
