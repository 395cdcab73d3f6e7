/**
 * `ctx.waitForEvent`: wait for the oldest unconsumed event with this type and
 * correlation id (within the lookback), or give up at the timeout. The wait's
 * parameters are journaled when it starts (`event_wait_started`), so replays
 * wait for the same thing; an arrival journals `event_received` with the event
 * consumed, a passed timeout `event_wait_timed_out` (the handler sees null).
 */
import { checkOptionKeys, type WaitForEventOptions } from "../../../sdk/workflow.js";
import { parseDuration } from "../duration.js";
import type { EventWaitStarted } from "../journal.js";
import type { EventWait, WaitRecord } from "../waits.js";
import type { ContextMethods, EntryDescriptors, WaitDescriptor } from "./primitive.js";

export const eventEntries: EntryDescriptors<"event_wait_started" | "event_received" | "event_wait_timed_out"> = {
  event_wait_started: {
    operation: "event",
    summary: (entry) => `waiting for event ${entry.name}: ${entry.eventType} (correlation ${entry.correlationId})`,
  },
  event_received: {
    operation: "event",
    settle: (entry, operation) => operation.resolve(entry.result),
    summary: (entry) => `event received ${entry.name}`,
  },
  event_wait_timed_out: {
    operation: "event",
    settle: (_entry, operation) => operation.resolve(null),
    summary: (entry) => `event ${entry.name} timed out`,
  },
};

type EventRecord = Extract<WaitRecord, { kind: "event" }>;

export const eventWait: WaitDescriptor<EventWait, EventRecord> = {
  kind: "event",
  deadline: (wait) => wait.timeoutAt,
  record: (wait) => ({
    kind: "event",
    name: wait.name,
    eventType: wait.eventType,
    correlationId: wait.correlationId,
    ...(wait.timeoutAt ? { timeoutAt: wait.timeoutAt.toISOString() } : {}),
  }),
  describe: (record) => `event ${record.eventType} (correlation ${record.correlationId})${record.timeoutAt ? ` until ${record.timeoutAt}` : ""}`,
  target: (record) => ({
    case: "event",
    value: { eventType: record.eventType, correlationId: record.correlationId, timeoutAt: record.timeoutAt ? new Date(record.timeoutAt) : undefined },
  }),
  byClock: (wait, now, startedAt) =>
    wait.timeoutAt && wait.timeoutAt.getTime() <= now.getTime()
      ? { kind: "event_wait_timed_out", name: wait.name, eventType: wait.eventType, correlationId: wait.correlationId, timeoutAt: wait.timeoutAt, attempt: 1, startedAt }
      : undefined,
  byWorld: async (host, waits, startedAt) => {
    const match = await host.findEvent(waits);
    if (!match) return undefined;
    const wait = waits.find((w) => w.name === match.name) as EventWait;
    return {
      kind: "event_received",
      name: match.name,
      result: match.payload,
      eventId: match.eventId,
      eventType: wait.eventType,
      correlationId: wait.correlationId,
      attempt: 1,
      startedAt,
    };
  },
};

export const eventContext: ContextMethods<"waitForEvent"> = (kernel) => ({
  waitForEvent: <T>(name: string, eventType: string, correlationId: string, options: WaitForEventOptions = {}): Promise<T | null> => {
    const { operation, promise, recorded } = kernel.register<T | null>(name, "event");
    const started = recorded.find((e): e is typeof e & EventWaitStarted => e.kind === "event_wait_started");
    let wait: EventWait;
    if (started) {
      wait = { kind: "event", name, eventType: started.eventType, correlationId: started.correlationId, timeoutAt: started.timeoutAt, lookbackFrom: started.lookbackFrom };
    } else {
      try {
        checkOptionKeys(options, ["timeout", "lookback"] satisfies (keyof WaitForEventOptions)[], "waitForEvent options");
        if (typeof eventType !== "string" || eventType.length === 0) throw new Error("eventType must be a non-empty string");
        if (typeof correlationId !== "string") throw new Error("correlationId must be a string");
        const now = kernel.host.now();
        const timeoutAt = options.timeout === undefined ? undefined : new Date(now.getTime() + parseDuration(options.timeout));
        const lookback = options.lookback ?? "run";
        const lookbackFrom = lookback === "all" ? undefined : lookback === "run" ? kernel.run.createdAt : new Date(now.getTime() - parseDuration(lookback));
        wait = { kind: "event", name, eventType, correlationId, timeoutAt, lookbackFrom };
      } catch (error) {
        return kernel.invalid(name, "waitForEvent", error);
      }
      kernel.write(
        {
          kind: "event_wait_started",
          name,
          eventType: wait.eventType,
          correlationId: wait.correlationId,
          ...(wait.timeoutAt ? { timeoutAt: wait.timeoutAt } : {}),
          ...(wait.lookbackFrom ? { lookbackFrom: wait.lookbackFrom } : {}),
          attempt: 1,
          startedAt: kernel.host.now(),
        },
        operation,
      );
    }
    if (!recorded.some((e) => e.kind === "event_received" || e.kind === "event_wait_timed_out")) operation.wait = wait;
    return promise;
  },
});
