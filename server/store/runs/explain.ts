/**
 * The reads behind ExplainRun: everything the database knows about why a run is where it is, gathered in a
 * handful of small indexed queries (the run, its waits rows, the few journal entries that say what it waits
 * with, near-miss events of each event wait's type, its queue position, the processes that loaded its
 * workflow and the one holding it). Read-only, no locks: a snapshot that may be a moment old by the time
 * it is shown, which is all an explanation needs.
 */
import { sql } from "drizzle-orm";
import type { WaitRecord } from "../../core/waits.js";
import { type Db, queryRows } from "../database.js";
import { liveProcesses, processById } from "../processes.js";
import type { ProcessRow, RunRow } from "../schema.js";
import { selectRun } from "./rows.js";

/** Stored events of an event wait's type that are candidates for a near miss (the classification is pure: explain-lines.ts). */
const nearMissCandidates = 20;

export interface StoredEventFacts {
  id: string;
  eventType: string;
  correlationId: string;
  targetRunId: string | null;
  createdAt: Date;
  /** This run's journal already references it (an earlier wait consumed it). */
  consumedByRun: boolean;
}

export interface WaitFacts {
  record: WaitRecord;
  /** Event waits: the wait's lookback start, from its `event_wait_started` entry (absent: all events count). */
  lookbackFrom?: Date | undefined;
  /** Event waits: stored events of the type, those with the wait's correlation id first, newest first. */
  events: StoredEventFacts[];
}

export interface RunFacts {
  run: RunRow;
  waits: WaitFacts[];
  /** QUEUED, or WAITING and due: claimable runs with an earlier available_at. */
  runsAhead?: number | undefined;
  /** Live processes that loaded the run's workflow. */
  loadedBy: ProcessRow[];
  /** RUNNING: the lease holder's processes row, with whether it is live (absent: unknown process). */
  holder?: (ProcessRow & { live: boolean }) | undefined;
  /** The message of the last `run_paused` entry. */
  pauseReason?: string | undefined;
  /** The database's clock when read. */
  now: Date;
  /** QUEUED and held back by flow control: its gate, key and place in line (store/runs/flow-hold.ts). */
  flowHold?: FlowHold | undefined;
}

import type { FlowHold } from "./flow-hold.js";

export async function runFacts(db: Db, namespace: string, runId: string): Promise<RunFacts | undefined> {
  const run = await selectRun(db, namespace, runId);
  if (!run) return undefined;
  // Independent reads, in parallel (each is one small indexed query on its own pooled connection).
  const [[clock], markers, live, holder, ahead] = await Promise.all([
    queryRows<{ now: Date }>(db, sql`select now() as now`),
    queryRows<Marker>(
      db,
      sql`select kind, name, attempt, lookback_from, error->>'message' as message from journal_entries
          where run_id = ${runId}::uuid and kind in ('event_wait_started', 'step_attempt_failed', 'run_paused')
          order by sequence`,
    ),
    liveProcesses(db),
    run.status === "running" && run.leaseOwner ? processById(db, run.leaseOwner) : undefined,
    run.status === "queued" || run.status === "waiting"
      ? queryRows<{ ahead: string; due: boolean }>(
          db,
          // The claim takes due queued and waiting runs by available_at (rows.ts, claimRunsSql): these come first.
          sql`select count(*) as ahead, ${run.availableAt?.toISOString() ?? null}::timestamptz <= now() as due from runs
              where status in ('queued', 'waiting') and available_at <= now() and available_at < ${run.availableAt?.toISOString() ?? null}::timestamptz`,
        )
      : undefined,
  ]);
  const facts: RunFacts = {
    run,
    waits: [],
    loadedBy: live.filter((p) => p.workflows.includes(run.workflowName)),
    holder,
    now: clock ? new Date(clock.now) : new Date(),
  };
  const paused = markers.filter((m) => m.kind === "run_paused").at(-1);
  if (paused) facts.pauseReason = paused.message ?? "";
  // A queued run has a place in the claim order; a waiting one only once it is due.
  const [position] = ahead ?? [];
  if (position && (run.status === "queued" || position.due)) facts.runsAhead = Number(position.ahead);
  if (run.status === "waiting" || run.status === "paused") facts.waits = await waitFacts(db, run, markers);
  return facts;
}

