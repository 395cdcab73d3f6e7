/**
 * The engine of record. A run row carries its lease (owner, epoch, expiry):
 * every write a worker makes on behalf of a run is conditioned on the owner
 * and epoch it claimed with (fencing), so a process that lost the lease can
 * no longer commit. Journal rows are a run's memory for replay, and its
 * history for people. Every row carries its namespace (tenant).
 */
import { sql } from "drizzle-orm";
import { bigint, boolean, check, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import type { ApiKeyRole } from "../core/api-key-roles.js";
import type { WaitRecord } from "../core/waits.js";
import type { FailureInfo } from "../core/json.js";
import type { JsonValue } from "../../sdk/workflow.js";

/** A run's first pending wait, as GetRun shows it. */
/** The wait a WAITING run is parked on, as core/waits.ts describes it. */
export type WaitingOn = WaitRecord;

export type FlowGate = "concurrency" | "rate" | "namespace";

export const runStatuses = ["queued", "running", "waiting", "paused", "completed", "failed", "cancelled"] as const;
export type RunStatus = (typeof runStatuses)[number];
export const terminalStatuses: readonly RunStatus[] = ["completed", "failed", "cancelled"];

// Millisecond precision: timestamps round-trip through JS Dates exactly, which keyset pagination relies on.
const timestamptz = (name: string) => timestamp(name, { withTimezone: true, mode: "date", precision: 3 });

export const runs = pgTable(
  "runs",
  {
    id: uuid().primaryKey(),
    namespace: text().notNull().default("default"),
    workflowName: text().notNull(),
    status: text().$type<RunStatus>().notNull(),
    input: jsonb().$type<JsonValue>().notNull(),
    output: jsonb().$type<JsonValue>(),
    error: jsonb().$type<FailureInfo>(),
    parentRunId: uuid(),
    /** A child started with { detached: true }: cancelling its parent leaves it running. */
    detached: boolean().notNull().default(false),
    idempotencyKey: text(),
    metadata: jsonb().$type<Record<string, string>>().notNull().default({}),
    /** What a WAITING run waits on: its first pending wait. */
    waitingOn: jsonb().$type<WaitingOn>(),
    /** The process id holding the run; null when nobody does. */
    leaseOwner: text(),
    /** Bumped on every claim; journal writes must present the epoch they claimed with. */
    leaseEpoch: integer().notNull().default(0),
    leaseExpiresAt: timestamptz("lease_expires_at"),
    /** A queued or waiting run may be claimed from this instant; NULL: only an event can wake it. */
    availableAt: timestamptz("available_at").defaultNow(),
    activationCount: integer().notNull().default(0),
    /**
     * Activations that ended without the executor recording an outcome: the holder's lease lapsed (it crashed, hung
     * or lost the database) and the run was requeued for someone else. ExplainRun shows it.
     */
    abnormalActivations: integer().notNull().default(0),
    /**
     * The poison-run breaker: abnormal activations in a row. A lapse right after another (its activation number is
     * the last lapse's + 1) adds one; any other lapse starts again at 1, so an activation that ended normally in
     * between (parked, finished, handed back) breaks the streak without any normal path writing here. ResumeRun
     * clears it. At CAIRN_MAX_ABNORMAL_ACTIVATIONS the lapse pauses the run instead of requeueing it.
     */
    abnormalStreak: integer().notNull().default(0),
    /** The activation_count of the last abnormal activation (null: none yet). */
    lastAbnormalActivation: integer(),
    /** The run-level timeout (CreateRun's `timeout`, or the workflow's default): not ended by then, it fails with RunTimeoutError. */
    timeoutAt: timestamptz("timeout_at"),
    /** CancelRun on a running run: its holder stops at the next durable operation. */
    cancelRequestedAt: timestamptz("cancel_requested_at"),
    cancelReason: text(),
    /** PauseRun on a running run: its holder's next durable operation is refused and the run becomes paused. */
    pauseRequestedAt: timestamptz("pause_requested_at"),
    pauseReason: text(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    updatedAt: timestamptz("updated_at").notNull().defaultNow(),
    startedAt: timestamptz("started_at"),
    completedAt: timestamptz("completed_at"),
    /** W3C `traceparent` the run's spans continue (the creating call's span, or the parent run's activation); null: untraced. */
    traceParent: text(),
    /** ForkRun: the run this one was forked from (its journal's prefix was copied); null for other runs. */
    forkedFromRunId: uuid(),
    /**
     * Flow control (docs/flow-control.md), fixed at creation from the workflow's declaration and CreateRun: higher
     * priority is claimed first; the keys are the workflow's key functions evaluated once over the input ('' when it
     * declares no key function: one key for the whole workflow); a null limit means the gate does not apply.
     */
    priority: integer().notNull().default(0),
    concurrencyKey: text(),
    concurrencyLimit: integer(),
    rateKey: text(),
    rateLimit: integer(),
    ratePeriodMs: integer(),
    debounceKey: text(),
    /** CAIRN_NAMESPACE_MAX_RUNNING of the server that created the run (null: no quota). */
    namespaceMaxRunning: integer(),
    /**
     * The gate that last held this run back at a claim ('concurrency', 'rate' or 'namespace'); null once admitted.
     * A run held by concurrency or the namespace quota has available_at NULL (out of the due index) until a run of
     * its key stops running and releases it; one held by the rate limit is due again when a start leaves the window.
     */
    heldBy: text().$type<FlowGate>(),
    /** The schedule (schedules.schedule_id, same namespace) whose fire created the run; null for other runs. */
    scheduleId: text(),
  },
  (t) => [
    check("runs_status_check", sql`${t.status} in ('queued', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')`),
    uniqueIndex("runs_idempotency_key_idx").on(t.namespace, t.idempotencyKey).where(sql`${t.idempotencyKey} is not null`),
    // The scheduler's two claim paths: queued or waiting runs that are due, and running runs whose lease lapsed.
    index("runs_due_idx").on(t.availableAt).where(sql`${t.status} in ('queued', 'waiting')`),
    index("runs_lease_idx").on(t.leaseExpiresAt).where(sql`${t.status} = 'running'`),
    index("runs_list_idx").on(t.namespace, t.createdAt.desc(), t.id.desc()),
    index("runs_workflow_list_idx").on(t.namespace, t.workflowName, t.createdAt.desc(), t.id.desc()),
    // The timeout timer's next deadline and the runs it fails: only runs that have not ended.
    index("runs_timeout_idx").on(t.timeoutAt).where(sql`${t.timeoutAt} is not null and ${t.status} in ('queued', 'running', 'waiting', 'paused')`),
    index("runs_parent_idx").on(t.parentRunId).where(sql`${t.parentRunId} is not null`),
    // ListRuns' metadata filter (`metadata @> {...}`). jsonb_path_ops serves only @>, and is smaller and faster for
    // it than the default opclass; an empty metadata object adds no index entries. fastupdate off: with the GIN
    // pending list on, every lookup scans the entries inserted since the last vacuum (7 ms per page with 100k
    // fresh runs, 0.07 ms without); inserting into the tree directly costs runs that carry metadata a little more.
    index("runs_metadata_idx").using("gin", t.metadata.op("jsonb_path_ops")).with({ fastupdate: false }),
    // Flow control. Claims take due runs of nonzero priority from this small index (priority first) and those of
    // priority 0 from runs_due_idx, so ordering by priority never walks parked runs (lease.ts).
    index("runs_due_priority_idx").on(t.priority.desc(), t.availableAt).where(sql`${t.status} in ('queued', 'waiting') and ${t.priority} <> 0`),
    // The claim gate counts a key's running runs and its starts within the rate period; at most `limit` rows each.
    index("runs_concurrency_running_idx").on(t.namespace, t.workflowName, t.concurrencyKey).where(sql`${t.status} = 'running' and ${t.concurrencyLimit} is not null`),
    index("runs_namespace_running_idx").on(t.namespace).where(sql`${t.status} = 'running' and ${t.namespaceMaxRunning} is not null`),
    index("runs_rate_starts_idx").on(t.namespace, t.workflowName, t.rateKey, t.startedAt).where(sql`${t.rateLimit} is not null and ${t.startedAt} is not null`),
    // A key's held runs in release order (GetRun's position counts the ones ahead).
    index("runs_held_idx").on(t.namespace, t.workflowName, t.concurrencyKey, t.priority.desc(), t.createdAt).where(sql`${t.heldBy} = 'concurrency' and ${t.availableAt} is null`),
    index("runs_namespace_held_idx").on(t.namespace, t.priority.desc(), t.createdAt).where(sql`${t.heldBy} = 'namespace' and ${t.availableAt} is null`),
    // Debounce: at most one not-yet-started run per key; a creation inside the period folds into it (ON CONFLICT).
    uniqueIndex("runs_debounce_idx").on(t.namespace, t.workflowName, t.debounceKey).where(sql`${t.debounceKey} is not null and ${t.status} = 'queued' and ${t.startedAt} is null`),
    // Run retention's range scan (oldest ended first) and ListRuns' ended-time filter.
    index("runs_ended_idx").on(t.completedAt).where(sql`${t.status} in ('completed', 'failed', 'cancelled')`),
    // ListRuns' schedule_id filter and a schedule's runs.
    index("runs_schedule_idx").on(t.namespace, t.scheduleId, t.createdAt.desc()).where(sql`${t.scheduleId} is not null`),
  ],
);

export const journalEntries = pgTable(
  "journal_entries",
  {
    runId: uuid()
      .notNull()
      .references(() => runs.id, { onDelete: "cascade" }),
    /** 1, 2, 3... per run, without gaps: the order operations finished in. */
    sequence: integer().notNull(),
    namespace: text().notNull().default("default"),
    kind: text().notNull(),
    /** The operation name; '' for run-level entries. */
    name: text().notNull().default(""),
    /** SQL NULL: no value (a step that returned nothing); JSON null is stored as 'null'. */
    result: jsonb().$type<JsonValue>(),
    error: jsonb().$type<FailureInfo>(),
    attempt: integer().notNull().default(1),
    startedAt: timestamptz("started_at"),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    fireAt: timestamptz("fire_at"),
    timeoutAt: timestamptz("timeout_at"),
    eventType: text(),
    correlationId: text(),
    lookbackFrom: timestamptz("lookback_from"),
    /** event_received: the event consumed; matching skips events a run already consumed. */
    eventId: uuid(),
    targetRunId: uuid(),
    targetTurnId: uuid(),
  },
  (t) => [
    primaryKey({ columns: [t.runId, t.sequence] }),
    index("journal_consumed_events_idx").on(t.runId, t.eventId).where(sql`${t.eventId} is not null`),
  ],
);

/**
 * Every event sent, kept for the retention period: a wait that starts later
 * still finds it (buffering), and many runs may consume the same event (fan-out).
 */
export const events = pgTable(
  "events",
  {
    id: uuid().primaryKey(),
    /** Total order of arrival: "oldest matching event" is the lowest position. */
    position: bigint({ mode: "number" }).generatedAlwaysAsIdentity(),
    namespace: text().notNull().default("default"),
    eventType: text().notNull(),
    correlationId: text().notNull(),
    payload: jsonb().$type<JsonValue>(),
    /** Deliver only to this run. */
    targetRunId: uuid(),
    idempotencyKey: text(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
  },
  (t) => [
    index("events_key_idx").on(t.namespace, t.eventType, t.correlationId, t.position),
    uniqueIndex("events_idempotency_key_idx").on(t.namespace, t.idempotencyKey).where(sql`${t.idempotencyKey} is not null`),
    index("events_created_idx").on(t.createdAt),
  ],
);

/**
 * What each WAITING run is parked on, one row per pending wait, replaced at
 * every suspension. SendEvent finds the runs to wake here by key.
 */
export const waits = pgTable(
  "waits",
  {
    runId: uuid()
      .notNull()
      .references(() => runs.id, { onDelete: "cascade" }),
    name: text().notNull(),
    namespace: text().notNull().default("default"),
    kind: text().$type<"timer" | "event" | "retry" | "child" | "agent">().notNull(),
    eventType: text(),
    correlationId: text(),
    /** Timer fire time or event-wait timeout. */
    deadline: timestamptz("deadline"),
    /** Child waits: the child run whose end wakes this run. */
    targetRunId: uuid(),
    /** Agent waits: the turn whose result wakes this run. */
    targetTurnId: uuid(),
  },
  (t) => [
    primaryKey({ columns: [t.runId, t.name] }),
    index("waits_event_key_idx").on(t.namespace, t.eventType, t.correlationId).where(sql`${t.kind} = 'event'`),
    index("waits_child_idx").on(t.targetRunId).where(sql`${t.kind} = 'child'`),
    index("waits_agent_idx").on(t.targetTurnId).where(sql`${t.kind} = 'agent'`),
  ],
);

export type RunRow = typeof runs.$inferSelect;
export type JournalRow = typeof journalEntries.$inferSelect;
export type EventRow = typeof events.$inferSelect;

export const turnStatuses = ["pending", "leased", "completed", "failed", "cancelled"] as const;
export type TurnStatus = (typeof turnStatuses)[number];

/**
 * Agent turns handed out by ctx.startAgent. A worker leases a turn with a
 * fresh token; results are accepted only with the token of the current lease,
 * so a worker that lost its turn (lease lapsed, turn redelivered) is refused.
 */
export const agentTurns = pgTable(
  "agent_turns",
  {
    /** Derived from the run and the operation name, so a replay finds the turn it created. */
    id: uuid().primaryKey(),
    namespace: text().notNull().default("default"),
    runId: uuid()
      .notNull()
      .references(() => runs.id, { onDelete: "cascade" }),
    workflowName: text().notNull(),
    name: text().notNull(),
    agent: text().notNull(),
    text: text().notNull(),
    params: jsonb().$type<Record<string, JsonValue>>().notNull().default({}),
    status: text().$type<TurnStatus>().notNull().default("pending"),
    /** Deliveries so far. */
    attempt: integer().notNull().default(0),
    leaseToken: uuid(),
    workerId: text(),
    leaseExpiresAt: timestamptz("lease_expires_at"),
    result: jsonb().$type<JsonValue>(),
    error: jsonb().$type<FailureInfo>(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    updatedAt: timestamptz("updated_at").notNull().defaultNow(),
    completedAt: timestamptz("completed_at"),
    /** W3C `traceparent` of the activation that started the turn (tracing on), handed to the worker. */
    traceParent: text(),
  },
  (t) => [
    check("agent_turns_status_check", sql`${t.status} in ('pending', 'leased', 'completed', 'failed', 'cancelled')`),
    index("agent_turns_pending_idx").on(t.namespace, t.agent, t.createdAt).where(sql`${t.status} = 'pending'`),
    index("agent_turns_lease_idx").on(t.leaseExpiresAt).where(sql`${t.status} = 'leased'`),
    index("agent_turns_run_idx").on(t.runId),
  ],
);

export type AgentTurnRow = typeof agentTurns.$inferSelect;

/**
 * Which processes want change notices, per namespace and kind: `target` is
 * 's:<namespace>' (runs created and status changes) or 'e:<namespace>'
 * (journal entries). A process registers a target once, when its first waiter
 * there needs notices from other processes, not per waiter or per run; the
 * triggers notify only for registered targets, so work nobody waits on pays no
 * NOTIFY (a notifying commit takes a cluster-wide lock). Rows of a process
 * that died only cause spare notices until they expire.
 */
export const runWatchers = pgTable(
  "run_watchers",
  {
    process: text().notNull(),
    /** 's:<namespace>' or 'e:<namespace>'. */
    target: text().notNull(),
    expiresAt: timestamptz("expires_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.process, t.target] }), index("run_watchers_target_idx").on(t.target)],
);

export { type ApiKeyRole, apiKeyRoles } from "../core/api-key-roles.js";

/**
 * API keys. A key is `cairn_<id>_<secret>`: the id is stored in the clear (it
 * names the key in logs and in `cairn keys`), the secret only as its SHA-256.
 * A key acts in one namespace with one role; revoking sets `revoked_at` (rows
 * are kept, so a revoked key keeps being refused with a clear message).
 */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: text().primaryKey(),
    namespace: text().notNull(),
    role: text().$type<ApiKeyRole>().notNull(),
    /** Hex SHA-256 of the secret part. */
    secretHash: text().notNull(),
    /** A label for people (`--name`). */
    name: text().notNull().default(""),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    revokedAt: timestamptz("revoked_at"),
    /** Updated in batches (about once a minute), not per request. */
    lastUsedAt: timestamptz("last_used_at"),
  },
  (t) => [
    check("api_keys_role_check", sql`${t.role} in ('admin', 'worker', 'client')`),
    index("api_keys_namespace_idx").on(t.namespace, t.createdAt),
  ],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;

export const batchOperations = ["cancel", "pause", "resume", "retry"] as const;
export type BatchOperation = (typeof batchOperations)[number];
export const batchStatuses = ["running", "completed", "failed"] as const;
export type BatchStatus = (typeof batchStatuses)[number];

/**
 * StartBatch: one operation over the runs a filter selected. The selection is frozen into `batch_items` in the
 * transaction that inserts this row; any server then works through it in chunks under the batch's lease
 * (`lease_owner`, `lease_until`), so a server that dies mid-batch leaves the rest to whoever claims it next.
 */
export const batches = pgTable(
  "batches",
  {
    id: uuid().primaryKey(),
    namespace: text().notNull(),
    operation: text().$type<BatchOperation>().notNull(),
    /** The RunFilter as given (store/runs/read.ts RunFilter, dates as ISO strings), shown by GetBatch. */
    filter: jsonb().$type<Record<string, unknown>>().notNull(),
    reason: text().notNull().default(""),
    status: text().$type<BatchStatus>().notNull().default("running"),
    selectedCount: integer().notNull().default(0),
    processedCount: integer().notNull().default(0),
    skippedCount: integer().notNull().default(0),
    failedCount: integer().notNull().default(0),
    /** Why a failed batch stopped. */
    error: text(),
    leaseOwner: text(),
    leaseUntil: timestamptz("lease_until"),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    finishedAt: timestamptz("finished_at"),
  },
  (t) => [
    check("batches_operation_check", sql`${t.operation} in ('cancel', 'pause', 'resume', 'retry')`),
    check("batches_status_check", sql`${t.status} in ('running', 'completed', 'failed')`),
    // What the runners look for: batches still running, whoever held them.
    index("batches_running_idx").on(t.leaseUntil).where(sql`${t.status} = 'running'`),
    index("batches_list_idx").on(t.namespace, t.createdAt.desc(), t.id.desc()),
  ],
);

export type BatchRow = typeof batches.$inferSelect;
export const batchItemOutcomes = ["pending", "done", "skipped", "failed"] as const;
export type BatchItemOutcome = (typeof batchItemOutcomes)[number];

/**
 * One row per selected run: the primary key makes each run selected once, and its outcome is written in the
 * transaction that changes the run, so a crash never applies it twice. No foreign key to runs: a run deleted
 * meanwhile (retention) is simply not found and counted as failed.
 */
export const batchItems = pgTable(
  "batch_items",
  {
    batchId: uuid()
      .notNull()
      .references(() => batches.id, { onDelete: "cascade" }),
    runId: uuid().notNull(),
    outcome: text().$type<BatchItemOutcome>().notNull().default("pending"),
    error: text(),
  },
  (t) => [
    primaryKey({ columns: [t.batchId, t.runId] }),
    check("batch_items_outcome_check", sql`${t.outcome} in ('pending', 'done', 'skipped', 'failed')`),
    // The next chunk: pending items of one batch, in run id order (the order run rows are locked in).
    index("batch_items_pending_idx").on(t.batchId, t.runId).where(sql`${t.outcome} = 'pending'`),
    index("batch_items_failed_idx").on(t.batchId, t.runId).where(sql`${t.outcome} = 'failed'`),
  ],
);

/**
 * Server processes, as they announce themselves: upserted when a worker starts and at every lease heartbeat,
 * deleted on a clean shutdown. A process that died leaves its row until a sweep drops it; it counts as live
 * only while `last_seen_at` is within its own `lease_ms` (three heartbeats). ExplainRun reads it to say whether
 * any live process has loaded a queued run's workflow, and whether a running run's holder is alive.
 */
export const processes = pgTable(
  "processes",
  {
    /** The worker's lease owner id (host:pid:random), as runs.lease_owner holds it. */
    id: text().primaryKey(),
    host: text().notNull(),
    pid: integer().notNull(),
    /** The workflow names this process loaded (and so claims). */
    workflows: jsonb().$type<string[]>().notNull().default([]),
    version: text().notNull().default(""),
    /** Its lease length: the process is live while last_seen_at is younger than this. */
    leaseMs: integer().notNull(),
    startedAt: timestamptz("started_at").notNull().defaultNow(),
    lastSeenAt: timestamptz("last_seen_at").notNull().defaultNow(),
  },
  (t) => [index("processes_last_seen_idx").on(t.lastSeenAt)],
);

export type ProcessRow = typeof processes.$inferSelect;

export const overlapPolicies = ["skip", "buffer_one", "allow_all", "cancel_other"] as const;
export type OverlapPolicy = (typeof overlapPolicies)[number];

/**
 * Schedules (ScheduleService, or declared in a workflow file). `fire_due_at` is the next nominal fire time plus
 * its jitter, null while paused: each worker's schedule timer sleeps until the earliest one (schedules_due_idx),
 * then claims the due rows FOR UPDATE SKIP LOCKED and, in that transaction, creates their runs (idempotency key
 * "schedule:<id>:<nominal>") and advances `next_fire_at`, so a fire is one run whichever process fires it.
 */
export const schedules = pgTable(
  "schedules",
  {
    namespace: text().notNull(),
    scheduleId: text().notNull(),
    workflowName: text().notNull(),
    input: jsonb().$type<JsonValue>().notNull().default({}),
    metadata: jsonb().$type<Record<string, string>>().notNull().default({}),
    /** Exactly one of cron and every_ms. */
    cron: text(),
    timezone: text().notNull().default("UTC"),
    everyMs: bigint({ mode: "number" }),
    /** `every` fires at anchor_at + k * every_ms. */
    anchorAt: timestamptz("anchor_at").notNull().defaultNow(),
    jitterMs: bigint({ mode: "number" }).notNull().default(0),
    overlap: text().$type<OverlapPolicy>().notNull().default("skip"),
    catchupWindowMs: bigint({ mode: "number" }).notNull().default(60_000),
    paused: boolean().notNull().default(false),
    /** Declared in a workflow file: upserted at server start. */
    declared: boolean().notNull().default(false),
    /** The next nominal fire time; null while paused. */
    nextFireAt: timestamptz("next_fire_at"),
    /** next_fire_at plus its jitter: when the timer fires it; null while paused. */
    fireDueAt: timestamptz("fire_due_at"),
    lastFireAt: timestamptz("last_fire_at"),
    lastRunId: uuid(),
    /** OVERLAP_BUFFER_ONE: the one fire kept while the last run runs, started when it ends. */
    bufferedFireAt: timestamptz("buffered_fire_at"),
    skippedFires: bigint({ mode: "number" }).notNull().default(0),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    updatedAt: timestamptz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.namespace, t.scheduleId] }),
    check("schedules_overlap_check", sql`${t.overlap} in ('skip', 'buffer_one', 'allow_all', 'cancel_other')`),
    check("schedules_kind_check", sql`(${t.cron} is null) <> (${t.everyMs} is null)`),
    index("schedules_due_idx").on(t.fireDueAt).where(sql`${t.fireDueAt} is not null`),
    index("schedules_buffered_idx").on(t.bufferedFireAt).where(sql`${t.bufferedFireAt} is not null`),
  ],
);

export type ScheduleRow = typeof schedules.$inferSelect;
