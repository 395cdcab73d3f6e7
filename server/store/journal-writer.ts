/**
 * Journal appends, fenced by the run's lease, with group commit. Each row is
 * inserted by an INSERT … SELECT that reads its run row FOR SHARE, so it
 * commits only while the writer's (owner, epoch) still holds the run: a
 * concurrent re-claim either waits for it or makes it match nothing. A cancel
 * request also makes it match nothing: cancellation reaches a running run at
 * its next durable operation.
 *
 * Group commit: Every activation of this process hands its
 * entries here; the entries that arrive while the previous statements are in
 * flight are written together, by ONE fenced `INSERT … SELECT … FOR SHARE`
 * over `unnest` arrays: one round trip and one commit for many steps, where
 * each step alone would pay both.
 *
 * Durability is not traded away: an append's promise resolves only after the
 * statement that holds its row has committed, and a row whose fence no longer
 * holds (lease lost, cancel requested) is simply not inserted and answers
 * false. If a batch statement fails, none of its
 * rows was written; each entry is then tried alone, so that one run's bad
 * value (or a deadlock with another statement) cannot fail another run's step.
 * Under light load a batch holds one entry and costs one event-loop turn.
 */
import type { NewEntry } from "../engine/journal.js";
import type { Database } from "./database.js";
import type { Fence } from "./runs.js";

interface Pending {
  fence: Fence;
  sequence: number;
  entry: NewEntry;
  resolve(written: boolean): void;
  reject(error: unknown): void;
}

export interface JournalWriterOptions {
  /** The most rows in one statement. */
  maxBatch?: number;
  /** The most statements in flight at once; entries arriving meanwhile wait for the next batch. */
  maxInFlight?: number;
}

export class JournalWriter {
  private queue: Pending[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly database: Pick<Database, "query">,
    options: JournalWriterOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 256;
    this.maxInFlight = options.maxInFlight ?? 4;
  }

  /** Resolves true once the entry committed, false when the fence no longer holds (nothing written). */
  append(fence: Fence, sequence: number, entry: NewEntry): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ fence, sequence, entry, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // One turn of the event loop lets every activation that is ready add its entry first.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.write(batch).finally(() => {
        this.inFlight--;
        this.schedule();
      });
      // Keep the rest for when a statement finishes: bigger batches, fewer commits.
      if (this.queue.length < this.maxBatch) break;
    }
  }

  private async write(batch: Pending[]): Promise<void> {
    let written: Set<string>;
    try {
      written = await insertEntries(this.database, batch);
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // Nothing of the batch committed: find the culprit by writing each alone.
      await Promise.all(batch.map((p) => this.write([p])));
      return;
    }
    for (const pending of batch) pending.resolve(written.has(rowKey(pending.fence.runId, pending.sequence)));
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

async function insertEntries(database: Pick<Database, "query">, batch: Pending[]): Promise<Set<string>> {
  const rows = [...batch].sort((a, b) => (a.fence.runId < b.fence.runId ? -1 : a.fence.runId > b.fence.runId ? 1 : a.sequence - b.sequence));
  const column = <T>(pick: (p: Pending) => T) => rows.map(pick);
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
  const inserted = await database.query<{ run_id: string; sequence: number }>(insertEntriesSql, values, "cairn_append_entries");
  return new Set(inserted.map((row) => rowKey(row.run_id, row.sequence)));
}

function iso(date: Date | undefined): string | null {
  return date ? date.toISOString() : null;
}
