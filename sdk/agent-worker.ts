/**
 * A small agent worker: leases turns for the agents it serves (long poll),
 * runs their handlers, heartbeats long turns, and reports results. A turn's
 * handler gets a `signal` that aborts when the run is cancelled or the lease
 * was lost; a result the server refuses (the turn was redelivered) is dropped.
 * Runs in Node and browsers: pass any Connect transport.
 */
import { create, fromJson, type JsonValue as ProtoJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { AgentService, type AgentTurn } from "./gen/cairn/v1/agent_pb.js";
import { FailureSchema } from "./gen/cairn/v1/types_pb.js";
import type { JsonObject, JsonValue } from "./workflow.js";

export interface AgentTurnInput {
  turnId: string;
  agent: string;
  text: string;
  params: JsonObject;
  runId: string;
  workflowName: string;
  /** 1 on first delivery; more after a worker vanished mid-turn. */
  attempt: number;
  /** W3C traceparent of the activation that asked for this turn, when the server traces: start your spans under it. */
  traceparent: string | undefined;
  /** Aborted when the run is cancelled or this worker lost the turn. */
  signal: AbortSignal;
}

export type AgentHandler = (turn: AgentTurnInput) => Promise<JsonValue> | JsonValue;

export interface AgentWorkerOptions {
  transport: Transport;
  agents: Record<string, AgentHandler>;
  /** Shown in logs; default a random id. */
  workerId?: string;
  /** Turns handled at once (default 1). */
  concurrency?: number;
  /** How often a running turn's lease is extended (default 10 s; keep it well under the server's CAIRN_AGENT_LEASE_MS). */
  heartbeatMs?: number;
  /** How long a turn's result (or failure) is retried while the server cannot be reached (default 60 s). */
  reportTimeoutMs?: number;
  /** Called for turns whose result the server refused, and for poll errors. */
  onError?: (error: unknown) => void;
}

export interface AgentWorker {
  readonly workerId: string;
  /** Resolves when the worker has stopped. */
  readonly done: Promise<void>;
  /** Stops polling; turns in progress finish first. */
  stop(): Promise<void>;
}

/**
 * Failures worth reporting again: the server or its database is unreachable for a moment, or failed
 * unexpectedly. A repeat is safe: a result already recorded answers FAILED_PRECONDITION.
 */
function transient(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return [Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Aborted, Code.ResourceExhausted].includes(code);
}

export function createAgentWorker(options: AgentWorkerOptions): AgentWorker {
  const client = createClient(AgentService, options.transport);
  const workerId = options.workerId ?? `worker-${Math.random().toString(36).slice(2, 10)}`;
  const agents = Object.keys(options.agents);
  if (agents.length === 0) throw new Error("createAgentWorker: name at least one agent in `agents`");
  const stopping = new AbortController();
  const onError = options.onError ?? (() => undefined);

  async function handle(turn: AgentTurn): Promise<void> {
    const handler = options.agents[turn.agent];
    const controller = new AbortController();
    const token = turn.leaseToken;
    const heartbeat = setInterval(() => {
      client.heartbeatTurn({ turnId: turn.turnId, leaseToken: token }).then(
        (reply) => {
          if (reply.cancelRequested) controller.abort(new Error("the run was cancelled"));
        },
        (error: unknown) => {
          if (error instanceof ConnectError && (error.code === Code.FailedPrecondition || error.code === Code.NotFound)) {
            controller.abort(error);
          }
        },
      );
    }, options.heartbeatMs ?? 10_000);
    try {
      let outcome: { result: JsonValue } | { error: unknown };
      try {
        if (!handler) throw new Error(`this worker has no handler for agent "${turn.agent}"`);
        const result = await handler({
          turnId: turn.turnId,
          agent: turn.agent,
          text: turn.text,
          params: (turn.params ?? {}) as JsonObject,
          runId: turn.runId,
          workflowName: turn.workflowName,
          attempt: turn.attempt,
          traceparent: turn.traceparent || undefined,
          signal: controller.signal,
        });
        outcome = { result: result ?? null };
      } catch (error) {
        outcome = { error };
      }
      if (controller.signal.aborted) return;
      if ("result" in outcome) {
        try {
          const result = fromJson(ValueSchema, outcome.result as ProtoJson);
          await report(() => client.completeTurn({ turnId: turn.turnId, leaseToken: token, result }));
          return;
        } catch (error) {
          // Only a result refused as such (too large, not JSON) fails the turn. Anything else (the turn was
          // delivered again or withdrawn, the server stayed unreachable or kept failing) leaves the turn alone:
          // it is delivered again once its lease lapses, if it still needs a result.
          const refused = !(error instanceof ConnectError) || error.code === Code.InvalidArgument;
          if (!refused) throw error;
          outcome = { error };
        }
      }
      const failure = outcome.error instanceof Error ? outcome.error : new Error(String(outcome.error));
      const retryable = (outcome.error as { retryable?: unknown }).retryable === true;
      await report(() =>
        client.failTurn({
          turnId: turn.turnId,
          leaseToken: token,
          retryable,
          // Clipped to the server's limits on Failure (proto rules), so a huge message still fails the turn.
          error: create(FailureSchema, { name: clip(failure.name, 256), message: clip(failure.message, 32_768), stack: clip(failure.stack ?? "", 65_536) }),
        }),
      ).catch(onError);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /**
   * Delivers a turn's outcome, retrying while the server cannot be reached (a restart, a database outage) and
   * the heartbeat keeps the lease. A result that never arrives is not a failure of the turn: after
   * `reportTimeoutMs` the worker gives up and the turn is delivered again once its lease lapses.
   */
  async function report(call: () => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + (options.reportTimeoutMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      try {
        await call();
        return;
      } catch (error) {
        if (!transient(error) || Date.now() >= deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** (attempt - 1)) * (0.5 + Math.random() * 0.5)));
      }
    }
  }

  async function loop(): Promise<void> {
    let backoffMs = 100;
    while (!stopping.signal.aborted) {
      try {
        const { turns } = await client.pollTurns({ agents, workerId, maxTurns: 1, waitSeconds: 20 }, { signal: stopping.signal });
        backoffMs = 100;
        for (const turn of turns) await handle(turn).catch(onError);
      } catch (error) {
        if (stopping.signal.aborted) break;
        onError(error);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(backoffMs * 2, 5000);
      }
    }
  }

  const done = Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 1) }, () => loop())).then(() => undefined);
  return {
    workerId,
    done,
    async stop() {
      stopping.abort();
      await done;
    },
  };
}

/** At most `max` UTF-16 units, as the proto's string.max_len counts code points (never more than units). */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
