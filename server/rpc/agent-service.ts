/**
 * cairn.v1.AgentService: a thin transport over the runs service's turns
 * (server/runs/turns.ts). Requests arrive checked against their proto rules
 * (`validation.ts`); domain errors (a lost lease, an unknown turn) are mapped to
 * Connect codes by the error-mapping interceptor.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
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
import { completeTurn, failTurn, heartbeatTurn, pollTurns, receiveTurns, type TurnsDeps } from "../runs/turns.js";
import type { AgentTurnRow } from "../runs/types.js";
import { callOf } from "./call-context.js";
import { jsonFromValue } from "./convert.js";

export function createAgentService(deps: TurnsDeps): ServiceImpl<typeof AgentService> {
  return {
    async pollTurns(request, context) {
      const turns = await pollTurns(deps, callOf(context), {
        agents: request.agents,
        workerId: request.workerId || "anonymous",
        limit: bounded(request.maxTurns, 1, 100),
        waitMs: bounded(request.waitSeconds, 20, 60) * 1000,
      });
      return create(PollTurnsResponseSchema, { turns: turns.map(turnToProto) });
    },

    async *receiveTurns(request, context: HandlerContext) {
      const call = callOf(context);
      for await (const turn of receiveTurns(deps, call, { agents: request.agents, workerId: request.workerId || "anonymous", maxInFlight: bounded(request.maxInFlight, 1, 100) })) {
        yield create(ReceiveTurnsResponseSchema, { turn: turnToProto(turn) });
      }
    },

    async heartbeatTurn(request, context) {
      const beat = await heartbeatTurn(deps, callOf(context), { turnId: request.turnId, leaseToken: request.leaseToken });
      if (beat.cancelRequested) return create(HeartbeatTurnResponseSchema, { cancelRequested: true });
      return create(HeartbeatTurnResponseSchema, {
        leaseExpiresAt: beat.leaseExpiresAt ? timestampFromDate(beat.leaseExpiresAt) : undefined,
        cancelRequested: false,
      });
    },

    async completeTurn(request, context) {
      const result = request.result ? jsonFromValue(request.result, "result") : null;
      await completeTurn(deps, callOf(context), { turnId: request.turnId, leaseToken: request.leaseToken, result });
      return create(CompleteTurnResponseSchema, {});
    },

    async failTurn(request, context) {
      const error = {
        name: request.error?.name || "AgentError",
        message: request.error?.message || "the agent failed the turn",
        ...(request.error?.stack ? { stack: request.error.stack } : {}),
      };
      await failTurn(deps, callOf(context), { turnId: request.turnId, leaseToken: request.leaseToken, error, retryable: request.retryable });
      return create(FailTurnResponseSchema, {});
    },
  };
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
    traceparent: row.traceParent ?? "",
  });
}

/** 0 asks for the default; the proto rules refuse negative values. */
function bounded(value: number, fallback: number, max: number): number {
  return value === 0 ? fallback : Math.min(value, max);
}
