/**
 * The hot statements on `runs` as raw prepared SQL: reading a run, claiming
 * due runs, and the batch forms of creating and finishing runs that the
 * store's batchers (store.ts) feed. Concurrent CreateRun calls share one
 * INSERT; runs of this process that end together share one statement that
 * sets their final status, drops their waits and journals their last entry.
 * Both keep single-run semantics: idempotency-key conflicts insert nothing,
 * and a finish whose fence no longer holds changes nothing.
 */
import type { JsonValue } from "../../../sdk/workflow.js";
import type { FailureInfo } from "../../core/json.js";
import { type Db, rawQuery } from "../database.js";
import type { FlowGate, RunRow, RunStatus, WaitingOn } from "../schema.js";

export interface RunInsert {
  id: string;
  namespace: string;
  workflowName: string;
  input: JsonValue;
  idempotencyKey: string | null;
  metadata: Record<string, string>;
  parentRunId: string | null;
  traceParent?: string | null | undefined;
  /** The run-level timeout in ms from creation (absent: none); stored as `timeout_at`. */
  timeoutMs?: number | null | undefined;
  /** Flow control fixed at creation (absent: none; see schema.ts). */
  flow?: RunFlow | undefined;
  claimFor?: { owner: string; leaseMs: number } | undefined;
}

export interface RunFlow {
  priority: number;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  rateKey: string | null;
  rateLimit: number | null;
  ratePeriodMs: number | null;
  debounceKey: string | null;
  /** Debounce: the run is due this long after its (last) creation. */
  delayMs: number | null;
  namespaceMaxRunning: number | null;
}

export interface RunFinish {
  runId: string;
  owner: string;
  epoch: number;
  sequence: number;
  status: "completed" | "failed" | "cancelled";
  output: string | null;
  error: string | null;
  kind: string;
  /**
   * Entries written before the end, in the same statement (so both or neither commit): the run's last step when it
   * reached the main thread together with the run's end, values drawn after the last write (journal-writer.ts rows).
   */
  entries?: Record<string, unknown>[];
}

const insertRunsSelect = `
  insert into runs (id, namespace, workflow_name, status, input, idempotency_key, metadata, parent_run_id,
                    lease_owner, lease_epoch, lease_expires_at, activation_count, started_at, trace_parent, timeout_at,
                    available_at, priority, concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period_ms,
                    debounce_key, namespace_max_running)
  select v.id, v.namespace, v.workflow_name, v.status, v.input::jsonb, v.idempotency_key, v.metadata::jsonb, v.parent_run_id,
         v.lease_owner, v.lease_epoch, now() + v.lease_ms * interval '1 millisecond', v.activation_count,
         case when v.lease_owner is null then null else now() end, v.trace_parent,
         now() + v.timeout_ms * interval '1 millisecond',
         now() + coalesce(v.delay_ms, 0) * interval '1 millisecond', coalesce(v.priority, 0), v.concurrency_key,
         v.concurrency_limit, v.rate_key, v.rate_limit, v.rate_period_ms, v.debounce_key, v.namespace_max_running
  from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[],
              $9::text[], $10::int[], $11::int[], $12::int[], $13::text[], $14::bigint[], $15::bigint[], $16::int[],
              $17::text[], $18::int[], $19::text[], $20::int[], $21::int[], $22::text[], $23::int[])
       as v(id, namespace, workflow_name, status, input, idempotency_key, metadata, parent_run_id,
            lease_owner, lease_epoch, lease_ms, activation_count, trace_parent, timeout_ms, delay_ms, priority,
            concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period_ms, debounce_key, namespace_max_running)`;

const insertRunsSql = `${insertRunsSelect}
  on conflict do nothing
  returning *`;

/**
 * Debounce: a creation while the key's run has not started yet folds into it (its input replaced, due one
 * period from now) instead of adding a run; runs_debounce_idx allows one such run per key, so concurrent creations
 * on any process agree. `xmax <> 0` tells a folded creation from an inserted one.
 */
const insertDebouncedRunSql = `${insertRunsSelect}
  on conflict (namespace, workflow_name, debounce_key) where debounce_key is not null and status = 'queued' and started_at is null
  do update set input = excluded.input, available_at = excluded.available_at, updated_at = now()
  returning *, (xmax <> 0) as debounced`;

/** Rows are locked in id order, like the other multi-row writers, so that concurrent ones cannot deadlock. */
/**
 * Run endings of many runs in one statement, each fenced by its lease. `$9` holds entries written with an ending
 * (journal-writer.ts's recordset rows): they join `finished`, so they are written only for runs whose end is, in
 * the same statement.
 */
