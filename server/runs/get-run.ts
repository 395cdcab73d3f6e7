/** Reading runs: one run in the caller's namespace (another tenant's run is not found, like a missing one). */
import { RunNotFoundError } from "../core/errors.js";
import { getRun as readRun } from "../store/runs/read.js";
import type { RunRow } from "../store/schema.js";
import { type FlowHold, flowHoldOf } from "../store/runs/flow-hold.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function getRun(deps: RunsDeps, call: Pick<Call, "namespace">, runId: string): Promise<RunRow> {
  const row = await readRun(deps.store.db, call.namespace, normalizeRunId(runId));
  if (!row) throw new RunNotFoundError(runId);
  return row;
}

/** The run and, while flow control holds it back, its gate, key and place in line (GetRun). */
export async function getRunWithHold(deps: RunsDeps, call: Pick<Call, "namespace">, runId: string): Promise<{ run: RunRow; hold: FlowHold | undefined }> {
  const run = await getRun(deps, call, runId);
  return { run, hold: await flowHoldOf(deps.store.db, run) };
}

export type { FlowHold };

/** Run ids are UUIDs (the transports check the format); stored in lower case. */
export function normalizeRunId(runId: string): string {
  return runId.toLowerCase();
}
