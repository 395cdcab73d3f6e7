/**
 * Agent turns: created by a run, leased by workers, finished by the worker
 * that holds the current lease. Each lease carries a fresh token; completing
 * or failing a turn with a stale token matches nothing, so a worker that lost
 * its turn (lease lapsed, turn redelivered) cannot overwrite the new holder.
 * Finishing a turn wakes the run parked on it, under the same kind of key
 * lock as events and children, so no wake-up is lost.
 */
import { firstOf } from "./first-of.js";
import { and, eq, inArray, sql } from "drizzle-orm";
import type { JsonValue } from "../../sdk/workflow.js";
import type { AgentTurnRequest, TurnOutcome } from "../core/host.js";
import type { FailureInfo } from "../core/json.js";
import type { Db } from "./database.js";
import { type AgentTurnRow, agentTurns } from "./schema.js";

export async function lockTurnKey(db: Db, turnId: string): Promise<void> {
  await db.execute(sql`select pg_advisory_xact_lock(hashtextextended(${JSON.stringify(["turn", turnId])}, 0))`);
}

/** Creates the turn unless it exists (a replaying run asks again); true when created. */
export async function insertTurn(
  db: Db,
  turn: AgentTurnRequest & { namespace: string; runId: string; workflowName: string; traceParent?: string | undefined },
): Promise<boolean> {
  const rows = await db
    .insert(agentTurns)
    .values({
      id: turn.turnId,
      namespace: turn.namespace,
      runId: turn.runId,
      workflowName: turn.workflowName,
      name: turn.name,
      agent: turn.agent,
      text: turn.text,
      params: turn.params,
      traceParent: turn.traceParent ?? null,
    })
    .onConflictDoNothing({ target: agentTurns.id })
    .returning({ id: agentTurns.id });
  return rows.length === 1;
}

/** The first of `turnIds` that a worker finished. */
export async function findTurnOutcome(db: Db, namespace: string, turnIds: readonly string[]): Promise<TurnOutcome | undefined> {
  if (turnIds.length === 0) return undefined;
  const rows = await db
    .select()
    .from(agentTurns)
    .where(and(eq(agentTurns.namespace, namespace), inArray(agentTurns.id, [...turnIds]), inArray(agentTurns.status, ["completed", "failed"])));
  const row = firstOf(rows, turnIds);
  if (!row) return undefined;
  if (row.status === "completed") return { turnId: row.id, agent: row.agent, status: "completed", result: row.result ?? null };
  // A failed turn always has its error (FailTurn requires one); an old row without it still reads as a failure.
  return { turnId: row.id, agent: row.agent, status: "failed", error: row.error ?? { name: "Error", message: "agent turn failed" } };
}

/**
 * Leases up to `limit` turns for these agents: pending ones, and leased ones
 * whose worker stopped heartbeating. Each gets a new token and attempt.
 */
export async function claimTurns(
  db: Db,
  namespace: string,
  agents: readonly string[],
  workerId: string,
  leaseMs: number,
  limit: number,
): Promise<AgentTurnRow[]> {
  if (agents.length === 0 || limit <= 0) return [];
  return db
    .update(agentTurns)
    .set({
      status: "leased",
      leaseToken: sql`gen_random_uuid()`,
      workerId,
      attempt: sql`${agentTurns.attempt} + 1`,
      leaseExpiresAt: sql`now() + ${leaseMs} * interval '1 millisecond'`,
      updatedAt: sql`now()`,
    })
    .where(
      inArray(
        agentTurns.id,
        sql`(select id from agent_turns
             where namespace = ${namespace} and agent in (select jsonb_array_elements_text(${JSON.stringify(agents)}::jsonb))
               and (status = 'pending' or (status = 'leased' and lease_expires_at < now()))
             order by created_at limit ${limit} for update skip locked)`,
      ),
    )
    .returning();
}

export type LeaseCheck = { ok: true; row: AgentTurnRow } | { ok: false; reason: string };

