/**
 * Journal appends, fenced by the run's lease, with group commit. Each row is
 * inserted by an INSERT … SELECT that reads its run row FOR SHARE, so it
 * commits only while the writer's (owner, epoch) still holds the run: a
 * concurrent re-claim either waits for it or makes it match nothing. A cancel
 * request also makes it match nothing: cancellation reaches a running run at
 * its next durable operation.
 *
 * Entries of all runs of this process are written in shared statements
 * (group commit, see batcher.ts): an append resolves only once its row
 * committed, and answers false, with nothing written, when its fence no
 * longer holds.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { entryFields, type JournalEntry, type NewEntry } from "../core/journal.js";
import { type FailureInfo, wellFormed } from "../core/json.js";
import { toJournalEntry } from "./journal.js";
import { inJsonbOrder } from "./jsonb-order.js";
import { Batcher, type BatcherOptions, type Gather } from "./batcher.js";
import { type Db, rawQuery } from "./database.js";
import type { LocalCommits } from "./local-commits.js";
import type { Fence } from "./runs/lease.js";

export interface Append {
  fence: Fence;
  sequence: number;
  entry: NewEntry;
}

export class JournalWriter {
  /** Each append's commit time (its statement's `now()`, the entry's `created_at`), or null when refused. */
  private readonly batcher: Batcher<Append, Date | null>;

  /** `commits`: where the runs of a statement in flight are marked, so that watchers here wait for its telling. */
  constructor(db: Db, options: BatcherOptions = {}, commits?: LocalCommits) {
    this.batcher = new Batcher(
      commits ? (appends) => commits.around(appends.map((a) => a.fence.runId), () => insertEntries(db, appends)) : (appends) => insertEntries(db, appends),
      options,
    );
  }

  gatherWith(gather: Gather): void {
    this.batcher.gatherWith(gather);
  }

  /** Resolves true once the entry committed, false when the fence no longer holds (nothing written). */
  async append(fence: Fence, sequence: number, entry: NewEntry): Promise<boolean> {
    return (await this.batcher.submit({ fence, sequence, entry })) !== null;
  }

  /** `append`, resolving the entry's `created_at` once it committed, or null when the fence no longer holds. */
  write(fence: Fence, sequence: number, entry: NewEntry): Promise<Date | null> {
    return this.batcher.submit({ fence, sequence, entry });
  }
}

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

async function insertEntries(db: Db, batch: Append[]): Promise<(Date | null)[]> {
  const rows = [...batch].sort((a, b) => (a.fence.runId < b.fence.runId ? -1 : a.fence.runId > b.fence.runId ? 1 : a.sequence - b.sequence));
  const json = JSON.stringify(rows.map(toRecord));
  const inserted = await rawQuery<{ run_id: string; sequence: number; created_at: Date }>(db, insertEntriesSql, [json], "cairn_append_entries_json");
  const written = new Map(inserted.map((row) => [rowKey(row.run_id, row.sequence), row.created_at]));
  return batch.map((p) => written.get(rowKey(p.fence.runId, p.sequence)) ?? null);
}

/**
 * A journaled entry as a read of the journal gives it (store/journal.ts, `toJournalEntry`), from its row of the
 * statement that wrote it (`toRecord`), the run's namespace and the statement's `now()`: jsonb hands objects back in
 * its own key order. For this process's own waiters, told of the entry without a read (run-feed.ts).
 */
export function entryAsRead(record: Record<string, unknown>, namespace: string, createdAt: Date): JournalEntry {
  const result = record.result as [JsonValue] | undefined;
  const error = record.error as FailureInfo | undefined;
  return toJournalEntry({
    runId: record.run_id as string,
    sequence: record.sequence as number,
    namespace,
    kind: record.kind as string,
    name: record.name as string,
    result: result === undefined ? null : inJsonbOrder(result[0]),
    hasResult: result !== undefined,
    error: error === undefined ? null : inJsonbOrder(error),
    attempt: record.attempt as number,
    startedAt: (record.started_at as Date | undefined) ?? null,
    createdAt,
    fireAt: (record.fire_at as Date | undefined) ?? null,
    timeoutAt: (record.timeout_at as Date | undefined) ?? null,
    eventType: (record.event_type as string | undefined) ?? null,
    correlationId: (record.correlation_id as string | undefined) ?? null,
    lookbackFrom: (record.lookback_from as Date | undefined) ?? null,
    eventId: (record.event_id as string | undefined) ?? null,
    targetRunId: (record.target_run_id as string | undefined) ?? null,
    targetTurnId: (record.target_turn_id as string | undefined) ?? null,
  });
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
