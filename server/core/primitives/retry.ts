/**
 * Retry backoff: a failed step attempt that will run again parks its
 * operation on a `retry` wait until `fireAt`. Nothing is journaled when the
 * backoff ends: the step's next attempt simply starts (see step.ts), so the
 * clock resolves this wait inside the activation rather than through an entry.
 */
import type { WaitDescriptor } from "./primitive.js";
import type { RetryWait, WaitRecord } from "../waits.js";

type RetryRecord = Extract<WaitRecord, { kind: "retry" }>;

export const retryWait: WaitDescriptor<RetryWait, RetryRecord> = {
  kind: "retry",
  deadline: (wait) => wait.fireAt,
  record: (wait) => ({ kind: "retry", name: wait.name, retryAt: wait.fireAt.toISOString(), nextAttempt: wait.nextAttempt }),
  describe: (record) => `retry of step ${record.name} (attempt ${record.nextAttempt}) at ${record.retryAt}`,
  target: (record) => ({ case: "retry", value: { stepName: record.name, nextAttempt: record.nextAttempt, retryAt: new Date(record.retryAt) } }),
};
