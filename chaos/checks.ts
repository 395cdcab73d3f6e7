/**
 * What the chaos run verifies once every run has settled, from the database
 * itself (the runs, journal, events, waits and agent_turns tables, and the
 * chaos ledger):
 *
 * (a) every accepted run, and every child it started, COMPLETED with the
 *     output its input determines; no run exists that nobody asked for;
 * (b) the ledger agrees with the journal: the execution id a step_completed
 *     entry holds was recorded by that (run, step), and no execution of that
 *     (run, step) started after the entry committed (re-executions that
 *     started before are the legal at-least-once ones: counted);
 * (c) every event the driver sent is stored once and was consumed exactly
 *     once, by the run and the wait it was meant for;
 * (e) nothing is left over: no run is running or leased, no waits rows,
 *     every agent turn completed.
 * (d), no stuck run, is the settle phase in run.ts.
 */
import { isDeepStrictEqual } from "node:util";
import type pg from "pg";
import { expectedOutput, workflowNames, type AnyInput, type WorkloadKind } from "./model.js";

export interface AcceptedRun {
  index: number;
  kind: WorkloadKind;
  runId: string;
  key: string;
  workflowName: string;
  input: AnyInput;
  deduplicated: boolean;
}

export interface SentEvent {
  runId: string;
  wait: string;
  eventId: string;
  key: string;
  targeted: boolean;
}

export interface CheckFigures {
  runs: number;
  topLevelRuns: number;
  childRuns: number;
  runsByWorkflow: Record<string, number>;
  journalEntries: number;
  stepsJournaled: number;
  ledgerExecutions: number;
  reExecutions: number;
  /** Re-executions that started after the execution whose result was journaled had started (a stale holder still running). */
  reExecutionsConcurrent: number;
  /** (run, step) pairs that executed more than once. */
  stepsReExecuted: number;
  failedAttempts: number;
  activations: number;
  maxActivations: number;
  eventsSent: number;
  eventsBeforeWait: number;
  eventsAfterWait: number;
  eventsTargeted: number;
  agentTurns: number;
  agentTurnsRedelivered: number;
  sequenceGaps: number;
  lost: number;
  duplicated: number;
}

export interface CheckResult {
  violations: string[];
  figures: CheckFigures;
}

interface RunRow {
  id: string;
  workflow_name: string;
  status: string;
  input: unknown;
  output: unknown;
  error: unknown;
  parent_run_id: string | null;
  idempotency_key: string | null;
  lease_owner: string | null;
  activation_count: number;
}

interface EntryRow {
  run_id: string;
  sequence: number;
  kind: string;
  name: string;
  result: unknown;
  event_id: string | null;
  created_at: Date;
  committed_at: Date | null;
}

interface LedgerRow {
  exec_id: string;
  run_id: string;
  step: string;
  attempt: number;
  started_at: Date;
  server: string;
  pid: number;
}

const childrenPerWorkflow: Record<string, number> = {
  [workflowNames.parent]: 2,
  [workflowNames.mixed]: 1,
};

const agentTurnsPerWorkflow: Record<string, number> = {
  [workflowNames.agent]: 1,
  [workflowNames.mixed]: 1,
};

