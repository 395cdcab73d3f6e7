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
import type { JournalEntry, NewEntry } from "../core/journal.js";
import type { FailureInfo } from "../core/json.js";
import { toJournalEntry } from "./journal.js";
import { inJsonbOrder } from "./jsonb-order.js";
import { Batcher, type BatcherOptions, type Gather } from "./batcher.js";
import { type Db, rawQuery } from "./database.js";
import { type Append, insertEntries } from "./journal-insert.js";
import type { LocalCommits } from "./local-commits.js";
import type { Fence } from "./runs/lease.js";

export class JournalWriter {
  /** Each append's commit time (its statement's `now()`, the entry's `created_at`), or null when refused. */
  private readonly batcher: Batcher<Append, Date | null>;

  /** `commits`: where the runs of a statement in flight are marked, so that watchers here wait for its telling. */
  constructor(db: Db, options: BatcherOptions = {}, commits?: LocalCommits) {
    const query = <R>(text: string, values: unknown[], name: string) => rawQuery<R>(db, text, values, name);
    this.batcher = new Batcher(
      commits ? (appends) => commits.around(appends.map((a) => a.fence.runId), () => insertEntries(query, appends)) : (appends) => insertEntries(query, appends),
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
