/**
 * cairn.v1.AgentService: agent workers lease turns (long poll or stream),
 * heartbeat long ones, and report results. Results are accepted only with the
 * lease token of the current delivery; a worker that lost its turn is refused
 * with FAILED_PRECONDITION and must drop its work. Requests arrive checked
 * against their proto rules (`validation.ts`). A call whose deadline passed
 * writes nothing more, and turns it leased but could not deliver go back.
 */
import { create } from "@bufbuild/protobuf";
import { inArray } from "drizzle-orm";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type AgentService,
  type AgentTurn,
  AgentTurnSchema,
  CompleteTurnResponseSchema,
  FailTurnResponseSchema,
  HeartbeatTurnResponseSchema,
  PollTurnsResponseSchema,
  ReceiveTurnsResponseSchema,
} from "../../sdk/gen/cairn/v1/agent_pb.js";
import type { Value } from "@bufbuild/protobuf/wkt";
import type { JsonValue } from "../../sdk/workflow.js";
import { InvalidInputError, PayloadTooLargeError } from "../core/errors.js";
import { requestJsonProblem } from "../core/json.js";
import type { TurnBoard } from "../runs/turn-board.js";
import { claimTurns, finishTurn, heartbeatTurn, type LeaseCheck, releaseTurns, type TurnResult } from "../store/agents.js";
import type { Db } from "../store/database.js";
import { type AgentTurnRow, agentTurns } from "../store/schema.js";
import { callerOf } from "./auth.js";
import { valueToJson } from "./convert.js";
import { throwIfDeadlinePassed } from "./deadline.js";

export interface AgentServiceDeps {
  db: Db;
  turnBoard: TurnBoard;
  leaseMs: number;
  maxResultBytes: number;
}

/** Waiters re-check the store at least this often (lost notices, lapsed leases). */
const recheckMs = 1000;

export function createAgentService(deps: AgentServiceDeps): ServiceImpl<typeof AgentService> {
  const { db } = deps;

  /**
   * Leases turns in the caller's namespace unless the call is over. A passed deadline throws DEADLINE_EXCEEDED; other
   * ends (client gone, shutdown) get no turns. Turns leased while the call ended go back at once: nobody would receive them.
   */
  const claim = async (context: HandlerContext, agents: readonly string[], workerId: string, limit: number) => {
    const signal = context.signal;
    throwIfDeadlinePassed(signal);
    if (signal.aborted) return [];
    const turns = await claimTurns(db, callerOf(context).namespace, agents, workerId, deps.leaseMs, limit);
    if (!signal.aborted) return turns;
    await releaseTurns(db, turns);
    throwIfDeadlinePassed(signal);
    return [];
  };

  return {
    async pollTurns(request, context) {
      const agents = request.agents;
      const limit = bounded(request.maxTurns, 1, 100);
      const waitMs = bounded(request.waitSeconds, 20, 60) * 1000;
      const workerId = request.workerId || "anonymous";
      const deadline = Date.now() + waitMs;
      for (;;) {
        // A call deadline before wait_seconds ends the poll with DEADLINE_EXCEEDED (the claim throws it).
        const turns = await claim(context, agents, workerId, limit);
        const remaining = deadline - Date.now();
        if (turns.length > 0 || remaining <= 0 || context.signal.aborted) {
          return create(PollTurnsResponseSchema, { turns: turns.map(turnToProto) });
        }
        await deps.turnBoard.wait(agents, Math.min(remaining, recheckMs), context.signal);
      }
    },

    async *receiveTurns(request, context: HandlerContext) {
      const agents = request.agents;
      const maxInFlight = bounded(request.maxInFlight, 1, 100);
      const workerId = request.workerId || "anonymous";
      // Turns this stream delivered whose lease it still holds; a finished or lapsed turn frees a slot.
      const outstanding = new Map<string, string>();
      while (!context.signal.aborted) {
        await pruneFinished(db, outstanding);
        const turns = await claim(context, agents, workerId, maxInFlight - outstanding.size);
        for (const turn of turns) {
          outstanding.set(turn.id, turn.leaseToken ?? "");
          yield create(ReceiveTurnsResponseSchema, { turn: turnToProto(turn) });
        }
        if (turns.length === 0) await deps.turnBoard.wait(agents, recheckMs, context.signal);
      }
      throwIfDeadlinePassed(context.signal);
    },

    async heartbeatTurn(request, context) {
      throwIfDeadlinePassed(context.signal);
      const check = await heartbeatTurn(db, callerOf(context).namespace, requireId(request.turnId), request.leaseToken, deps.leaseMs);
      if (!check.ok) {
        // A cancelled run's turn: say so instead of an error, so the worker stops cleanly.
        if (check.reason === "cancelled") return create(HeartbeatTurnResponseSchema, { cancelRequested: true });
        throw refusal(request.turnId, check);
      }
      return create(HeartbeatTurnResponseSchema, {
        leaseExpiresAt: check.row.leaseExpiresAt ? timestampFromDate(check.row.leaseExpiresAt) : undefined,
        cancelRequested: false,
      });
    },

    async completeTurn(request, context) {
      const result: JsonValue = request.result ? jsonOf(request.result, "result") : null;
      const text = JSON.stringify(result);
      const size = Buffer.byteLength(text);
      if (size > deps.maxResultBytes) throw new PayloadTooLargeError("result", size, deps.maxResultBytes, "CAIRN_MAX_AGENT_RESULT_BYTES");
      const problem = requestJsonProblem(result, text, "result");
      if (problem) throw new InvalidInputError(problem);
      throwIfDeadlinePassed(context.signal);
      await finish(context, request.turnId, request.leaseToken, { status: "completed", result });
      return create(CompleteTurnResponseSchema, {});
    },

    async failTurn(request, context) {
      const error = {
        name: request.error?.name || "AgentError",
        message: request.error?.message || "the agent failed the turn",
        ...(request.error?.stack ? { stack: request.error.stack } : {}),
      };
      throwIfDeadlinePassed(context.signal);
      await finish(context, request.turnId, request.leaseToken, { status: "failed", error, retryable: request.retryable });
      return create(FailTurnResponseSchema, {});
    },
  };

  async function finish(context: HandlerContext, turnId: string, token: string, outcome: TurnResult): Promise<void> {
    const check = await finishTurn(db, callerOf(context).namespace, requireId(turnId), token, outcome);
    if (!check.ok) throw refusal(turnId, check);
  }
}

