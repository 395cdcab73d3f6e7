/**
 * `ctx.sleep` and `ctx.sleepUntil`: a durable timer. The fire time is
 * journaled when the timer starts (`timer_started`), so every replay waits for
 * the same instant; the clock resolves the wait with `timer_fired`.
 */
import { parseDuration, parseInstant } from "../duration.js";
import type { TimerStarted } from "../journal.js";
import type { TimerWait, WaitRecord } from "../waits.js";
import type { ContextMethods, EntryDescriptors, OperationKernel, WaitDescriptor } from "./primitive.js";

export const timerEntries: EntryDescriptors<"timer_started" | "timer_fired"> = {
  timer_started: { operation: "timer", summary: (entry) => `timer ${entry.name} started, fires at ${entry.fireAt.toISOString()}` },
  timer_fired: {
    operation: "timer",
    settle: (_entry, operation) => operation.resolve(undefined),
    summary: (entry) => `timer ${entry.name} fired`,
  },
};

type TimerRecord = Extract<WaitRecord, { kind: "timer" }>;

export const timerWait: WaitDescriptor<TimerWait, TimerRecord> = {
  kind: "timer",
  deadline: (wait) => wait.fireAt,
  record: (wait) => ({ kind: "timer", name: wait.name, fireAt: wait.fireAt.toISOString() }),
  describe: (record) => `timer ${record.name} until ${record.fireAt}`,
  target: (record) => ({ case: "timer", value: { fireAt: new Date(record.fireAt) } }),
  byClock: (wait, now, startedAt) =>
    wait.fireAt.getTime() <= now.getTime() ? { kind: "timer_fired", name: wait.name, fireAt: wait.fireAt, attempt: 1, startedAt } : undefined,
};

export const timerContext: ContextMethods<"sleep" | "sleepUntil"> = (kernel) => ({
  sleep: (name, duration) => sleep(kernel, name, () => new Date(kernel.host.now().getTime() + parseDuration(duration))),
  sleepUntil: (name, when) => sleep(kernel, name, () => parseInstant(when)),
});

function sleep(kernel: OperationKernel, name: string, fireAtOf: () => Date): Promise<void> {
  const { operation, promise, recorded } = kernel.register<void>(name, "timer");
  const started = recorded.find((e): e is typeof e & TimerStarted => e.kind === "timer_started");
  let fireAt: Date;
  if (started) {
    fireAt = started.fireAt;
  } else {
    try {
      fireAt = fireAtOf();
    } catch (error) {
      return kernel.invalid(name, "sleep", error);
    }
    kernel.write({ kind: "timer_started", name, fireAt, attempt: 1, startedAt: kernel.host.now() }, operation);
  }
  if (!recorded.some((e) => e.kind === "timer_fired")) operation.wait = { kind: "timer", name, fireAt };
  return promise;
}
