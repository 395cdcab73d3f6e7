/**
 * cairn.v1.AgentService: the contract is published now so SDKs can be
 * generated against it; agent turns arrive with the composition work, and
 * until then every method answers UNIMPLEMENTED saying so.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";

function notYet(rpc: string): ConnectError {
  return new ConnectError(`AgentService.${rpc} is not implemented by this server version yet (agent turns arrive with ctx.startAgent/ctx.runAgent)`, Code.Unimplemented);
}

export function createAgentService(): ServiceImpl<typeof AgentService> {
  return {
    async *receiveTurns() {
      yield* [];
      throw notYet("ReceiveTurns");
    },
    pollTurns() {
      throw notYet("PollTurns");
    },
    heartbeatTurn() {
      throw notYet("HeartbeatTurn");
    },
    completeTurn() {
      throw notYet("CompleteTurn");
    },
    failTurn() {
      throw notYet("FailTurn");
    },
  };
}