type Marker = { kind: string; name: string; attempt: number; lookback_from: Date | null; message: string | null };

/** The run's pending waits: its waits rows (every kind but pure clock parking), else its `waiting_on`. */
async function waitFacts(db: Db, run: RunRow, markers: Marker[]): Promise<WaitFacts[]> {
  const rows = await queryRows<{
    name: string;
    kind: WaitRecord["kind"];
    event_type: string | null;
    correlation_id: string | null;
    deadline: Date | null;
    target_run_id: string | null;
    target_turn_id: string | null;
    agent: string | null;
  }>(
    db,
    sql`select w.name, w.kind, w.event_type, w.correlation_id, w.deadline, w.target_run_id, w.target_turn_id, t.agent
        from waits w left join agent_turns t on t.id = w.target_turn_id
        where w.run_id = ${run.id}::uuid order by w.name`,
  );
  const iso = (date: Date | null) => (date ? new Date(date).toISOString() : undefined);
  const records: WaitRecord[] =
    rows.length === 0
      ? run.waitingOn
        ? [run.waitingOn]
        : []
      : rows.map((row): WaitRecord => {
          if (run.waitingOn?.name === row.name) return run.waitingOn;
          switch (row.kind) {
            case "timer":
              return { kind: "timer", name: row.name, fireAt: iso(row.deadline) ?? "" };
            case "retry": {
              const failed = markers.filter((m) => m.kind === "step_attempt_failed" && m.name === row.name).at(-1);
              return { kind: "retry", name: row.name, retryAt: iso(row.deadline) ?? "", nextAttempt: (failed?.attempt ?? 0) + 1 };
            }
            case "event":
              return { kind: "event", name: row.name, eventType: row.event_type ?? "", correlationId: row.correlation_id ?? "", ...(row.deadline ? { timeoutAt: iso(row.deadline)! } : {}) };
            case "child":
              return { kind: "child", name: row.name, childRunId: row.target_run_id ?? "" };
            case "agent":
              return { kind: "agent", name: row.name, turnId: row.target_turn_id ?? "", agent: row.agent ?? "", ...(row.deadline ? { timeoutAt: iso(row.deadline)! } : {}) };
          }
        });
  return Promise.all(
    records.map(async (record): Promise<WaitFacts> => {
      if (record.kind !== "event") return { record, events: [] };
      const started = markers.filter((m) => m.kind === "event_wait_started" && m.name === record.name).at(-1);
      const events = await queryRows<{ id: string; event_type: string; correlation_id: string; target_run_id: string | null; created_at: Date; consumed: boolean }>(
        db,
        // events_key_idx serves the same-key part; other correlation ids of the type come from a bounded scan.
        sql`select e.id, e.event_type, e.correlation_id, e.target_run_id, e.created_at,
                   exists (select 1 from journal_entries j where j.run_id = ${run.id}::uuid and j.event_id = e.id) as consumed
            from events e
            where e.namespace = ${run.namespace} and e.event_type = ${record.eventType}
            order by (e.correlation_id = ${record.correlationId}) desc, e.position desc
            limit ${nearMissCandidates}`,
      );
      return {
        record,
        lookbackFrom: started?.lookback_from ? new Date(started.lookback_from) : undefined,
        events: events.map((e) => ({
          id: e.id,
          eventType: e.event_type,
          correlationId: e.correlation_id,
          targetRunId: e.target_run_id,
          createdAt: new Date(e.created_at),
          consumedByRun: e.consumed,
        })),
      };
    }),
  );
}