const finishRunsSql = `
  with v as (
    select * from unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[])
      as v(run_id, owner, epoch, sequence, status, output, error, kind)),
  locked as (
    select r.id from runs r join v on r.id = v.run_id
    where r.lease_owner = v.owner and r.lease_epoch = v.epoch
    order by r.id
    for update of r),
  finished as (
    update runs r set status = v.status, output = v.output::jsonb, error = v.error::jsonb,
           lease_owner = null, lease_expires_at = null, waiting_on = null, available_at = null,
           completed_at = now(), updated_at = now()
    from v
    where r.id = v.run_id and r.id in (select id from locked) and r.lease_owner = v.owner and r.lease_epoch = v.epoch
    returning r.*, v.sequence as final_sequence, v.kind as final_kind),
  dropped as (delete from waits where run_id in (select id from finished)),
  ridden as (
    insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt, started_at,
                                 fire_at, timeout_at, event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id)
    select f.id, e.sequence, f.namespace, e.kind, e.name, e.result -> 0, e.error, e.attempt, e.started_at,
           e.fire_at, e.timeout_at, e.event_type, e.correlation_id, e.lookback_from, e.event_id, e.target_run_id, e.target_turn_id
    from jsonb_to_recordset($9::jsonb) as e(
           run_id uuid, sequence int, kind text, name text, result jsonb, error jsonb, attempt int,
           started_at timestamptz, fire_at timestamptz, timeout_at timestamptz, event_type text, correlation_id text,
           lookback_from timestamptz, event_id uuid, target_run_id uuid, target_turn_id uuid)
    join finished f on f.id = e.run_id),
  written as (
    insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt)
    select id, final_sequence, namespace, final_kind, '', output, error, 1 from finished)
  select * from finished`;

/*
 * Higher priority first, then the earliest due. A run parked on the clock alone (no `waits` rows: timers and retry
 * backoffs, park.ts) may be claimed up to $5 ms before it is due: its activation waits out the rest in place
 * (ActivationHost.holdClockWaitsMs) and journals the timer when the clock reaches it, so the claim, the journal read
 * and the replay happen before the deadline instead of after it. Queued runs (a flow-control delay) and runs waiting
 * on anything else are claimed only once due (`parkedOnClockAlone` probes waits only for the few rows inside the
 * window ahead). Runs of priority 0 (nearly all) come from runs_due_idx in
 * available_at order; the few of another priority from runs_due_priority_idx in (priority desc, available_at) order;
 * each branch is an index range scan that stops after `limit` rows, and the union's best `limit` are the overall
 * best. Runs held back by flow control are not in either index (available_at NULL) or are not yet due (the rate
 * limit's next place), so they cost a claim nothing. The flow-control gate (migration 0018, a BEFORE trigger on the
 * status change) admits or holds each row as the UPDATE reaches it; held rows keep their status and are left out.
 */
/**
 * A `runs` row parked on the clock alone (park.ts writes no `waits` rows for timers and retry backoffs). A scalar
 * lookup with LIMIT, not NOT EXISTS: PostgreSQL turned that into a hashed subplan that read every waits row.
 */
export const parkedOnClockAlone = "status = 'waiting' and (select 1 from waits w where w.run_id = runs.id limit 1) is null";

const claimRunsSql = `
  with claimed as (
    update runs set status = 'running', lease_owner = $1, lease_epoch = lease_epoch + 1,
           lease_expires_at = now() + $2 * interval '1 millisecond', activation_count = activation_count + 1,
           started_at = coalesce(started_at, now()), waiting_on = null, updated_at = now()
    where id in (
      select id from (
        select * from (select id, priority, available_at from runs
          where status in ('queued', 'waiting') and priority <> 0 and available_at <= now() + $5 * interval '1 millisecond'
            and (available_at <= now() + interval '1 millisecond' or ${parkedOnClockAlone})
            and workflow_name = any($4::text[])
          order by priority desc, available_at limit $3 for update skip locked) prioritized
        union all
        select * from (select id, priority, available_at from runs
          where status in ('queued', 'waiting') and priority = 0 and available_at <= now() + $5 * interval '1 millisecond'
            and (available_at <= now() + interval '1 millisecond' or ${parkedOnClockAlone})
            and workflow_name = any($4::text[])
          order by available_at limit $3 for update skip locked) plain
      ) due
      order by priority desc, available_at limit $3)
    returning *)
  select * from claimed where status = 'running'`;

