/**
 * An ActivationHost for workflows that only append (the workflow-thread tests): each append waits for `write` (a
 * commit, however the test makes it), then lands in `appended`; `info` log lines go to `logged`; any other host call
 * fails the test's activation.
 */
import type { ActivationHost } from "../../server/core/host.js";
import type { NewEntry } from "../../server/core/journal.js";

export function appendOnlyHost(appended: NewEntry[] = [], write: (entry: NewEntry) => Promise<void> = async () => undefined, logged: string[] = []): ActivationHost {
  const unused = async (): Promise<never> => {
    throw new Error("not used by this workflow");
  };
  const muted = () => undefined;
  return {
    signal: new AbortController().signal,
    logger: { debug: muted, info: (message) => logged.push(message), warn: muted, error: muted },
    now: () => new Date(),
    append: async (entry) => {
      await write(entry);
      appended.push(entry);
    },
    findEvent: unused,
    startChild: unused,
    startAgentTurn: unused,
    findTurnOutcome: unused,
    findChildOutcome: unused,
    suspend: unused,
  };
}
