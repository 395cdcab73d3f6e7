/**
 * An in-memory ActivationHost for engine tests: the journal is an array, so a
 * test can run an activation, "crash" it, and replay it against what was kept.
 */
import type { ActivationHost } from "../../server/engine/activation.js";
import type { JournalEntry, NewEntry } from "../../server/engine/journal.js";
import type { WorkflowLogger } from "../../sdk/workflow.js";

export interface MemoryHost extends ActivationHost {
  readonly journal: JournalEntry[];
  readonly logs: string[];
  readonly controller: AbortController;
  /** Make the next append calls fail with this error. */
  failAppendsWith: Error | undefined;
}

export function memoryHost(journal: JournalEntry[] = []): MemoryHost {
  const logs: string[] = [];
  const controller = new AbortController();
  const log =
    (level: string) =>
    (message: string): void => {
      logs.push(`${level}:${message}`);
    };
  const logger: WorkflowLogger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  const host: MemoryHost = {
    journal,
    logs,
    controller,
    signal: controller.signal,
    logger,
    failAppendsWith: undefined,
    now: () => new Date(),
    async append(entry: NewEntry) {
      await Promise.resolve();
      if (host.failAppendsWith) throw host.failAppendsWith;
      journal.push({ ...entry, sequence: journal.length + 1, createdAt: new Date() });
    },
  };
  return host;
}
