/** The run filter flags `runs list` takes, shared with the bulk forms of `runs cancel|pause|resume|retry`. */
import type { RunSelector } from "../../sdk/index.js";
import { instant, keyValuePairs, parseStatuses } from "../args.js";
import { type Command, type OptionSpecs, stringValue } from "../command.js";

export const runFilterUsage =
  "[--workflow NAME] [--status S,...] [--parent RUN-ID] [--schedule ID] [--meta KEY=VALUE]... [--created-after T] [--created-before T]\n" +
  "      [--ended-after T] [--ended-before T]";

export const runFilterHelp: readonly (readonly [string, string])[] = [
  ["--workflow NAME", "only runs of this workflow"],
  ["--status S,...", "only runs in these states: queued, running, waiting, paused, completed, failed, cancelled"],
  ["--parent RUN-ID", "only child runs of this run"],
  ["--schedule ID", "only runs this schedule started"],
  ["--meta KEY=VALUE", "only runs whose metadata has KEY equal to VALUE (repeat: every pair must match)"],
  ["--created-after T", "only runs created at or after instant T (e.g. 2026-01-31T12:00:00Z)"],
  ["--created-before T", "only runs created before T"],
  ["--ended-after T", "only runs that ended (completed, failed, cancelled) at or after T"],
  ["--ended-before T", "only runs that ended before T"],
];

export const runFilterOptions: OptionSpecs = {
  workflow: { type: "string" },
  status: { type: "string" },
  parent: { type: "string" },
  schedule: { type: "string" },
  meta: { type: "string", multiple: true },
  "created-after": { type: "string" },
  "created-before": { type: "string" },
  "ended-after": { type: "string" },
  "ended-before": { type: "string" },
};

/** The filter the flags describe; empty when none was given. */
export function runFilterFrom(values: Parameters<Command["run"]>[1]): RunSelector {
  const workflow = stringValue(values, "workflow");
  const statusText = stringValue(values, "status");
  const parent = stringValue(values, "parent");
  const schedule = stringValue(values, "schedule");
  return {
    ...(workflow ? { workflow } : {}),
    ...(statusText ? { statuses: parseStatuses(statusText) } : {}),
    ...(parent ? { parentRunId: parent } : {}),
    ...(schedule ? { scheduleId: schedule } : {}),
    ...(Array.isArray(values.meta) ? { metadata: keyValuePairs(values.meta as string[], "--meta") } : {}),
    ...instants(values, { createdAfter: "created-after", createdBefore: "created-before", endedAfter: "ended-after", endedBefore: "ended-before" }),
  };
}

function instants<K extends string>(values: Parameters<Command["run"]>[1], flags: Record<K, string>): Partial<Record<K, Date>> {
  const out: Partial<Record<K, Date>> = {};
  for (const [key, name] of Object.entries(flags) as [K, string][]) {
    const raw = stringValue(values, name);
    if (raw !== undefined) out[key] = instant(raw, `--${name}`);
  }
  return out;
}