/** Extends a lease held with `token`; tells whether the run wants the turn stopped. */
export async function heartbeatTurn(db: Db, namespace: string, turnId: string, token: string, leaseMs: number): Promise<LeaseCheck> {
  const [row] = await db
    .update(agentTurns)
    .set({ leaseExpiresAt: sql`now() + ${leaseMs} * interval '1 millisecond'`, updatedAt: sql`now()` })
    .where(and(eq(agentTurns.namespace, namespace), eq(agentTurns.id, turnId), eq(agentTurns.leaseToken, token), eq(agentTurns.status, "leased")))
    .returning();
  if (row) return { ok: true, row };
  return { ok: false, reason: await whyRefused(db, namespace, turnId) };
}

export type TurnResult = { status: "completed"; result: JsonValue } | { status: "failed"; error: FailureInfo; retryable: boolean };

/**
 * Records a worker's result if `token` is the current lease's, and wakes the
 * run parked on the turn. A retryable failure puts the turn back for any worker.
 */
export async function finishTurn(db: Db, namespace: string, turnId: string, token: string, outcome: TurnResult): Promise<LeaseCheck> {
  return db.transaction(async (tx) => {
    await lockTurnKey(tx, turnId);
    const held = and(eq(agentTurns.namespace, namespace), eq(agentTurns.id, turnId), eq(agentTurns.leaseToken, token), eq(agentTurns.status, "leased"));
    const changes =
      outcome.status === "completed"
        ? { status: "completed" as const, result: outcome.result, completedAt: sql`now()` }
        : outcome.retryable
          ? { status: "pending" as const, error: outcome.error, leaseToken: null, workerId: null, leaseExpiresAt: null }
          : { status: "failed" as const, error: outcome.error, completedAt: sql`now()` };
    const [row] = await tx
      .update(agentTurns)
      .set({ ...changes, updatedAt: sql`now()` })
      .where(held)
      .returning();
    if (!row) return { ok: false, reason: await whyRefused(tx, namespace, turnId) };
    if (row.status !== "pending") {
      await tx.execute(
        sql`with woken as (
              update runs set available_at = now(), updated_at = now()
              where status = 'waiting' and id in (select run_id from waits where kind = 'agent' and target_turn_id = ${turnId}::uuid)
              returning id)
            select pg_notify('cairn_wake', '') from woken limit 1`,
      );
    }
    return { ok: true, row };
  });
}

/**
 * Hands back turns that were leased to a call that can no longer deliver them (its deadline passed): they are
 * pending again at once, with the attempt undone, instead of waiting for their lease to lapse.
 */
export async function releaseTurns(db: Db, turns: readonly Pick<AgentTurnRow, "id" | "leaseToken">[]): Promise<void> {
  for (const turn of turns) {
    if (!turn.leaseToken) continue;
    await db
      .update(agentTurns)
      .set({ status: "pending", leaseToken: null, workerId: null, leaseExpiresAt: null, attempt: sql`${agentTurns.attempt} - 1`, updatedAt: sql`now()` })
      .where(and(eq(agentTurns.id, turn.id), eq(agentTurns.leaseToken, turn.leaseToken), eq(agentTurns.status, "leased")));
  }
}

/** Stops a cancelled run's turns: workers learn it from their next heartbeat. */
export async function cancelTurnsOf(db: Db, runId: string): Promise<void> {
  await db
    .update(agentTurns)
    .set({ status: "cancelled", updatedAt: sql`now()` })
    .where(and(eq(agentTurns.runId, runId), inArray(agentTurns.status, ["pending", "leased"])));
}

async function whyRefused(db: Db, namespace: string, turnId: string): Promise<string> {
  const [row] = await db
    .select({ status: agentTurns.status })
    .from(agentTurns)
    .where(and(eq(agentTurns.namespace, namespace), eq(agentTurns.id, turnId)));
  if (!row) return "not_found";
  if (row.status === "leased" || row.status === "pending") return "lease_lost";
  return row.status;
}

/** Of these turns (id → lease token), the ones whose lease that token still holds. */
export async function heldTurns(db: Db, tokens: ReadonlyMap<string, string>): Promise<Set<string>> {
  const rows = await db
    .select({ id: agentTurns.id, token: agentTurns.leaseToken, status: agentTurns.status, expires: agentTurns.leaseExpiresAt })
    .from(agentTurns)
    .where(inArray(agentTurns.id, [...tokens.keys()]));
  const now = Date.now();
  return new Set(rows.filter((row) => row.status === "leased" && row.token === tokens.get(row.id) && (row.expires?.getTime() ?? 0) > now).map((row) => row.id));
}