async function pruneFinished(db: Db, outstanding: Map<string, string>): Promise<void> {
  if (outstanding.size === 0) return;
  const rows = await db
    .select({ id: agentTurns.id, token: agentTurns.leaseToken, status: agentTurns.status, expires: agentTurns.leaseExpiresAt })
    .from(agentTurns)
    .where(inArray(agentTurns.id, [...outstanding.keys()]));
  const now = Date.now();
  for (const row of rows) {
    const held = row.status === "leased" && row.token === outstanding.get(row.id) && (row.expires?.getTime() ?? 0) > now;
    if (!held) outstanding.delete(row.id);
  }
}

function refusal(turnId: string, check: Extract<LeaseCheck, { ok: false }>): ConnectError {
  if (check.reason === "not_found") return new ConnectError(`turn "${turnId}" not found`, Code.NotFound);
  const why =
    check.reason === "lease_lost"
      ? "this worker's lease on it lapsed and the turn was delivered again"
      : `the turn is already ${check.reason}`;
  return new ConnectError(`turn ${turnId} refused: ${why}; drop this result`, Code.FailedPrecondition);
}

function turnToProto(row: AgentTurnRow): AgentTurn {
  return create(AgentTurnSchema, {
    turnId: row.id,
    agent: row.agent,
    text: row.text,
    params: row.params as never,
    runId: row.runId,
    workflowName: row.workflowName,
    name: row.name,
    attempt: row.attempt,
    leaseToken: row.leaseToken ?? "",
    leaseExpiresAt: row.leaseExpiresAt ? timestampFromDate(row.leaseExpiresAt) : undefined,
    createdAt: timestampFromDate(row.createdAt),
  });
}

/** Turn ids are UUIDs (the proto rules check the format); stored in lower case. */
function requireId(turnId: string): string {
  return turnId.toLowerCase();
}

/** 0 asks for the default; the proto rules refuse negative values. */
function bounded(value: number, fallback: number, max: number): number {
  return value === 0 ? fallback : Math.min(value, max);
}

/** A protobuf Value that carries no JSON (no kind set, NaN, Infinity) is the caller's mistake. */
function jsonOf(value: Value, field: string): JsonValue {
  try {
    return valueToJson(value);
  } catch (error) {
    throw new InvalidInputError(`${field} is not a JSON value: ${(error as Error).message}`);
  }
}
