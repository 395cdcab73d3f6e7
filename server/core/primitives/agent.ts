/**
 * Agent turns: `ctx.startAgent` records a turn for agent workers (its id
 * derives from the run and the operation name, so a crash before journaling
 * finds the same turn again); `ctx.runAgent` starts one and parks on it as
 * `name/result` until a worker finishes it or its journaled deadline passes.
 */
import { type AgentRequest, type AgentWaitOptions, checkOptionKeys, type JsonValue } from "../../../sdk/workflow.js";
import { AgentTurnFailedError } from "../../../sdk/workflow.js";
import { parseDuration } from "../duration.js";
import type { AgentTurnRequest } from "../host.js";
import { agentTurnId } from "../ids.js";
import type { AgentTurnFailed, AgentTurnStarted } from "../journal.js";
import { failureToError, type FailureInfo, inputLimit, storedJson, toFailureInfo } from "../json.js";
import type { AgentWait, WaitRecord } from "../waits.js";
import type { ContextMethods, EntryDescriptors, OperationKernel, WaitDescriptor } from "./primitive.js";
import { failureText } from "./settled.js";

export const agentEntries: EntryDescriptors<"agent_turn_started" | "agent_turn_completed" | "agent_turn_failed"> = {
  agent_turn_started: {
    operation: "agent",
    settle: (entry, operation) => operation.resolve(entry.targetTurnId),
    summary: (entry) => `agent turn ${entry.name} started (turn ${entry.targetTurnId})`,
  },
  agent_turn_completed: {
    operation: "agent_wait",
    settle: (entry, operation) => operation.resolve(entry.result),
    summary: (entry) => `agent turn ${entry.name} completed`,
  },
  agent_turn_failed: {
    operation: "agent_wait",
    settle: (entry, operation) => operation.reject(failureToError(entry.error)),
    summary: (entry) => `agent turn ${entry.name} failed: ${failureText(entry.error)}`,
  },
};

type AgentRecord = Extract<WaitRecord, { kind: "agent" }>;

export const agentWait: WaitDescriptor<AgentWait, AgentRecord> = {
  kind: "agent",
  deadline: (wait) => wait.timeoutAt,
  record: (wait) => ({ kind: "agent", name: wait.name, turnId: wait.turnId, agent: wait.agent, ...(wait.timeoutAt ? { timeoutAt: wait.timeoutAt.toISOString() } : {}) }),
  describe: (record) => `agent ${record.agent || "(any)"} turn ${record.turnId}${record.timeoutAt ? ` until ${record.timeoutAt}` : ""}`,
  target: (record) => ({
    case: "agent",
    value: { turnId: record.turnId, agent: record.agent, timeoutAt: record.timeoutAt ? new Date(record.timeoutAt) : undefined },
  }),
  byClock: (wait, now, startedAt) =>
    wait.timeoutAt && wait.timeoutAt.getTime() <= now.getTime()
      ? agentFailure(wait, { name: "AgentTimeoutError", message: `no result within the timeout (until ${wait.timeoutAt.toISOString()})` }, startedAt)
      : undefined,
  byWorld: async (host, waits, startedAt) => {
    const outcome = await host.findTurnOutcome(waits);
    if (!outcome) return undefined;
    const wait = waits.find((w) => w.turnId === outcome.turnId) as AgentWait;
    if (outcome.status === "completed") {
      return { kind: "agent_turn_completed", name: wait.name, result: outcome.result, targetTurnId: outcome.turnId, attempt: 1, startedAt };
    }
    return agentFailure(wait, outcome.error, startedAt);
  },
};

function agentFailure(wait: AgentWait, failure: FailureInfo, startedAt: Date): AgentTurnFailed {
  const cause = { name: failure.name, message: failure.message };
  const error = new AgentTurnFailedError(wait.turnId, wait.agent, cause);
  return {
    kind: "agent_turn_failed",
    name: wait.name,
    error: { ...toFailureInfo(error), details: { turnId: wait.turnId, agent: wait.agent, failure: cause } },
    targetTurnId: wait.turnId,
    attempt: 1,
    startedAt,
  };
}

export const agentContext: ContextMethods<"startAgent" | "runAgent"> = (kernel) => ({
  startAgent: (name, request) => startAgent(kernel, name, request),
  runAgent: async <T>(name: string, request: AgentRequest, options: AgentWaitOptions = {}) => {
    // The deadline is journaled with the turn's start, so every replay waits for the same instant.
    try {
      checkOptionKeys(options, ["timeout"] satisfies (keyof AgentWaitOptions)[], "runAgent options");
    } catch (error) {
      return kernel.invalid(name, "runAgent", error);
    }
    const recordedStart = kernel.recorded(name).find((e): e is typeof e & AgentTurnStarted => e.kind === "agent_turn_started");
    let timeoutAt = recordedStart?.timeoutAt;
    if (!recordedStart && options.timeout !== undefined) {
      try {
        timeoutAt = new Date(kernel.host.now().getTime() + parseDuration(options.timeout));
      } catch (error) {
        return kernel.invalid(name, "runAgent", error);
      }
    }
    const turnId = await startAgent(kernel, name, request, timeoutAt);
    const agent = typeof request.agent === "string" && request.agent ? request.agent : name;
    return waitForAgent(kernel, `${name}/result`, turnId, agent, timeoutAt) as Promise<T>;
  },
});

function startAgent(kernel: OperationKernel, name: string, request: AgentRequest, timeoutAt?: Date): Promise<string> {
  const { operation, promise, recorded } = kernel.register<string>(name, "agent");
  if (recorded.length > 0) return promise;
  let turn: AgentTurnRequest;
  try {
    if (typeof request !== "object" || request === null) throw new Error('the request must be an object like { text: "..." }');
    const { agent = name, text, ...rest } = request;
    if (typeof agent !== "string" || agent.length === 0) throw new Error("agent must be a non-empty string");
    if (typeof text !== "string") throw new Error("text must be a string");
    const params = storedJson({ ...rest, text }, "the agent request", inputLimit(kernel.host.limits)) as { [key: string]: JsonValue };
    delete params.text;
    turn = { name, turnId: agentTurnId(kernel.run.runId, name), agent, text, params };
  } catch (error) {
    return kernel.invalid(name, "startAgent", error);
  }
  const startedAt = kernel.host.now();
  // Like children: a turn created just before a crash is found again under the same id.
  kernel.track(
    kernel.host
      .startAgentTurn(turn)
      .then(() => kernel.write({ kind: "agent_turn_started", name, targetTurnId: turn.turnId, attempt: 1, startedAt, ...(timeoutAt ? { timeoutAt } : {}) }, operation)),
  );
  return promise;
}

function waitForAgent(kernel: OperationKernel, name: string, turnId: string, agent: string, timeoutAt: Date | undefined): Promise<unknown> {
  const { operation, promise, recorded } = kernel.register<unknown>(name, "agent_wait");
  if (recorded.length > 0) return promise;
  operation.wait = { kind: "agent", name, turnId, agent, timeoutAt };
  return promise;
}

