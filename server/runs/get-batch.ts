/** GetBatch and ListBatches: a batch's progress, counters and first per-run failures. */
import { BatchNotFoundError } from "../core/errors.js";
import { getBatch as readBatch, listBatches as readBatches, type BatchFailureRow } from "../store/batches/read.js";
import type { BatchRow } from "../store/schema.js";
import type { Call, RunsDeps } from "./runs-deps.js";

const maxFailuresShown = 100;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type { BatchFailureRow, BatchRow };

export async function getBatch(deps: RunsDeps, call: Pick<Call, "namespace">, batchId: string): Promise<{ batch: BatchRow; failures: BatchFailureRow[] }> {
  // The transports check the form too; a malformed id here (REST path, CLI) is simply not found.
  if (!uuidPattern.test(batchId)) throw new BatchNotFoundError(batchId);
  const found = await readBatch(deps.store.db, call.namespace, batchId.toLowerCase(), maxFailuresShown);
  if (!found) throw new BatchNotFoundError(batchId);
  return found;
}

export async function listBatches(deps: RunsDeps, call: Pick<Call, "namespace">, pageSize: number): Promise<BatchRow[]> {
  return readBatches(deps.store.db, call.namespace, pageSize === 0 ? 50 : Math.min(pageSize, 1000));
}
