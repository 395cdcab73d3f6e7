/**
 * Child workflows: `ctx.startWorkflow` creates a child run whose id derives
 * from the parent and the operation name (creating it twice finds the first,
 * so a crash between creating and journaling is harmless); `ctx.waitForWorkflow`
 * parks on a child until it ends; `ctx.runWorkflow` is both, as operations
 * `name` and `name/result`.
 */
import { checkOptionKeys, type JsonObject, type StartWorkflowOptions } from "../../../sdk/workflow.js";
import { ChildWorkflowFailedError } from "../../../sdk/workflow.js";
import { InvalidInputError, PayloadTooLargeError, WorkflowNotFoundError } from "../errors.js";
import type { ChildRequest } from "../host.js";
import { childRunId } from "../ids.js";
import type { ChildStarted, NewEntry } from "../journal.js";
import { failureToError, normalizeJson, toFailureInfo, toJsonValue } from "../json.js";
import type { ChildWait, WaitRecord } from "../waits.js";
import type { ContextMethods, EntryDescriptors, OperationKernel, WaitDescriptor } from "./primitive.js";
import { failureText } from "./settled.js";

export const childEntries: EntryDescriptors<"child_started" | "child_completed" | "child_failed"> = {
  child_started: {
    operation: "child",
    settle: (entry, operation) => (entry.error ? operation.reject(failureToError(entry.error)) : operation.resolve(entry.targetRunId)),
    summary: (entry) => (entry.error ? `child ${entry.name} could not start: ${failureText(entry.error)}` : `child ${entry.name} started (run ${entry.targetRunId})`),
  },
  child_completed: {
    operation: "child_wait",
    settle: (entry, operation) => operation.resolve(entry.result),
    summary: (entry) => `child ${entry.name} completed`,
  },
  child_failed: {
    operation: "child_wait",
    settle: (entry, operation) => operation.reject(failureToError(entry.error)),
    summary: (entry) => `child ${entry.name} failed: ${failureText(entry.error)}`,
  },
};

type ChildRecord = Extract<WaitRecord, { kind: "child" }>;

export const childWait: WaitDescriptor<ChildWait, ChildRecord> = {
  kind: "child",
  deadline: () => undefined,
  record: (wait) => ({ kind: "child", name: wait.name, childRunId: wait.childRunId }),
  describe: (record) => `child ${record.name} (run ${record.childRunId})`,
  target: (record) => ({ case: "child", value: { runId: record.childRunId } }),
  byWorld: async (host, waits, startedAt): Promise<NewEntry | undefined> => {
    const outcome = await host.findChildOutcome(waits);
    if (!outcome) return undefined;
    const wait = waits.find((w) => w.childRunId === outcome.childRunId) as ChildWait;
    const base = { name: wait.name, targetRunId: outcome.childRunId, attempt: 1, startedAt };
    if (outcome.status === "completed") return { kind: "child_completed", result: outcome.output, ...base };
    const cause = { name: outcome.error?.name ?? "Error", message: outcome.error?.message ?? outcome.status };
    const error = new ChildWorkflowFailedError(outcome.childRunId, outcome.workflowName, outcome.status, cause);
    const details = { childRunId: outcome.childRunId, workflowName: outcome.workflowName, status: outcome.status, failure: cause };
    return { kind: "child_failed", error: { ...toFailureInfo(error), details }, ...base };
  },
};

export const childContext: ContextMethods<"startWorkflow" | "waitForWorkflow" | "runWorkflow"> = (kernel) => ({
  startWorkflow: (name, workflowName, input, options) => startWorkflow(kernel, name, workflowName, input, options),
  waitForWorkflow: <T>(name: string, runId: string) => waitForWorkflow(kernel, name, runId) as Promise<T>,
  // Two operations: `name` starts the child, `name/result` waits for it.
  runWorkflow: async <T>(name: string, workflowName: string, input?: JsonObject, options?: StartWorkflowOptions) =>
    waitForWorkflow(kernel, `${name}/result`, await startWorkflow(kernel, name, workflowName, input, options)) as Promise<T>,
});

function startWorkflow(kernel: OperationKernel, name: string, workflowName: string, input: JsonObject = {}, options: StartWorkflowOptions = {}): Promise<string> {
  const { operation, promise, recorded } = kernel.register<string>(name, "child");
  if (recorded.length > 0) return promise;
  let request: ChildRequest;
  try {
    checkOptionKeys(options, ["detached"] satisfies (keyof StartWorkflowOptions)[], "startWorkflow options");
    if (typeof workflowName !== "string" || workflowName.length === 0) throw new Error("workflowName must be a non-empty string");
    const json = normalizeJson(toJsonValue(input, "the child's input"));
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("the child's input must be a JSON object");
    request = { name, childRunId: childRunId(kernel.run.runId, name), workflowName, input: json, detached: options.detached === true };
  } catch (error) {
    return kernel.invalid(name, "startWorkflow", error);
  }
  const startedAt = kernel.host.now();
  // If the process dies between creating the child and journaling it, the replay derives the same id and finds it.
  kernel.track(
    kernel.host.startChild(request).then(
      () => kernel.write({ kind: "child_started", name, targetRunId: request.childRunId, attempt: 1, startedAt }, operation),
      (error: unknown) => {
        // Only a bad request is the child's creation error; a store failure stops the activation (retried later).
        const badRequest = error instanceof WorkflowNotFoundError || error instanceof InvalidInputError || error instanceof PayloadTooLargeError;
        if (!badRequest) throw error;
        const entry: ChildStarted = { kind: "child_started", name, error: toFailureInfo(error), attempt: 1, startedAt };
        kernel.write(entry, operation);
      },
    ),
  );
  return promise;
}

function waitForWorkflow(kernel: OperationKernel, name: string, runId: string): Promise<unknown> {
  const { operation, promise, recorded } = kernel.register<unknown>(name, "child_wait");
  if (recorded.length > 0) return promise;
  if (typeof runId !== "string" || runId.length === 0) return kernel.invalid(name, "waitForWorkflow", new Error("runId must be a run id"));
  operation.wait = { kind: "child", name, childRunId: runId };
  return promise;
}
