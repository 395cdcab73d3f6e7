/**
 * An in-memory ActivationHost for engine tests: the journal and the event
 * store are arrays, the clock is settable, so a test can run an activation,
 * let it suspend or "crash", change the world, and replay against what was kept.
 */
import type { ActivationHost } from "../../server/core/activation.js";
import { WorkflowNotFoundError } from "../../server/core/errors.js";
import type { AgentTurnRequest, ChildOutcome, ChildRequest, MatchedEvent, TurnOutcome } from "../../server/core/host.js";
import type { JournalEntry, NewEntry } from "../../server/core/journal.js";
import type { AgentWait, ChildWait, EventWait, PendingWait } from "../../server/core/waits.js";
import type { JsonValue, WorkflowLogger } from "../../sdk/workflow.js";

export interface StoredEvent {
  id: string;
  eventType: string;
  correlationId: string;
  payload: JsonValue;
  createdAt: Date;
}

export interface MemoryHost extends ActivationHost {
  readonly journal: JournalEntry[];
  readonly events: StoredEvent[];
  readonly logs: string[];
  readonly controller: AbortController;
  suspendedOn: PendingWait[] | undefined;
  /** Make the next append calls fail with this error. */
  failAppendsWith: Error | undefined;
  /** When set, startChild throws this (a store failure while creating the child). */
  failChildStartsWith: Error | undefined;
  /** The host clock; tests move it forward instead of waiting. */
  clock: Date;
  /** Every startChild call, and the children that exist (by id). */
  readonly childRequests: ChildRequest[];
  readonly children: Map<string, ChildRequest>;
  readonly turns: Map<string, AgentTurnRequest>;
  readonly turnOutcomes: Map<string, TurnOutcome>;
  /** Children that ended. */
  readonly childOutcomes: Map<string, ChildOutcome>;
}

export function memoryHost(journal: JournalEntry[] = [], events: StoredEvent[] = []): MemoryHost {
  const logs: string[] = [];
  const controller = new AbortController();
  const log =
    (level: string) =>
    (message: string): void => {
      logs.push(`${level}:${message}`);
    };
  const logger: WorkflowLogger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  const host: MemoryHost = {
    journal,
    events,
    logs,
    controller,
    signal: controller.signal,
    logger,
    suspendedOn: undefined,
    failAppendsWith: undefined,
    failChildStartsWith: undefined,
    clock: new Date(),
    childRequests: [],
    children: new Map(),
    childOutcomes: new Map(),
    async startChild(request: ChildRequest) {
      await Promise.resolve();
      host.childRequests.push(request);
      if (host.failChildStartsWith) throw host.failChildStartsWith;
      if (request.workflowName === "missing") throw new WorkflowNotFoundError("missing", ["child_wf"], ["./workflows"]);
      if (!host.children.has(request.childRunId)) host.children.set(request.childRunId, request);
    },
    async startAgentTurn(turn: AgentTurnRequest) {
      await Promise.resolve();
      if (!host.turns.has(turn.turnId)) host.turns.set(turn.turnId, turn);
    },
    async findTurnOutcome(waits: readonly AgentWait[]) {
      await Promise.resolve();
      for (const wait of waits) {
        const outcome = host.turnOutcomes.get(wait.turnId);
        if (outcome) return outcome;
      }
      return undefined;
    },
    turns: new Map(),
    turnOutcomes: new Map(),
    async findChildOutcome(waits: readonly ChildWait[]) {
      await Promise.resolve();
      for (const wait of waits) {
        const outcome = host.childOutcomes.get(wait.childRunId);
        if (outcome) return outcome;
      }
      return undefined;
    },
    now: () => new Date(host.clock.getTime()),
    async append(entry: NewEntry) {
      await Promise.resolve();
      if (host.failAppendsWith) throw host.failAppendsWith;
      journal.push({ ...entry, sequence: (journal.at(-1)?.sequence ?? 0) + 1, createdAt: new Date() });
    },
    async findEvent(waits: readonly EventWait[]): Promise<MatchedEvent | undefined> {
      await Promise.resolve();
      const consumed = new Set(journal.filter((e) => e.kind === "event_received").map((e) => e.eventId));
      for (const wait of waits) {
        const event = events.find(
          (e) =>
            e.eventType === wait.eventType &&
            e.correlationId === wait.correlationId &&
            !consumed.has(e.id) &&
            (!wait.lookbackFrom || e.createdAt >= wait.lookbackFrom),
        );
        if (event) return { name: wait.name, eventId: event.id, payload: event.payload };
      }
      return undefined;
    },
    async suspend(waits: readonly PendingWait[]) {
      await Promise.resolve();
      host.suspendedOn = [...waits];
      return true;
    },
  };
  return host;
}
