/**
 * Human output: aligned tables, durations, one line per history entry, a run's details.
 * No colours: the output reads the same in a terminal, a pipe and a CI log.
 * (`--json` output never passes through here; it is the SDK's plain objects, stringified.)
 */
import type { HistoryEntryInfo } from "../sdk/client.js";
import type { JsonValue, RunFailure, RunInfo, WaitingOnInfo } from "../sdk/index.js";

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** 12 ms, 1.4 s, 3m 05s, 2h 10m, 3d 4h. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, "0")}s`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(seconds / 86_400)}d ${Math.floor((seconds % 86_400) / 3600)}h`;
}

/** Local wall-clock time, "2026-11-25 13:21:06". */
export function timestamp(date: Date | undefined): string {
  if (!date) return "-";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** Compact JSON on one line; `null` for an absent value. */
export function json(value: JsonValue | undefined): string {
  return JSON.stringify(value ?? null);
}

export function failure(error: RunFailure | { name: string; message: string } | undefined): string {
  if (!error) return "no error recorded";
  return error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : error.message;
}

export function truncate(text: string, max: number): string {
  const oneLine = text.replace(/\s*\n\s*/g, " ");
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

export function isFinished(run: RunInfo): boolean {
  return run.status === "completed" || run.status === "failed" || run.status === "cancelled";
}

/** How long the run took (ended runs) or has been going (others). */
export function runDuration(run: RunInfo, now = new Date()): string {
  const start = run.startedAt ?? run.createdAt;
  return duration((run.completedAt ?? (isFinished(run) ? run.updatedAt : now)).getTime() - start.getTime());
}

/** The server describes waits (one table of wait kinds lives in the server's core). */
export function waitingOn(waiting: WaitingOnInfo): string {
  return waiting.description;
}

/** What `runs list` shows after the columns: the wait, the failure or the cancel reason. */
export function runDetail(run: RunInfo): string {
  if (run.status === "waiting" && run.waitingOn) return waitingOn(run.waitingOn);
  if (run.status === "failed" || run.status === "cancelled") return run.error ? failure(run.error) : "";
  return "";
}

/** A run's status for `runs watch`: "running", "waiting on event expense.decided (correlation e-1)". */
export function statusText(run: RunInfo): string {
  return run.status === "waiting" && run.waitingOn ? `waiting on ${waitingOn(run.waitingOn)}` : run.status;
}

function took(entry: HistoryEntryInfo): string {
  if (!entry.startedAt || !entry.createdAt) return "";
  return `  ${duration(entry.createdAt.getTime() - entry.startedAt.getTime())}`;
}

/** A mark by outcome, read from the kind's shape: ✓ done, ✗ failed, ↻ will retry, · started or waiting. */
function mark(kind: string): string {
  if (kind.endsWith("_attempt_failed")) return "↻";
  if (kind.endsWith("_failed") || kind.endsWith("_timed_out")) return "✗";
  if (kind.endsWith("_completed") || kind.endsWith("_fired") || kind.endsWith("_received")) return "✓";
  return "·";
}

const runEndings = new Set(["run_completed", "run_failed", "run_cancelled"]);

/**
 * One history entry as one line of `runs watch`: the server's summary with a mark and, for entries
 * that end something, how long it took. The run-ending entries return undefined: the watch prints the
 * run's outcome itself once the stream ends. Run-control entries (paused, resumed, retried, forked) show.
 */
export function entryLine(entry: HistoryEntryInfo): string | undefined {
  if (runEndings.has(entry.kind)) return undefined;
  const ends = mark(entry.kind) === "✓";
  return `  ${mark(entry.kind)} ${entry.summary}${ends ? took(entry) : ""}`;
}

/** One entry of `runs history`: every kind, run-level ones included, with its sequence and time. */
export function historyLine(entry: HistoryEntryInfo): string {
  const ends = mark(entry.kind) === "✓";
  return `${String(entry.sequence).padStart(4)}  ${timestamp(entry.createdAt)}  ${mark(entry.kind)} ${entry.summary}${ends ? took(entry) : ""}`;
}

/** `runs get`: one "label  value" line per field, JSON values compact when short and indented when long. */
/** Flow control's hold on a queued run: which limit, which key, its place in line. */
function heldBy(hold: NonNullable<RunInfo["heldBy"]>): string {
  const key = hold.gate === "namespace" ? `namespace ${hold.key}` : hold.key === "" ? "the workflow's single key" : `key ${JSON.stringify(hold.key)}`;
  if (hold.gate === "rate") return `rate limit on ${key}; due again at ${hold.availableAt ? timestamp(hold.availableAt) : "?"}`;
  return `${hold.gate} limit on ${key}; position ${hold.position}`;
}

export function runDetails(run: RunInfo): string {
  const fields: [string, string | undefined][] = [
    ["run", run.runId],
    ["workflow", run.workflowName],
    ["status", run.status],
    ["waiting on", run.status === "waiting" && run.waitingOn ? waitingOn(run.waitingOn) : undefined],
    ["held by", run.heldBy ? heldBy(run.heldBy) : undefined],
    ["priority", run.priority ? String(run.priority) : undefined],
    ["created", timestamp(run.createdAt)],
    ["started", run.startedAt ? timestamp(run.startedAt) : undefined],
    ["completed", run.completedAt ? timestamp(run.completedAt) : undefined],
    ["duration", run.startedAt || isFinished(run) ? runDuration(run) : undefined],
    ["activations", String(run.activationCount)],
    ["parent", run.parentRunId],
    ["forked from", run.forkedFromRunId],
    ["idempotency key", run.idempotencyKey],
    ["namespace", run.namespace],
    [
      "metadata",
      Object.keys(run.metadata).length > 0
        ? Object.entries(run.metadata)
            .map(([key, value]) => `${key}=${value}`)
            .join(", ")
        : undefined,
    ],
    ["input", block(run.input)],
    ["output", run.status === "completed" ? block(run.output) : undefined],
    run.status === "cancelled" ? ["reason", run.error?.message || undefined] : ["error", run.error ? failure(run.error) : undefined],
  ];
  const present = fields.filter((field): field is [string, string] => field[1] !== undefined);
  const width = Math.max(...present.map(([label]) => label.length));
  return present.map(([label, value]) => `${label.padEnd(width)}  ${value.replaceAll("\n", `\n${" ".repeat(width + 2)}`)}`).join("\n");
}

function block(value: JsonValue | undefined): string {
  const compact = json(value);
  return compact.length <= 80 ? compact : JSON.stringify(value ?? null, null, 2);
}
