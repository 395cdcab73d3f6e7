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
import type { NewEntry } from "../engine/journal.js";
import { Batcher, type BatcherOptions } from "./batcher.js";
import { type Db, rawQuery } from "./database.js";
import type { Fence } from "./runs.js";

interface Append {
  fence: Fence;
  sequence: number;
  entry: NewEntry;
}

export class JournalWriter {
  private readonly batcher: Batcher<Append, boolean>;

  constructor(db: Db, options: BatcherOptions = {}) {
    this.batcher = new Batcher((appends) => insertEntries(db, appends), options);
  }

  /** Resolves true once the entry committed, false when the fence no longer holds (nothing written). */
  append(fence: Fence, sequence: number, entry: NewEntry): Promise<boolean> {
    return this.batcher.submit({ fence, sequence, entry });
  }
}

function rowKey(runId: string, sequence: number): string {
  return `${runId}/${sequence}`;
}

/**
 * Rows are locked in run id order (the array order drives the nested loop), as
 * the lease heartbeat's UPDATE does, so the two cannot deadlock on each other.
 */
const insertEntriesSql = `
  insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt, started_at,
                               fire_at, timeout_at, event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id)
  select r.id, v.sequence, r.namespace, v.kind, v.name, v.result::jsonb, v.error::jsonb, v.attempt, v.started_at,
         v.fire_at, v.timeout_at, v.event_type, v.correlation_id, v.lookback_from, v.event_id, v.target_run_id, v.target_turn_id
  from unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
              $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[], $14::timestamptz[],
              $15::uuid[], $16::uuid[], $17::uuid[], $18::text[])
         with ordinality as v(run_id, epoch, sequence, kind, name, result, error, attempt, started_at, fire_at, timeout_at,
                              event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id, owner, position)
  join runs r on r.id = v.run_id
  where r.lease_owner = v.owner and r.lease_epoch = v.epoch and r.status = 'running' and r.cancel_requested_at is null
  order by v.position
  for share of r
  returning run_id, sequence`;

async function insertEntries(db: Db, batch: Append[]): Promise<boolean[]> {
  const rows = [...batch].sort((a, b) => (a.fence.runId < b.fence.runId ? -1 : a.fence.runId > b.fence.runId ? 1 : a.sequence - b.sequence));
  const column = <T>(pick: (p: Append) => T) => rows.map(pick);
  const values = [
    column((p) => p.fence.runId),
    column((p) => p.fence.epoch),
    column((p) => p.sequence),
    column((p) => p.entry.kind),
    column((p) => p.entry.name),
    column((p) => (p.entry.result === undefined ? null : JSON.stringify(p.entry.result))),
    column((p) => (p.entry.error === undefined ? null : JSON.stringify(p.entry.error))),
    column((p) => p.entry.attempt),
    column((p) => iso(p.entry.startedAt)),
    column((p) => iso(p.entry.fireAt)),
    column((p) => iso(p.entry.timeoutAt)),
    column((p) => p.entry.eventType ?? null),
    column((p) => p.entry.correlationId ?? null),
    column((p) => iso(p.entry.lookbackFrom)),
    column((p) => p.entry.eventId ?? null),
    column((p) => p.entry.targetRunId ?? null),
    column((p) => p.entry.targetTurnId ?? null),
    column((p) => p.fence.owner),
  ];
  const inserted = await rawQuery<{ run_id: string; sequence: number }>(db, insertEntriesSql, values, "cairn_append_entries");
  const written = new Set(inserted.map((row) => rowKey(row.run_id, row.sequence)));
  return batch.map((p) => written.has(rowKey(p.fence.runId, p.sequence)));
}

function iso(date: Date | undefined): string | null {
  return date ? date.toISOString() : null;
}
