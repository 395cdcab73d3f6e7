/**
 * A run's timeline: one bar per step, wait, child run and agent turn on a shared time axis from the
 * run's creation to its end (or now, while it moves). Open operations reach "now" and are striped.
 */
import type { HistoryEntry, Run } from "../api.js";
import { EntryKind, date } from "../api.js";
import { duration } from "../format.js";

type SpanKind = "run" | "step" | "timer" | "event" | "child" | "agent";
type Outcome = "ok" | "failed" | "open" | "timed-out";

export interface Span {
  kind: SpanKind;
  name: string;
  start: number;
  end: number;
  outcome: Outcome;
  attempts: number;
  /** Failed attempts of a step, as instants on the axis. */
  failedAttempts: number[];
  href?: string;
}

const opens: Partial<Record<EntryKind, SpanKind>> = {
  [EntryKind.TIMER_STARTED]: "timer",
  [EntryKind.EVENT_WAIT_STARTED]: "event",
  [EntryKind.CHILD_STARTED]: "child",
  [EntryKind.AGENT_TURN_STARTED]: "agent",
};
const closes: Partial<Record<EntryKind, Outcome>> = {
  [EntryKind.TIMER_FIRED]: "ok",
  [EntryKind.EVENT_RECEIVED]: "ok",
  [EntryKind.EVENT_WAIT_TIMED_OUT]: "timed-out",
  [EntryKind.CHILD_COMPLETED]: "ok",
  [EntryKind.CHILD_FAILED]: "failed",
  [EntryKind.AGENT_TURN_COMPLETED]: "ok",
  [EntryKind.AGENT_TURN_FAILED]: "failed",
};

/** Pairs the history's start and end entries into spans, in the order the operations began. */
export function spansOf(run: Run, entries: readonly HistoryEntry[], now: number): Span[] {
  const ended = date(run.completedAt)?.getTime();
  const openUntil = ended ?? now;
  const spans: Span[] = [];
  const open = new Map<string, Span>();
  const at = (entry: HistoryEntry) => date(entry.createdAt)?.getTime() ?? now;
  const stepSpan = (entry: HistoryEntry): Span => {
    const key = `step:${entry.name}`;
    let span = open.get(key);
    if (!span) {
      span = { kind: "step", name: entry.name, start: date(entry.startedAt)?.getTime() ?? at(entry), end: openUntil, outcome: "open", attempts: 0, failedAttempts: [] };
      open.set(key, span);
      spans.push(span);
    }
    return span;
  };
  for (const entry of entries) {
    const kind = opens[entry.kind];
    if (kind) {
      const span: Span = { kind, name: entry.name, start: date(entry.startedAt)?.getTime() ?? at(entry), end: openUntil, outcome: "open", attempts: 0, failedAttempts: [] };
      if (kind === "child" && entry.targetRunId) span.href = `/runs/${entry.targetRunId}`;
      open.set(`${kind}:${entry.name}`, span);
      spans.push(span);
      continue;
    }
    const outcome = closes[entry.kind];
    if (outcome) {
      // runWorkflow / runAgent record the wait for the result as "<name>/result"; a child also names its run.
      const name = entry.name.replace(/\/result$/, "");
      const child = entry.targetRunId ? `/runs/${entry.targetRunId}` : undefined;
      const span = spans.find((s) => s.kind !== "step" && s.outcome === "open" && (s.name === name || (child !== undefined && s.href === child)));
      if (span) {
        span.end = at(entry);
        span.outcome = outcome;
      }
      continue;
    }
    if (entry.kind === EntryKind.STEP_ATTEMPT_FAILED) {
      const span = stepSpan(entry);
      span.attempts = Math.max(span.attempts, entry.attempt + 1);
      span.failedAttempts.push(at(entry));
    } else if (entry.kind === EntryKind.STEP_COMPLETED || entry.kind === EntryKind.STEP_FAILED) {
      const span = stepSpan(entry);
      span.end = at(entry);
      span.outcome = entry.kind === EntryKind.STEP_COMPLETED ? "ok" : "failed";
      span.attempts = Math.max(span.attempts, entry.attempt);
      open.delete(`step:${entry.name}`);
    }
  }
  return spans;
}

export function Timeline({ run, entries, now }: { run: Run; entries: readonly HistoryEntry[]; now: number }) {
  const created = date(run.createdAt)?.getTime() ?? now;
  const started = date(run.startedAt)?.getTime();
  const ended = date(run.completedAt)?.getTime();
  const spans = spansOf(run, entries, now);
  const t0 = created;
  const t1 = Math.max(ended ?? now, ...spans.map((s) => s.end), t0 + 1);
  const width = t1 - t0;
  const x = (t: number) => `${(((Math.min(Math.max(t, t0), t1) - t0) / width) * 100).toFixed(3)}%`;
  const w = (a: number, b: number) => `max(3px, ${(((Math.min(b, t1) - Math.max(a, t0)) / width) * 100).toFixed(3)}%)`;
  const step = tickStep(width);
  const ticks: number[] = [];
  for (let t = 0; t <= width; t += step) ticks.push(t);
  const runOutcome: Outcome = ended === undefined ? "open" : run.error ? "failed" : "ok";

  return (
    <div class="timeline" data-spans={spans.length}>
      <div class="tl-row tl-axis">
        <div class="tl-label" />
        <div class="tl-track">
          {ticks.map((t) => (
            <span class="tl-tick" style={{ left: x(t0 + t) }}>
              {t === 0 ? "0" : duration(t)}
            </span>
          ))}
        </div>
        <div class="tl-dur" />
      </div>
      <div class="tl-row tl-run">
        <div class="tl-label">
          <span class="tl-kind kind-run">run</span>
        </div>
        <div class="tl-track">
          {started !== undefined && started > t0 && <span class="tl-bar tl-queued" style={{ left: x(t0), width: w(t0, started) }} title="queued" />}
          <span
            class={`tl-bar kind-run outcome-${runOutcome}`}
            style={{ left: x(started ?? t0), width: w(started ?? t0, ended ?? now) }}
          />
        </div>
        <div class="tl-dur">{duration((ended ?? now) - t0)}</div>
      </div>
      {spans.map((span) => (
        <div class="tl-row" data-kind={span.kind} data-outcome={span.outcome}>
          <div class="tl-label" title={span.name}>
            <span class={`tl-kind kind-${span.kind}`}>{span.kind}</span>
            {span.href ? <a href={span.href}>{span.name}</a> : <span>{span.name}</span>}
          </div>
          <div class="tl-track">
            {ticks.map((t) => (
              <span class="tl-grid" style={{ left: x(t0 + t) }} />
            ))}
            <span
              class={`tl-bar kind-${span.kind} outcome-${span.outcome}`}
              style={{ left: x(span.start), width: w(span.start, span.end) }}
              title={`${span.name}: ${duration(span.end - span.start)}${span.outcome === "open" ? " so far" : ""}`}
            />
            {span.failedAttempts.map((t) => (
              <span class="tl-attempt" style={{ left: x(t) }} title="attempt failed" />
            ))}
          </div>
          <div class="tl-dur">
            {duration(span.end - span.start)}
            {span.attempts > 1 && <span class="tl-attempts"> · {span.attempts} attempts</span>}
          </div>
        </div>
      ))}
    </div>
  );
}

/** A round tick spacing giving four to eight ticks. */
function tickStep(width: number): number {
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000];
  return steps.find((s) => width / s <= 6) ?? 86_400_000 * Math.ceil(width / 86_400_000 / 6);
}
