/**
 * Events: stored on arrival, matched by waits later. Sending and suspending
 * take the same transaction-scoped advisory lock on the event key, so an
 * event sent while a run is about to park on its key is never missed: either
 * the send sees the run's wait and wakes it, or the suspension sees the event
 * and does not park.
 */
import { sql } from "drizzle-orm";
import type { JsonValue } from "../../sdk/workflow.js";
import type { JournalEntry } from "../core/journal.js";
import type { MatchedEvent } from "../core/host.js";
import type { EventWait } from "../core/waits.js";
import { type Db, ownClient, queryRows, rawQuery } from "./database.js";
import { type JsonRun, runRowFromJson } from "./runs/rows.js";
import type { RunRow } from "./schema.js";

export interface NewEvent {
  id: string;
  namespace: string;
  eventType: string;
  correlationId: string;
  payload: JsonValue;
  targetRunId?: string | undefined;
  idempotencyKey?: string | undefined;
}

export interface SendResult {
  eventId: string;
  deduplicated: boolean;
  /** Parked runs the event was delivered to (each got its event_received entry). */
  matchedRunIds: string[];
  /** Those of them claimed for the sender's process (see `DeliveryClaim`), each with the entry it got. */
  claimed: { run: RunRow; received: JournalEntry }[];
}

/** Who may take the runs an event is delivered to: this process, for up to `limit` runs of workflows it serves. */
export interface DeliveryClaim {
  owner: string;
  leaseMs: number;
  limit: number;
  workflowNames: readonly string[];
}

/** Serializes senders and sleepers of one event key for the rest of the transaction. */
export async function lockEventKey(db: Db, namespace: string, eventType: string, correlationId: string): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock(hashtextextended(${eventLockKey(namespace, eventType, correlationId)}, 0))`);
}

/** The text whose hash is an event key's advisory lock; every taker (including the SQL functions) hashes this. */
export function eventLockKey(namespace: string, eventType: string, correlationId: string): string {
  return JSON.stringify([namespace, eventType, correlationId]);
}

/** Serializes a child's end with a parent parking on it, like event keys do for events. */
export async function lockChildKey(db: Db, childRunId: string): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock(hashtextextended(${JSON.stringify(["child", childRunId])}, 0))`);
}

/**
 * Stores the event and delivers it to every run parked on its key (or only
 * its target): each gets its event_received entry in the same transaction
 * (migration 0008). Up to `claim.limit` of them are claimed for the caller's
 * process, the others are queued for any process. Committed before SendEvent
 * replies: an accepted event is never lost.
 */
export async function sendEvent(db: Db, event: NewEvent, claim?: DeliveryClaim): Promise<SendResult> {
  // The payload comes back as stored (jsonb orders object keys), so the live run sees what a replay will see.
  type Claimed = { run: JsonRun; sequence: number; name: string; at: string; payload: JsonValue };
  const [row] = await rawQuery<{ event_id: string; deduplicated: boolean; matched_run_ids: string[]; claimed: Claimed[] }>(
    db,
    "select * from cairn_deliver_event($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12::text[])",
    [
      eventLockKey(event.namespace, event.eventType, event.correlationId),
      event.id,
      event.namespace,
      event.eventType,
      event.correlationId,
      JSON.stringify(event.payload),
      event.targetRunId ?? null,
      event.idempotencyKey ?? null,
      claim?.owner ?? null,
      claim?.leaseMs ?? 0,
      claim?.limit ?? 0,
      claim ? [...claim.workflowNames] : [],
    ],
    "cairn_deliver_event",
  );
  if (!row) throw new Error("cairn_deliver_event answered nothing");
  const claimed = row.claimed.map(({ run, sequence, name, at, payload }) => {
    const startedAt = new Date(at);
    const received: JournalEntry = {
      sequence,
      kind: "event_received",
      name,
      result: payload,
      eventId: row.event_id,
      eventType: event.eventType,
      correlationId: event.correlationId,
      attempt: 1,
      startedAt,
      createdAt: startedAt,
    };
    return { run: runRowFromJson(run), received };
  });
  return { eventId: row.event_id, deduplicated: row.deduplicated, matchedRunIds: row.matched_run_ids, claimed };
}

/**
 * The oldest event matching one of `waits` (tried in order) that this run has
 * not consumed yet, addressed to everyone or to this run, inside the wait's
 * lookback window.
 */
export async function findEvent(db: Db, namespace: string, runId: string, waits: readonly EventWait[]): Promise<MatchedEvent | undefined> {
  for (const wait of waits) {
    const values = [namespace, wait.eventType, wait.correlationId, runId, wait.lookbackFrom?.toISOString() ?? null];
    type Row = { id: string; payload: JsonValue; has_payload: boolean };
    // Inside a transaction (a suspension holding the key's lock) the query must run on the transaction's connection.
    const [row] = ownClient(db)
      ? await rawQuery<Row>(db, findEventSql, values, "cairn_find_event")
      : await queryRows<Row>(
          db,
          sql`select e.id, e.payload, e.payload is not null as has_payload from events e
              where e.namespace = ${namespace} and e.event_type = ${wait.eventType} and e.correlation_id = ${wait.correlationId}
                and (e.target_run_id is null or e.target_run_id = ${runId}::uuid)
                and (${values[4]}::timestamptz is null or e.created_at >= ${values[4]}::timestamptz)
                and not exists (select 1 from journal_entries j where j.run_id = ${runId}::uuid and j.event_id = e.id)
              order by e.position
              limit 1`,
        );
    if (row) return { name: wait.name, eventId: row.id, payload: row.has_payload ? row.payload : null };
  }
  return undefined;
}

const findEventSql = `
  select e.id, e.payload, e.payload is not null as has_payload from events e
  where e.namespace = $1 and e.event_type = $2 and e.correlation_id = $3
    and (e.target_run_id is null or e.target_run_id = $4::uuid)
    and ($5::timestamptz is null or e.created_at >= $5::timestamptz)
    and not exists (select 1 from journal_entries j where j.run_id = $4::uuid and j.event_id = e.id)
  order by e.position
  limit 1`;

/** Drops events past retention; returns how many. Consumed events stay referenced by id in journals only. */
export async function deleteExpiredEvents(db: Db, retentionMs: number): Promise<number> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`delete from events where created_at < now() - ${retentionMs} * interval '1 millisecond' returning id`,
  );
  return rows.length;
}
