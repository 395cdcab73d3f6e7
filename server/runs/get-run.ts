/** Reading runs: one run in the caller's namespace (another tenant's run is not found, like a missing one). */
import { RunNotFoundError } from "../core/errors.js";
import { getRun as readRun } from "../store/runs/read.js";
import type { RunRow } from "../store/schema.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export async function getRun(deps: RunsDeps, call: Pick<Call, "namespace">, runId: string): Promise<RunRow> {
  const row = await readRun(deps.store.db, call.namespace, normalizeRunId(runId));
  if (!row) throw new RunNotFoundError(runId);
  return row;
}

/** Run ids are UUIDs (the transports check the format); stored in lower case. */
export function normalizeRunId(runId: string): string {
  return runId.toLowerCase();
}
