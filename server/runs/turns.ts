/**
 * Agent turns as workers see them: lease turns (a long poll or a stream),
 * heartbeat long ones, report results. Results are accepted only with the
 * lease token of the current delivery; a worker that lost its turn is refused
 * (TurnLeaseLostError) and must drop its work. A call whose deadline passed
 * writes nothing more, and turns it leased but could not deliver go back.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { TurnLeaseLostError, TurnNotFoundError } from "../core/errors.js";
import type { FailureInfo } from "../core/json.js";
import { claimTurns, finishTurn, heartbeatTurn as renewTurn, heldTurns, type LeaseCheck, releaseTurns, type TurnResult } from "../store/agents.js";
import type { Db } from "../store/database.js";
import type { AgentTurnRow } from "../store/schema.js";
import { checkPayload } from "./payload.js";
import type { Call } from "./runs-deps.js";
import type { TurnBoard } from "./turn-board.js";

export interface TurnsDeps {
  db: Db;
  turnBoard: TurnBoard;
  leaseMs: number;
  maxResultBytes: number;
}

/** Waiters re-check the store at least this often (lost notices, lapsed leases). */
const recheckMs = 1000;

/**
 * Leases turns in the caller's namespace unless the call is over. A passed deadline throws; other ends (client
 * gone, shutdown) get no turns. Turns leased while the call ended go back at once: nobody would receive them.
 */
async function claim(deps: TurnsDeps, call: Call, agents: readonly string[], workerId: string, limit: number): Promise<AgentTurnRow[]> {
  call.throwIfDeadlinePassed();
  if (call.signal.aborted) return [];
  const turns = await claimTurns(deps.db, call.namespace, agents, workerId, deps.leaseMs, limit);
  if (!call.signal.aborted) return turns;
  await releaseTurns(deps.db, turns);
  call.throwIfDeadlinePassed();
  return [];
}

/** Up to `limit` turns, waiting up to `waitMs` for the first. */
export async function pollTurns(deps: TurnsDeps, call: Call, request: { agents: string[]; workerId: string; limit: number; waitMs: number }): Promise<AgentTurnRow[]> {
  const deadline = Date.now() + request.waitMs;
  for (;;) {
    const turns = await claim(deps, call, request.agents, request.workerId, request.limit);
    const remaining = deadline - Date.now();
    if (turns.length > 0 || remaining <= 0 || call.signal.aborted) return turns;
    await deps.turnBoard.wait(request.agents, Math.min(remaining, recheckMs), call.signal);
  }
}

/** Turns as they come, never more than `maxInFlight` leased to this stream at once. */
export async function* receiveTurns(deps: TurnsDeps, call: Call, request: { agents: string[]; workerId: string; maxInFlight: number }): AsyncGenerator<AgentTurnRow> {
  // Turns this stream delivered whose lease it still holds; a finished or lapsed turn frees a slot.
  const outstanding = new Map<string, string>();
  while (!call.signal.aborted) {
    if (outstanding.size > 0) {
      const held = await heldTurns(deps.db, outstanding);
      for (const id of outstanding.keys()) if (!held.has(id)) outstanding.delete(id);
    }
    const turns = await claim(deps, call, request.agents, request.workerId, request.maxInFlight - outstanding.size);
    for (const turn of turns) {
      outstanding.set(turn.id, turn.leaseToken ?? "");
      yield turn;
    }
    if (turns.length === 0) await deps.turnBoard.wait(request.agents, recheckMs, call.signal);
  }
  call.throwIfDeadlinePassed();
}

/** Extends the lease; `cancelRequested` when the run no longer wants the turn (the worker stops cleanly). */
export async function heartbeatTurn(
  deps: TurnsDeps,
  call: Call,
  request: { turnId: string; leaseToken: string },
): Promise<{ cancelRequested: true } | { cancelRequested: false; leaseExpiresAt: Date | null }> {
  call.throwIfDeadlinePassed();
  const check = await renewTurn(deps.db, call.namespace, request.turnId.toLowerCase(), request.leaseToken, deps.leaseMs);
  if (!check.ok) {
    if (check.reason === "cancelled") return { cancelRequested: true };
    throw refusal(request.turnId, check);
  }
  return { cancelRequested: false, leaseExpiresAt: check.row.leaseExpiresAt };
}

export async function completeTurn(deps: TurnsDeps, call: Call, request: { turnId: string; leaseToken: string; result: JsonValue }): Promise<void> {
  checkPayload(request.result, "result", { bytes: deps.maxResultBytes, setting: "CAIRN_MAX_AGENT_RESULT_BYTES" });
  call.throwIfDeadlinePassed();
  await finish(deps, call, request.turnId, request.leaseToken, { status: "completed", result: request.result });
}

export async function failTurn(deps: TurnsDeps, call: Call, request: { turnId: string; leaseToken: string; error: FailureInfo; retryable: boolean }): Promise<void> {
  call.throwIfDeadlinePassed();
  await finish(deps, call, request.turnId, request.leaseToken, { status: "failed", error: request.error, retryable: request.retryable });
}

async function finish(deps: TurnsDeps, call: Call, turnId: string, token: string, outcome: TurnResult): Promise<void> {
  const check = await finishTurn(deps.db, call.namespace, turnId.toLowerCase(), token, outcome);
  if (!check.ok) throw refusal(turnId, check);
}

function refusal(turnId: string, check: Extract<LeaseCheck, { ok: false }>): Error {
  return check.reason === "not_found" ? new TurnNotFoundError(turnId) : new TurnLeaseLostError(turnId, check.reason);
}