export async function verify(
  query: <T>(text: string, values?: unknown[]) => Promise<T[]>,
  accepted: readonly AcceptedRun[],
  sent: readonly SentEvent[],
  unansweredKeys: ReadonlySet<string>,
  /** The poison runs (checked apart: they must end paused, see run.ts). */
  poisonIds: ReadonlySet<string> = new Set(),
): Promise<CheckResult> {
  const violations: string[] = [];
  const violate = (message: string) => {
    if (violations.length < 500) violations.push(message);
    else if (violations.length === 500) violations.push("… (more violations not shown)");
  };
  let lost = 0;
  let duplicated = 0;

  const runs = await query<RunRow>(
    `select id, workflow_name, status, input, output, error, parent_run_id, idempotency_key, lease_owner, activation_count from runs`,
  );
  const entries = await query<EntryRow>(
    `select run_id, sequence, kind, name, result, event_id, created_at, pg_xact_commit_timestamp(xmin) as committed_at
     from journal_entries order by run_id, sequence`,
  );
  const ledger = await query<LedgerRow>(`select exec_id, run_id, step, attempt, started_at, server, pid from chaos_ledger`);
  const events = await query<{ id: string; idempotency_key: string | null; created_at: Date; target_run_id: string | null }>(
    `select id, idempotency_key, created_at, target_run_id from events`,
  );
  const leftoverWaits = await query<{ run_id: string; name: string; kind: string; status: string }>(
    `select w.run_id, w.name, w.kind, r.status from waits w join runs r on r.id = w.run_id`,
  );
  const turns = await query<{ id: string; run_id: string; status: string; attempt: number }>(`select id, run_id, status, attempt from agent_turns`);

  const runsById = new Map(runs.map((r) => [r.id, r]));
  const entriesByRun = new Map<string, EntryRow[]>();
  for (const entry of entries) {
    const list = entriesByRun.get(entry.run_id) ?? [];
    list.push(entry);
    entriesByRun.set(entry.run_id, list);
  }
  const childrenOf = new Map<string, RunRow[]>();
  for (const run of runs) {
    if (!run.parent_run_id) continue;
    const list = childrenOf.get(run.parent_run_id) ?? [];
    list.push(run);
    childrenOf.set(run.parent_run_id, list);
  }

  // (a) accepted runs and their children: completed, with the right output.
  const checkOutcome = (run: RunRow, what: string) => {
    if (run.status !== "completed") {
      lost++;
      violate(`${what} ${run.id} (${run.workflow_name}) is ${run.status}, not completed${run.error ? `: ${JSON.stringify(run.error)}` : ""}`);
      return;
    }
    let expected: unknown;
    try {
      expected = expectedOutput(run.workflow_name, run.input);
    } catch (error) {
      violate(`${what} ${run.id}: ${(error as Error).message}`);
      return;
    }
    if (!isDeepStrictEqual(run.output, expected)) {
      violate(`${what} ${run.id} (${run.workflow_name}) completed with the wrong output: ${JSON.stringify(run.output)}; expected ${JSON.stringify(expected)}`);
    }
  };
  const acceptedIds = new Set<string>();
  const byKey = new Map<string, AcceptedRun>();
  for (const run of accepted) {
    if (acceptedIds.has(run.runId)) {
      const other = accepted.find((r) => r.runId === run.runId && r !== run);
      duplicated++;
      violate(`CreateRun #${run.index} (key ${run.key}) and #${other?.index} (key ${other?.key}) were answered with the same run ${run.runId}`);
    }
    acceptedIds.add(run.runId);
    byKey.set(run.key, run);
    const row = runsById.get(run.runId);
    if (!row) {
      lost++;
      violate(`accepted run ${run.runId} (CreateRun #${run.index}, ${run.workflowName}) is not in the database`);
      continue;
    }
    if (row.workflow_name !== run.workflowName || !isDeepStrictEqual(row.input, run.input)) {
      violate(`run ${run.runId} holds ${row.workflow_name} ${JSON.stringify(row.input)}, but CreateRun #${run.index} asked for ${run.workflowName} ${JSON.stringify(run.input)}`);
    }
    if (row.idempotency_key !== run.key) violate(`run ${run.runId} has idempotency key ${row.idempotency_key}, expected ${run.key}`);
    checkOutcome(row, "run");
  }
  let childRuns = 0;
  for (const run of runs) {
    if (run.parent_run_id) {
      childRuns++;
      if (!runsById.has(run.parent_run_id)) violate(`child run ${run.id} has a parent ${run.parent_run_id} that does not exist`);
      checkOutcome(run, "child run");
      continue;
    }
    if (acceptedIds.has(run.id) || poisonIds.has(run.id)) continue;
    if (run.idempotency_key && unansweredKeys.has(run.idempotency_key)) {
      // A CreateRun the driver gave up on, which the server had accepted after all: it must still complete.
      checkOutcome(run, "run (CreateRun never answered OK)");
      continue;
    }
    duplicated++;
    violate(`run ${run.id} (${run.workflow_name}, key ${run.idempotency_key}) exists but no CreateRun was answered with it`);
  }
  for (const run of runs) {
    const want = childrenPerWorkflow[run.workflow_name] ?? 0;
    const have = childrenOf.get(run.id)?.length ?? 0;
    if (have !== want) {
      if (have > want) duplicated++;
      else lost++;
      violate(`run ${run.id} (${run.workflow_name}) has ${have} child runs, expected ${want}`);
    }
  }

  // The journal: one end per run, each operation's outcome at most once.
  let sequenceGaps = 0;
  let failedAttempts = 0;
  const outcomeKinds = new Set([
    "step_completed", "step_failed", "timer_fired", "event_received", "event_wait_timed_out", "child_started",
    "child_completed", "child_failed", "agent_turn_started", "agent_turn_completed", "agent_turn_failed",
  ]);
  for (const [runId, list] of entriesByRun) {
    const ends = list.filter((e) => e.kind === "run_completed" || e.kind === "run_failed" || e.kind === "run_cancelled");
    const run = runsById.get(runId);
    if (run && ["completed", "failed", "cancelled"].includes(run.status) && ends.length !== 1) {
      violate(`run ${runId} has ${ends.length} end entries in its journal`);
    }
    const seen = new Set<string>();
    for (const entry of list) {
      if (entry.kind === "step_attempt_failed") failedAttempts++;
      if (entry.kind === "step_failed") violate(`run ${runId}: step ${entry.name} failed for good: ${JSON.stringify(entry.result)}`);
      if (!outcomeKinds.has(entry.kind)) continue;
      const id = `${entry.kind}\0${entry.name}`;
      if (seen.has(id)) {
        duplicated++;
        violate(`run ${runId}: ${entry.kind} "${entry.name}" is journaled twice`);
      }
      seen.add(id);
    }
    sequenceGaps += (list.at(-1)?.sequence ?? 0) - list.length;
  }

  // (b) the ledger against the journal.
  const ledgerByStep = new Map<string, LedgerRow[]>();
  const ledgerByExec = new Map<string, LedgerRow>();
  for (const row of ledger) {
    const id = `${row.run_id}\0${row.step}`;
    const list = ledgerByStep.get(id) ?? [];
    list.push(row);
    ledgerByStep.set(id, list);
    ledgerByExec.set(row.exec_id, row);
  }
  let stepsJournaled = 0;
  let reExecutionsConcurrent = 0;
  let stepsReExecuted = 0;
  let missingCommitTimes = 0;
  const journaledSteps = new Set<string>();
  for (const entry of entries) {
    if (entry.kind !== "step_completed") continue;
    stepsJournaled++;
    const id = `${entry.run_id}\0${entry.name}`;
    journaledSteps.add(id);
    const exec = (entry.result as { exec?: unknown } | null)?.exec;
    const executions = ledgerByStep.get(id) ?? [];
    const journaled = typeof exec === "string" ? ledgerByExec.get(exec) : undefined;
    if (!journaled || journaled.run_id !== entry.run_id || journaled.step !== entry.name) {
      violate(`run ${entry.run_id}: step ${entry.name} journaled execution ${String(exec)}, which the ledger does not have for this step (it has ${executions.length})`);
      continue;
    }
    if (executions.length > 1) stepsReExecuted++;
    const committedAt = entry.committed_at ?? entry.created_at;
    if (!entry.committed_at) missingCommitTimes++;
    for (const row of executions) {
      if (row.exec_id === journaled.exec_id) continue;
      if (row.started_at.getTime() > committedAt.getTime()) {
        duplicated++;
        violate(
          `run ${entry.run_id}: step ${entry.name} ran again after its result was journaled: execution ${row.exec_id} ` +
            `(server ${row.server}, pid ${row.pid}, attempt ${row.attempt}) started at ${row.started_at.toISOString()}, ` +
            `the journal entry (execution ${journaled.exec_id}) committed at ${committedAt.toISOString()}`,
        );
      } else if (row.started_at.getTime() > journaled.started_at.getTime()) {
        reExecutionsConcurrent++;
      }
    }
  }
  if (missingCommitTimes > 0) violate(`${missingCommitTimes} journal entries have no commit timestamp (is track_commit_timestamp on?)`);
  for (const [id, rows] of ledgerByStep) {
    if (journaledSteps.has(id)) continue;
    const [runId, step] = id.split("\0");
    const run = runsById.get(runId!);
    if (run?.status === "completed") violate(`run ${runId}: step ${step} executed ${rows.length}× but its completion was never journaled, yet the run completed`);
  }

  // (c) events: stored once each, consumed exactly once, by the run and wait they were meant for.
  const eventsById = new Map(events.map((e) => [e.id, e]));
  const consumers = new Map<string, EntryRow[]>();
  for (const entry of entries) {
    if (entry.kind !== "event_received" || !entry.event_id) continue;
    const list = consumers.get(entry.event_id) ?? [];
    list.push(entry);
    consumers.set(entry.event_id, list);
  }
  let eventsBeforeWait = 0;
  let eventsAfterWait = 0;
  const sentKeys = new Set(sent.map((s) => s.key));
  for (const event of sent) {
    const stored = eventsById.get(event.eventId);
    if (!stored) {
      lost++;
      violate(`event ${event.eventId} (for run ${event.runId}, wait ${event.wait}) was answered OK but is not stored`);
      continue;
    }
    const taken = consumers.get(event.eventId) ?? [];
    if (taken.length !== 1 || taken[0]!.run_id !== event.runId || taken[0]!.name !== event.wait) {
      if (taken.length === 0) lost++;
      else if (taken.length > 1) duplicated++;
      violate(
        `event ${event.eventId} for run ${event.runId} wait "${event.wait}" was consumed by ${
          taken.map((t) => `${t.run_id} "${t.name}"`).join(", ") || "nobody"
        }`,
      );
      continue;
    }
    const started = entriesByRun.get(event.runId)?.find((e) => e.kind === "event_wait_started" && e.name === event.wait);
    if (started && stored.created_at.getTime() < (started.committed_at ?? started.created_at).getTime()) eventsBeforeWait++;
    else eventsAfterWait++;
  }
  for (const event of events) {
    // A SendEvent the driver gave up on may have been stored after all; that is no duplicate.
    if (event.idempotency_key && !sentKeys.has(event.idempotency_key) && !unansweredKeys.has(event.idempotency_key)) {
      duplicated++;
      violate(`event ${event.id} (key ${event.idempotency_key}) is stored but the driver never had it answered`);
    }
  }
  const keyCounts = new Map<string, number>();
  for (const event of events) if (event.idempotency_key) keyCounts.set(event.idempotency_key, (keyCounts.get(event.idempotency_key) ?? 0) + 1);
  for (const [key, n] of keyCounts) if (n > 1) violate(`idempotency key ${key} stored ${n} events`);

  // (e) nothing left over.
  for (const run of runs) {
    if (run.status === "running" || run.lease_owner !== null) violate(`run ${run.id} is still ${run.status} with lease owner ${run.lease_owner}`);
  }
  for (const wait of leftoverWaits) violate(`waits row "${wait.name}" (${wait.kind}) remains for run ${wait.run_id}, which is ${wait.status}`);
  let expectedTurns = 0;
  for (const run of runs) expectedTurns += agentTurnsPerWorkflow[run.workflow_name] ?? 0;
  if (turns.length !== expectedTurns) violate(`${turns.length} agent turns exist, expected ${expectedTurns}`);
  for (const turn of turns) if (turn.status !== "completed") violate(`agent turn ${turn.id} of run ${turn.run_id} is ${turn.status}`);

  const runsByWorkflow: Record<string, number> = {};
  for (const run of runs) runsByWorkflow[run.workflow_name] = (runsByWorkflow[run.workflow_name] ?? 0) + 1;
  return {
    violations,
    figures: {
      runs: runs.length,
      topLevelRuns: runs.length - childRuns,
      childRuns,
      runsByWorkflow,
      journalEntries: entries.length,
      stepsJournaled,
      ledgerExecutions: ledger.length,
      reExecutions: ledger.length - stepsJournaled,
      reExecutionsConcurrent,
      stepsReExecuted,
      failedAttempts,
      activations: runs.reduce((sum, r) => sum + r.activation_count, 0),
      maxActivations: Math.max(0, ...runs.map((r) => r.activation_count)),
      eventsSent: sent.length,
      eventsBeforeWait,
      eventsAfterWait,
      eventsTargeted: sent.filter((s) => s.targeted).length,
      agentTurns: turns.length,
      agentTurnsRedelivered: turns.filter((t) => t.attempt > 1).length,
      sequenceGaps,
      lost,
      duplicated,
    },
  };
}
