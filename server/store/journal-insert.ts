/**
 * The statement that appends journal entries, fenced by their runs' leases, many runs' entries in one statement (group
 * commit: journal-writer.ts on the main thread, worker/threads/thread-journal.ts on a workflow thread that writes its
 * runs' entries over its own connection). It needs only a way to run a query, so a workflow thread can load it
 * without the rest of the store.
 */
import { entryFields, type NewEntry } from "../core/journal.js";
import { wellFormed } from "../core/json.js";
import type { Fence } from "./runs/lease.js";

export interface Append {
  fence: Fence;
  sequence: number;
  entry: NewEntry;
}

/** Runs a named (prepared) statement and answers its rows. */
export type Query = <R>(text: string, values: unknown[], name: string) => Promise<R[]>;

function rowKey(runId: string, sequence: number): string {
  return `${runId}/${sequence}`;
}

/**
 * The batch travels as one JSON array (`jsonb_to_recordset`): serialising it is
 * one native JSON.stringify, where eighteen parallel arrays cost the driver an
 * escaping pass per element and PostgreSQL eighteen array parses. A step's
 * result is wrapped in a one-element array because a JSON null would arrive as
 * SQL NULL, and "returned null" must stay distinct from "returned nothing".
 *
 * Rows are locked in run id order (the array order drives the nested loop), as
 * the lease heartbeat's UPDATE does, so the two cannot deadlock on each other.
 */
const insertEntriesSql = `
  insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt, started_at,
                               fire_at, timeout_at, event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id)
  select r.id, v.sequence, r.namespace, v.kind, v.name, v.result -> 0, v.error, v.attempt, v.started_at,
         v.fire_at, v.timeout_at, v.event_type, v.correlation_id, v.lookback_from, v.event_id, v.target_run_id, v.target_turn_id
  from rows from (jsonb_to_recordset($1::jsonb) as (
         run_id uuid, epoch int, owner text, sequence int, kind text, name text, result jsonb, error jsonb, attempt int,
         started_at timestamptz, fire_at timestamptz, timeout_at timestamptz, event_type text, correlation_id text,
         lookback_from timestamptz, event_id uuid, target_run_id uuid, target_turn_id uuid)) with ordinality as v
  join runs r on r.id = v.run_id
  where r.lease_owner = v.owner and r.lease_epoch = v.epoch and r.status = 'running' and r.cancel_requested_at is null
    and r.pause_requested_at is null
  order by v.ordinality
  for share of r
  returning run_id, sequence, created_at`;

export async function insertEntries(query: Query, batch: Append[]): Promise<(Date | null)[]> {
  const rows = [...batch].sort((a, b) => (a.fence.runId < b.fence.runId ? -1 : a.fence.runId > b.fence.runId ? 1 : a.sequence - b.sequence));
  const json = JSON.stringify(rows.map(toRecord));
  const inserted = await query<{ run_id: string; sequence: number; created_at: Date }>(insertEntriesSql, [json], "cairn_append_entries_json");
  const written = new Map(inserted.map((row) => [rowKey(row.run_id, row.sequence), row.created_at]));
  return batch.map((p) => written.get(rowKey(p.fence.runId, p.sequence)) ?? null);
}

/**
 * One row of the recordset; absent keys are NULL. Text columns are made well-formed, as the driver's UTF-8 encoding
 * did. (The run-ending statement reads the same rows for the entries written with a run's end, rows.ts.)
 */
export function toRecord({ fence, sequence, entry: typed }: Append): Record<string, unknown> {
  const entry = entryFields(typed);
  return {
    run_id: fence.runId,
    epoch: fence.epoch,
    owner: fence.owner,
    sequence,
    kind: entry.kind,
    name: wellFormed(entry.name),
    result: entry.result === undefined ? undefined : [entry.result],
    error: entry.error,
    attempt: entry.attempt,
    started_at: entry.startedAt,
    fire_at: entry.fireAt,
    timeout_at: entry.timeoutAt,
    event_type: entry.eventType === undefined ? undefined : wellFormed(entry.eventType),
    correlation_id: entry.correlationId === undefined ? undefined : wellFormed(entry.correlationId),
    lookback_from: entry.lookbackFrom,
    event_id: entry.eventId,
    target_run_id: entry.targetRunId,
    target_turn_id: entry.targetTurnId,
  };
}