/**
 * Claims up to `limit` due runs for `owner`, bumping each one's epoch (see
 * claimDueRuns in runs.ts). `available_at` is stored to the millisecond,
 * rounded: a run queued or woken with `available_at = now()` may carry an
 * instant up to 0.5 ms ahead of the transaction that set it, and a claim in
 * that half millisecond would miss it and leave it to the next poll. Hence
 * the 1 ms of slack; a timer claimed that early is not fired early (the
 * engine compares its fire time with the clock and parks the run again).
 */
/** The claim statement, for tests that EXPLAIN it ($1 owner, $2 lease ms, $3 limit, $4 workflow names, $5 ms ahead). */
export const claimStatement = claimRunsSql;

export async function claimRunRows(db: Db, owner: string, leaseMs: number, limit: number, workflowNames: readonly string[], aheadMs = 0): Promise<RunRow[]> {
  const rows = await rawQuery<RawRun>(db, claimRunsSql, [owner, leaseMs, limit, [...workflowNames], Math.max(1, aheadMs)], "cairn_claim_runs");
  return rows.map(toRunRow);
}

export async function selectRun(db: Db, namespace: string, runId: string): Promise<RunRow | undefined> {
  const [row] = await rawQuery<RawRun>(db, "select * from runs where id = $1 and namespace = $2", [runId, namespace], "cairn_get_run");
  return row ? toRunRow(row) : undefined;
}

/** Inserts runs (queued, or claimed by `claimFor`); undefined for each whose id or idempotency key is taken. */
function insertParams(items: RunInsert[]): unknown[] {
  const column = <T>(pick: (r: RunInsert) => T) => items.map(pick);
  return [
    column((r) => r.id),
    column((r) => r.namespace),
    column((r) => r.workflowName),
    column((r) => (r.claimFor ? "running" : "queued")),
    column((r) => JSON.stringify(r.input)),
    column((r) => r.idempotencyKey),
    column((r) => JSON.stringify(r.metadata)),
    column((r) => r.parentRunId),
    column((r) => r.claimFor?.owner ?? null),
    column((r) => (r.claimFor ? 1 : 0)),
    column((r) => r.claimFor?.leaseMs ?? null),
    column((r) => (r.claimFor ? 1 : 0)),
    column((r) => r.traceParent ?? null),
    column((r) => r.timeoutMs ?? null),
    column((r) => r.flow?.delayMs ?? null),
    column((r) => r.flow?.priority ?? 0),
    column((r) => r.flow?.concurrencyKey ?? null),
    column((r) => r.flow?.concurrencyLimit ?? null),
    column((r) => r.flow?.rateKey ?? null),
    column((r) => r.flow?.rateLimit ?? null),
    column((r) => r.flow?.ratePeriodMs ?? null),
    column((r) => r.flow?.debounceKey ?? null),
    column((r) => r.flow?.namespaceMaxRunning ?? null),
  ];
}

/** Inserts runs (queued, or claimed by `claimFor`); undefined for each whose id or idempotency key is taken. */
export async function insertRuns(db: Db, items: RunInsert[]): Promise<(RunRow | undefined)[]> {
  const rows = await rawQuery<RawRun>(db, insertRunsSql, insertParams(items), "cairn_insert_runs");
  const byId = new Map(rows.map((row) => [row.id, toRunRow(row)]));
  return items.map((r) => byId.get(r.id));
}

/** Inserts a debounced run, or folds it into its key's run that has not started yet (`debounced`: the latter). */
export async function insertDebouncedRun(db: Db, item: RunInsert): Promise<{ run: RunRow; debounced: boolean }> {
  const [row] = await rawQuery<RawRun & { debounced: boolean }>(db, insertDebouncedRunSql, insertParams([item]), "cairn_insert_debounced_run");
  if (!row) throw new Error(`debounced run ${item.id} was neither inserted nor folded`);
  return { run: toRunRow(row), debounced: row.debounced };
}

/** Sets final statuses and journals last entries; undefined for each whose fence no longer holds. */
export async function finishRuns(db: Db, items: RunFinish[]): Promise<(RunRow | undefined)[]> {
  const sorted = [...items].sort((a, b) => (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0));
  const column = <T>(pick: (f: RunFinish) => T) => sorted.map(pick);
  const rows = await rawQuery<RawRun & { final_sequence: number }>(
    db,
    finishRunsSql,
    [
      column((f) => f.runId),
      column((f) => f.owner),
      column((f) => f.epoch),
      column((f) => f.sequence),
      column((f) => f.status),
      column((f) => f.output),
      column((f) => f.error),
      column((f) => f.kind),
      JSON.stringify(sorted.flatMap((f) => f.entries ?? [])),
    ],
    "cairn_finish_runs",
  );
  const byId = new Map(rows.map((row) => [row.id, toRunRow(row)]));
  return items.map((f) => byId.get(f.runId));
}

