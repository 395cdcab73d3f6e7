/** The run-control figures' JSON summary and their lines in the details section. */
import { triple } from "./format.js";
import type { ListRunsByMetadataResult } from "./run-control.js";

export interface RunControlReport {
  listRunsByMetadata: (ListRunsByMetadataResult & { loadAverage: number }) | null;
}

export function runControlRows(report: RunControlReport): [string, string][] {
  const rows: [string, string][] = [];
  const l = report.listRunsByMetadata;
  if (l) {
    const plan = l.rarePlanScansTable ? "a sequential scan of runs" : `index ${l.rarePlanIndexes.join(", ") || "none"}`;
    rows.push(
      [`ListRuns by metadata, ${l.seededRuns.toLocaleString("en-US")} runs`, `one match (page of 20): SDK ${triple(l.rareSdkMs)}, plain fetch ${triple(l.rareFetchMs)} (p50 / p99 / max, ${l.calls} calls each); plan: ${plan}`],
      ["ListRuns by metadata, 1 % match", `page of 50: SDK ${triple(l.commonSdkMs)}; seeding took ${(l.seedMs / 1000).toFixed(1)} s`],
    );
  }
  return rows;
}
