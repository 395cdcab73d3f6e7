/**
 * ExplainRun: why a run is where it is, in one call, from what the database knows (store/runs/explain.ts
 * reads it, explain-lines.ts reasons over it). Read-only: explaining a run never changes it.
 */
import { RunNotFoundError } from "../core/errors.js";
import { type RunFacts, runFacts } from "../store/runs/explain.js";
import { flowHoldOf } from "../store/runs/flow-hold.js";
import { type Explanation, explain, pendingRequest } from "./explain-lines.js";
import { normalizeRunId } from "./get-run.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export interface RunExplanation extends Explanation {
  facts: RunFacts;
  /** RUNNING: a cancel, pause or timeout its holder has not honoured yet. */
  pendingRequest?: string | undefined;
}

export async function explainRun(deps: RunsDeps, call: Call, runId: string): Promise<RunExplanation> {
  const facts = await runFacts(deps.store.db, call.namespace, normalizeRunId(runId));
  if (!facts) throw new RunNotFoundError(runId);
  facts.flowHold = await flowHoldOf(deps.store.db, facts.run);
  return { facts, ...explain(facts), pendingRequest: facts.run.status === "running" ? pendingRequest(facts.run) : undefined };
}
