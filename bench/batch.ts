/**
 * The "batch" section: a cancel batch (StartBatch) over N runs parked on events, selected by metadata. Measured:
 * the dry run's and StartBatch's round trips (StartBatch freezes the selection in one INSERT … SELECT), and the
 * time from StartBatch until GetBatch reports the batch completed, as runs/s. Checked: every run cancelled, the
 * counters exact.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { CairnClient } from "../sdk/client.js";
import type { BenchProbe } from "./database.js";
import { awaitStatus, inParallel } from "./waits.js";
import { WORKFLOW_NAME as EVENT_WORKFLOW } from "./workflows/event-wait.js";

export interface BatchBenchResult {
  runs: number;
  createWallMs: number;
  dryRunMs: number;
  startBatchMs: number;
  /** StartBatch sent → GetBatch answered completed. */
  batchWallMs: number;
  runsPerSec: number;
  processed: number;
  failed: number;
  cancelled: number;
  failures: string[];
}

export async function cancelBatch(
  client: CairnClient,
  probe: BenchProbe,
  options: { runs: number; concurrency: number; signal: AbortSignal; log: (message: string) => void },
): Promise<BatchBenchResult> {
  const tag = randomBytes(3).toString("hex");
  const prefix = `batch-${tag}-`;
  const metadata = { bench_batch: tag };
  const failures: string[] = [];
  const begin = performance.now();
  failures.push(
    ...(await inParallel(options.runs, options.concurrency, options.signal, async (i) => {
      await client.createRun(EVENT_WORKFLOW, { key: `${prefix}${i}` }, { eagerStart: true, metadata });
    })),
  );
  const createWallMs = performance.now() - begin;
  const parked = await awaitStatus(probe, { keyPrefix: prefix }, options.runs, "waiting", 300_000, options.signal, 500);
  if (!parked.reached) failures.push(`not all runs parked: ${JSON.stringify(parked.counts)}`);
  options.log(`batch: ${options.runs} runs parked (created in ${(createWallMs / 1000).toFixed(1)} s); dry run, then the cancel batch`);

  const dryBegin = performance.now();
  const dry = await client.startBatch({ filter: { metadata }, operation: "cancel", dryRun: true });
  const dryRunMs = performance.now() - dryBegin;
  if (dry.matchedCount !== options.runs) failures.push(`dry run matched ${dry.matchedCount}, not ${options.runs}`);

  const startBegin = performance.now();
  const started = await client.startBatch({ filter: { metadata }, operation: "cancel", reason: "bench" });
  const startBatchMs = performance.now() - startBegin;
  if (started.dryRun) throw new Error("StartBatch answered a dry run");
  let batch = started.batch;
  while (batch.status === "running" && !options.signal.aborted && performance.now() - startBegin < 600_000) {
    await sleep(20);
    batch = await client.getBatch(batch.batchId);
  }
  const batchWallMs = performance.now() - startBegin;
  if (batch.status !== "completed") failures.push(`batch ${batch.status} after ${(batchWallMs / 1000).toFixed(1)} s (${batch.processedCount} processed)`);
  if (batch.processedCount !== options.runs || batch.failedCount !== 0) failures.push(`batch processed ${batch.processedCount}, failed ${batch.failedCount}`);
  const counts = await probe.statusCounts({ keyPrefix: prefix });
  const cancelled = counts.cancelled ?? 0;
  if (cancelled !== options.runs) failures.push(`runs after the batch: ${JSON.stringify(counts)}`);
  return {
    runs: options.runs,
    createWallMs,
    dryRunMs,
    startBatchMs,
    batchWallMs,
    runsPerSec: batch.processedCount / (batchWallMs / 1000),
    processed: batch.processedCount,
    failed: batch.failedCount,
    cancelled,
    failures,
  };
}
