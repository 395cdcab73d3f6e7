/**
 * Bulk run control: `cairn runs cancel|pause|resume|retry` with filter flags and no run id start a batch
 * (StartBatch) and follow it; `cairn batches get <id>` and `cairn batches list` show batches.
 */
import type { BatchInfo, BatchOperationName } from "../../sdk/index.js";
import { UsageError } from "../args.js";
import { type Command, type CommandContext, ExitCode, flag, jsonDocument, stringValue } from "../command.js";
import { table, timestamp } from "../format.js";
import { runFilterFrom, runFilterHelp, runFilterOptions, runFilterUsage } from "./run-filter.js";

export const batchFlagsHelp: readonly (readonly [string, string])[] = [
  ["--dry-run", "with filter flags: print how many runs match and a sample; change nothing"],
  ["--no-wait", "with filter flags: print the batch id and return instead of following its progress"],
];

export const batchOptions = { "dry-run": { type: "boolean" }, "no-wait": { type: "boolean" } } as const;

/** The bulk form of a run-control command: filter flags and no run id. */
export async function runBatch(context: CommandContext, operation: BatchOperationName, values: Parameters<Command["run"]>[1]): Promise<number> {
  const filter = runFilterFrom(values);
  if (Object.keys(filter).length === 0) {
    throw new UsageError(`give a <run-id>, or filter flags (--workflow, --status, --meta, ...) to ${operation} every matching run`);
  }
  const reason = stringValue(values, "reason");
  const client = context.client();
  if (flag(values, "dry-run")) {
    const preview = await client.startBatch({ filter, operation, dryRun: true });
    if (!preview.dryRun) throw new Error("StartBatch ignored dry_run");
    if (context.json) context.io.out(jsonDocument({ dryRun: true, operation, matchedCount: preview.matchedCount, sampleRunIds: preview.sampleRunIds }));
    else {
      context.io.out(`${preview.matchedCount} run${preview.matchedCount === 1 ? "" : "s"} match; ${operation} would apply to each (dry run, nothing changed)`);
      for (const runId of preview.sampleRunIds) context.io.out(`  ${runId}`);
      if (preview.matchedCount > preview.sampleRunIds.length) context.io.out(`  … and ${preview.matchedCount - preview.sampleRunIds.length} more`);
    }
    return ExitCode.ok;
  }
  const started = await client.startBatch({ filter, operation, ...(reason ? { reason } : {}) });
  if (started.dryRun) throw new Error("StartBatch answered a dry run");
  let batch = started.batch;
  if (flag(values, "no-wait") || batch.status !== "running") return printBatch(context, batch);
  if (!context.json) context.io.err(`cairn: batch ${batch.batchId}: ${operation} over ${batch.selectedCount} runs`);
  let shown = -1;
  while (batch.status === "running") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    batch = await client.getBatch(batch.batchId);
    if (!context.json && batch.processedCount !== shown) {
      context.io.err(`cairn: ${batch.processedCount}/${batch.selectedCount} processed${batch.failedCount ? `, ${batch.failedCount} failed` : ""}`);
      shown = batch.processedCount;
    }
  }
  return printBatch(context, batch);
}

/** Exit 0 when the batch completed without per-run failures, 1 otherwise (the failures are listed). */
function printBatch(context: CommandContext, batch: BatchInfo): number {
  context.io.out(context.json ? jsonDocument(batch) : batchDetails(batch));
  return batch.status === "failed" || batch.failedCount > 0 ? ExitCode.runFailed : ExitCode.ok;
}

function batchDetails(batch: BatchInfo): string {
  const lines = [
    `batch      ${batch.batchId}`,
    `operation  ${batch.operation}`,
    `status     ${batch.status}${batch.error ? ` (${batch.error})` : ""}`,
    `runs       ${batch.selectedCount} selected, ${batch.processedCount} processed (${batch.processedCount - batch.skippedCount - batch.failedCount} done, ${batch.skippedCount} skipped, ${batch.failedCount} failed)`,
    `created    ${timestamp(batch.createdAt)}`,
  ];
  if (batch.finishedAt) lines.push(`finished   ${timestamp(batch.finishedAt)}`);
  if (batch.reason) lines.push(`reason     ${batch.reason}`);
  if (batch.failures.length > 0) {
    lines.push("failures:");
    for (const failure of batch.failures) lines.push(`  ${failure.runId}  ${failure.message}`);
    if (batch.failedCount > batch.failures.length) lines.push(`  … and ${batch.failedCount - batch.failures.length} more`);
  }
  return lines.join("\n");
}

export const batchesGet: Command = {
  name: "batches get",
  summary: "show a batch: counters, status, first per-run failures",
  usage: "<batch-id>",
  options: {},
  positionals: ["batch-id"],
  async run(context, _values, [batchId = ""]) {
    return printBatch(context, await context.client().getBatch(batchId));
  },
};

export const batchesList: Command = {
  name: "batches list",
  summary: "list batches, newest first",
  usage: "",
  options: {},
  positionals: [],
  async run(context) {
    const batches = await context.client().listBatches();
    if (context.json) context.io.out(jsonDocument(batches));
    else if (batches.length === 0) context.io.out("no batches");
    else
      context.io.out(
        table(
          ["BATCH ID", "OPERATION", "STATUS", "CREATED", "SELECTED", "PROCESSED", "FAILED"],
          batches.map((b) => [b.batchId, b.operation, b.status, timestamp(b.createdAt), String(b.selectedCount), String(b.processedCount), String(b.failedCount)]),
        ),
      );
    return ExitCode.ok;
  },
};
