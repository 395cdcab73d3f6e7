/**
 * The table of primitives: every entry kind's descriptor and every `ctx`
 * method. A new primitive adds its file and one line in each list here (and,
 * when it parks the run, one line in ../waits.ts).
 */
import type { WorkflowContext } from "../../../sdk/workflow.js";
import type { EntryKind, NewEntry } from "../journal.js";
import { agentContext, agentEntries } from "./agent.js";
import { childContext, childEntries } from "./child.js";
import { deterministicContext, deterministicEntries } from "./deterministic.js";
import { eventContext, eventEntries } from "./event.js";
import type { EntryDescriptor, EntryDescriptors, OperationKernel, OperationType } from "./primitive.js";
import { runControlEntries } from "./run-control.js";
import { runEndEntries } from "./run-end.js";
import { stepContext, stepEntries } from "./step.js";
import { timerContext, timerEntries } from "./timer.js";

export const entryDescriptors: EntryDescriptors<EntryKind> = {
  ...stepEntries,
  ...timerEntries,
  ...eventEntries,
  ...childEntries,
  ...agentEntries,
  ...runEndEntries,
  ...runControlEntries,
  ...deterministicEntries,
};

function descriptorOf(entry: NewEntry): EntryDescriptor<NewEntry> {
  return entryDescriptors[entry.kind] as EntryDescriptor<NewEntry>;
}

/** The `ctx` methods of every primitive (the workflow's view of the engine). */
export function primitiveMethods(kernel: OperationKernel): Omit<WorkflowContext, "runId" | "workflowName" | "log"> {
  return {
    ...stepContext(kernel),
    ...timerContext(kernel),
    ...eventContext(kernel),
    ...childContext(kernel),
    ...agentContext(kernel),
    ...deterministicContext(kernel),
  };
}

export function operationTypeOf(kind: EntryKind): OperationType | undefined {
  return entryDescriptors[kind].operation;
}

/** One line for people: "step charge completed (attempt 2)". */
export function summarizeEntry(entry: NewEntry): string {
  return descriptorOf(entry).summary(entry);
}

/** Hands a delivered entry's outcome to its operation (start markers and attempt records settle nothing). */
export function settleWith(entry: NewEntry, settle: (apply: () => void) => void, operation: Parameters<NonNullable<EntryDescriptor<NewEntry>["settle"]>>[1]): void {
  const apply = descriptorOf(entry).settle;
  if (apply) settle(() => apply(entry, operation));
}
