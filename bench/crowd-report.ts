/**
 * The crowd of watch streams (bench/crowd.ts) in the printed report: memory, the idle database and the delivery of
 * one change to every stream, against issue 18's goals (bench/goals.ts).
 */
import type { CrowdResult } from "./crowd.js";
import type { Summary } from "./format.js";
import { goals } from "./goals.js";

/** Decimal megabytes, as the goal is stated. */
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const signedMb = (bytes: number) => `${bytes < 0 ? "−" : "+"}${mb(Math.abs(bytes))}`;
const kb = (bytes: number, streams: number) => `${bytes < 0 ? "−" : ""}${(Math.abs(bytes) / 1e3 / streams).toFixed(1)} KB`;
const spread = (s: Summary) => `p50 ${s.p50} ms, p99 ${s.p99} ms, max ${s.max} ms`;
const verdict = (met: boolean) => (met ? "yes" : "NO");

export interface CrowdVerdicts {
  memory: boolean;
  /** "Database load independent of their number": the idle window with the streams within one transaction a second of the window without. */
  idle: boolean;
  /** The change's p99 from its commit (at most, with a batch; from the run's cancelling transaction's start otherwise). */
  delivery: boolean;
}

/** The delivery figure the goal is checked against: from the commit at most (batch) or from updated_at (cancel, which includes the commit). */
export function crowdDelivery(result: CrowdResult): Summary {
  return result.fromCommitAtMostMs ?? result.fromUpdatedAtMs;
}

export function crowdVerdicts(result: CrowdResult): CrowdVerdicts {
  const added = result.memory.with.rss - result.memory.without.rss;
  return {
    memory: added <= goals.crowdAddedRssMB * 1e6,
    idle: result.idleTransactionsPerSecond.with <= result.idleTransactionsPerSecond.without + 1,
    delivery: result.failed === 0 && result.delivered === result.streams && crowdDelivery(result).p99 <= goals.crowdDeliveryP99Ms,
  };
}

export function crowdFailures(result: CrowdResult): string[] {
  const failures: string[] = [];
  if (result.failed > 0) failures.push(`crowd ${result.wire}: ${result.failed} of ${result.streams} streams failed`);
  if (result.delivered < result.streams) failures.push(`crowd ${result.wire}: the change reached ${result.delivered} of ${result.streams} streams`);
  return failures;
}

export function formatCrowdBlock(result: CrowdResult | null): string[] {
  if (!result) return [];
  const { streams, memory, idleTransactionsPerSecond: idle } = result;
  const met = crowdVerdicts(result);
  const addedRss = memory.with.rss - memory.without.rss;
  const addedHeap = memory.with.heapUsed - memory.without.heapUsed;
  const addedExternal = memory.with.external - memory.without.external;
  const how =
    result.change === "batch"
      ? `one StartBatch cancelling all ${result.runs} runs, ≤ ${result.chunkSize} per transaction (answered in ${result.callMs.p50} ms; ${result.changeSeconds.toFixed(1)} s until every stream had its change)`
      : `a CancelRun per run, ${result.cancellers} in flight (${result.changeSeconds.toFixed(1)} s for all; the call ${spread(result.callMs)})`;
  const lines = [
    `A crowd of watch streams (issue 18): ${streams} WatchRun streams on ${result.runs} parked runs, one server, ${result.wire === "sdk" ? "the SDK" : "grpc-js with proto-loader"} over HTTP/2 (${result.perConnection} streams per connection; open in ${result.openSeconds.toFixed(1)} s)`,
    `  server memory after GC     ${signedMb(addedRss)} RSS (goal ≤ ${goals.crowdAddedRssMB} MB: ${verdict(met.memory)}), ${signedMb(addedHeap)} heap, ${signedMb(addedExternal)} external; ${mb(memory.without.rss)} RSS without the streams`,
    `  per stream                 ${kb(addedRss, streams)} RSS, ${kb(addedHeap, streams)} heap, ${kb(addedExternal, streams)} external`,
    `  database while idle        ${idle.without.toFixed(1)} transactions/s without streams, ${idle.with.toFixed(1)} with them (goal: independent of their number: ${verdict(met.idle)})`,
    `  a change to every run      ${how}; delivered to ${result.delivered} of ${streams} streams, ${result.failed} failed`,
  ];
  if (result.fromCommitAtMostMs && result.fromCommitAtLeastMs) {
    lines.push(
      `  from its commit, at most   ${spread(result.fromCommitAtMostMs)} (goal p99 ≤ ${goals.crowdDeliveryP99Ms} ms: ${verdict(met.delivery)}; from the later of its transaction's start and the sending of the last read of the batch's count that did not show it done)`,
      `  from its commit, at least  ${spread(result.fromCommitAtLeastMs)} (from the first read that showed it done, when it came back; negative when the stream was first)`,
    );
  }
  lines.push(
    `  from its updated_at        ${spread(result.fromUpdatedAtMs)} (from the start of the run's cancelling transaction${result.change === "cancel" ? `; goal p99 ≤ ${goals.crowdDeliveryP99Ms} ms: ${verdict(met.delivery)}` : ""})`,
    `  from the request           ${spread(result.fromRequestMs)} (${result.change === "batch" ? "StartBatch sent; includes the batch's earlier chunks" : "its CancelRun sent; includes the queue of CancelRun commits"})`,
  );
  if (result.afterAnswerMs) lines.push(`  after the call answered    ${spread(result.afterAnswerMs)} (0 when the stream was first)`);
  lines.push("");
  return lines;
}
