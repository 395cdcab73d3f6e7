/** The run's journal, one row per entry, payloads and errors folded into JSON views. */
import type { HistoryEntry } from "../api.js";
import { date, json } from "../api.js";
import { entryKindName, shortId, time } from "../format.js";
import { FailureView } from "./failure.js";
import { JsonView } from "./json-view.js";

export function History({ entries }: { entries: readonly HistoryEntry[] }) {
  if (entries.length === 0) return <p class="muted">No entries yet.</p>;
  return (
    <ol class="history">
      {entries.map((entry) => {
        const result = json(entry.result);
        const kind = entryKindName(entry.kind);
        return (
          <li key={String(entry.sequence)} data-seq={String(entry.sequence)} data-kind={kind} class={`entry ${kind.includes("failed") || kind.includes("timed_out") ? "entry-bad" : ""}`}>
            <div class="entry-head">
              <span class="seq">#{String(entry.sequence)}</span>
              <span class="entry-kind">{kind.replaceAll("_", " ")}</span>
              {entry.name && <b>{entry.name}</b>}
              {kind.startsWith("step") && entry.attempt > 0 && <span class="muted">attempt {entry.attempt}</span>}
              {entry.eventType && (
                <span class="muted">
                  {entry.eventType}
                  {entry.correlationId ? ` · ${entry.correlationId}` : ""}
                </span>
              )}
              {entry.targetRunId && <a href={`/runs/${entry.targetRunId}`}>child {shortId(entry.targetRunId)}</a>}
              {entry.fireAt && <span class="muted">fires {time(date(entry.fireAt))}</span>}
              <span class="spacer" />
              <span class="muted">{time(date(entry.createdAt))}</span>
            </div>
            {result !== undefined && <JsonView value={result} open={0} />}
            {entry.error && <FailureView failure={entry.error} />}
          </li>
        );
      })}
    </ol>
  );
}
