/**
 * Executes one activation of a claimed run: loads its journal, replays the
 * handler through the pure `Activation`, and persists what it decides, every
 * write fenced by the claim. This is the only place where the engine core
 * meets the database.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { Activation, type ActivationHost, type ActivationOutcome } from "../engine/activation.js";
import { LeaseLostError } from "../engine/errors.js";
import type { NewEntry } from "../engine/journal.js";
import { toFailureInfo } from "../engine/json.js";
import { toWorkflowLogger, type Logger } from "../logger.js";
import type { Db } from "../store/database.js";
import { appendEntry, loadJournal } from "../store/journal.js";
import { type Fence, finishRun, releaseRun, type RunEnding } from "../store/runs.js";
import type { RunRow } from "../store/schema.js";
import { validateInput, type WorkflowRegistry } from "../workflows/registry.js";

export interface RunExecutorDeps {
  db: Db;
  registry: WorkflowRegistry;
  logger: Logger;
}

/**
 * Runs `run` (already claimed under `fence`) until it ends or `signal` aborts.
 * If the process dies anywhere in here, nothing half-done is visible: each
 * journal entry commits alone, and the lease lapses so another process
 * replays the run from its journal.
 */
export async function executeRun(deps: RunExecutorDeps, run: RunRow, fence: Fence, signal: AbortSignal): Promise<void> {
  const logger = deps.logger.child({ runId: run.id, workflow: run.workflowName });
  const journal = await loadJournal(deps.db, run.id);
  let nextSequence = (journal.at(-1)?.sequence ?? 0) + 1;

  const host: ActivationHost = {
    signal,
    logger: toWorkflowLogger(logger),
    now: () => new Date(),
    append: async (entry: NewEntry) => {
      if (signal.aborted) throw signal.reason;
      // The sequence is taken before the write so that concurrent steps of one run get distinct numbers.
      const sequence = nextSequence++;
      if (!(await appendEntry(deps.db, fence, sequence, entry))) throw new LeaseLostError(run.id);
    },
  };

  let outcome: ActivationOutcome;
  try {
    const workflow = deps.registry.get(run.workflowName);
    const input = await validateInput(workflow, run.input);
    const activation = new Activation({ runId: run.id, workflowName: run.workflowName, input: input as JsonValue }, journal, host);
    outcome = await activation.execute(workflow.handler);
  } catch (error) {
    // The workflow is not loaded here or its input no longer validates: the run can't execute anywhere sensible.
    outcome = { kind: "failed", failure: toFailureInfo(error) };
  }

  switch (outcome.kind) {
    case "aborted": {
      const reason = outcome.reason;
      if (reason instanceof LeaseLostError) {
        logger.warn({ reason: reason.message }, "activation stopped: lease lost");
      } else {
        // Shutdown: hand the run back so another process resumes it without waiting for the lease to lapse.
        await releaseRun(deps.db, fence).catch((error: unknown) => logger.warn({ err: error }, "could not release run"));
        logger.info({ reason: String(reason) }, "activation stopped; run released");
      }
      return;
    }
    case "completed":
    case "failed": {
      const ending: RunEnding =
        outcome.kind === "completed" ? { status: "completed", output: outcome.output } : { status: "failed", error: outcome.failure };
      // A crash before this commits leaves the run claimed; after the lease lapses it replays to the same end.
      if (await finishRun(deps.db, fence, nextSequence++, ending)) {
        logger.info({ status: ending.status }, "run finished");
      } else {
        logger.warn({ status: ending.status }, "run end not recorded: lease lost");
      }
    }
  }
}