/** A `runs` row as the driver returns it (snake_case). */
interface RawRun {
  id: string;
  namespace: string;
  workflow_name: string;
  status: RunStatus;
  input: JsonValue;
  output: JsonValue | null;
  error: FailureInfo | null;
  parent_run_id: string | null;
  detached: boolean;
  idempotency_key: string | null;
  metadata: Record<string, string>;
  waiting_on: WaitingOn | null;
  lease_owner: string | null;
  lease_epoch: number;
  lease_expires_at: Date | null;
  available_at: Date | null;
  activation_count: number;
  abnormal_activations: number;
  abnormal_streak: number;
  last_abnormal_activation: number | null;
  timeout_at: Date | null;
  cancel_requested_at: Date | null;
  cancel_reason: string | null;
  pause_requested_at: Date | null;
  pause_reason: string | null;
  created_at: Date;
  updated_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  trace_parent: string | null;
  forked_from_run_id: string | null;
  priority: number;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  rate_key: string | null;
  rate_limit: number | null;
  rate_period_ms: number | null;
  debounce_key: string | null;
  namespace_max_running: number | null;
  held_by: FlowGate | null;
  schedule_id?: string | null;
}

/** A `runs` row as `to_jsonb(runs.*)` gives it: timestamps are ISO strings. */
export type JsonRun = { [K in keyof RawRun]: RawRun[K] extends Date ? string : RawRun[K] extends Date | null ? string | null : RawRun[K] };

export function runRowFromJson(json: JsonRun): RunRow {
  const date = (text: string | null): Date | null => (text === null ? null : new Date(text));
  return toRunRow({
    ...json,
    lease_expires_at: date(json.lease_expires_at),
    available_at: date(json.available_at),
    cancel_requested_at: date(json.cancel_requested_at),
    timeout_at: date(json.timeout_at),
    pause_requested_at: date(json.pause_requested_at),
    created_at: new Date(json.created_at),
    updated_at: new Date(json.updated_at),
    started_at: date(json.started_at),
    completed_at: date(json.completed_at),
  });
}

function toRunRow(raw: RawRun): RunRow {
  return {
    id: raw.id,
    namespace: raw.namespace,
    workflowName: raw.workflow_name,
    status: raw.status,
    input: raw.input,
    output: raw.output,
    error: raw.error,
    parentRunId: raw.parent_run_id,
    detached: raw.detached,
    idempotencyKey: raw.idempotency_key,
    metadata: raw.metadata,
    waitingOn: raw.waiting_on,
    leaseOwner: raw.lease_owner,
    leaseEpoch: raw.lease_epoch,
    leaseExpiresAt: raw.lease_expires_at,
    availableAt: raw.available_at,
    activationCount: raw.activation_count,
    abnormalActivations: raw.abnormal_activations ?? 0,
    abnormalStreak: raw.abnormal_streak ?? 0,
    lastAbnormalActivation: raw.last_abnormal_activation ?? null,
    timeoutAt: raw.timeout_at ?? null,
    cancelRequestedAt: raw.cancel_requested_at,
    cancelReason: raw.cancel_reason,
    pauseRequestedAt: raw.pause_requested_at,
    pauseReason: raw.pause_reason,
    createdAt: raw.created_at,
    updatedAt: raw.updated_at,
    startedAt: raw.started_at,
    completedAt: raw.completed_at,
    traceParent: raw.trace_parent ?? null,
    forkedFromRunId: raw.forked_from_run_id ?? null,
    priority: raw.priority ?? 0,
    concurrencyKey: raw.concurrency_key ?? null,
    concurrencyLimit: raw.concurrency_limit ?? null,
    rateKey: raw.rate_key ?? null,
    rateLimit: raw.rate_limit ?? null,
    ratePeriodMs: raw.rate_period_ms ?? null,
    debounceKey: raw.debounce_key ?? null,
    namespaceMaxRunning: raw.namespace_max_running ?? null,
    heldBy: raw.held_by ?? null,
    scheduleId: raw.schedule_id ?? null,
  };
}
