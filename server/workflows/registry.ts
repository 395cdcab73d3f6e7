/**
 * The workflows this process can execute, by name, with input validation
 * through their optional Standard Schema (zod, valibot, arktype, ...).
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { JsonValue, WorkflowSchedule } from "../../sdk/workflow.js";
import type { Handler } from "../core/activation.js";
import type { FlowControl } from "../core/flow-control.js";
import { InvalidInputError, WorkflowNotFoundError } from "../core/errors.js";

export interface LoadedWorkflow {
  name: string;
  file: string;
  input?: StandardSchemaV1 | undefined;
  /** `defineWorkflow({ timeout })` in ms: each run's default run-level timeout (absent: none). */
  timeoutMs?: number | undefined;
  /** `defineWorkflow({ concurrency, rateLimit, priority, debounce })`, checked (absent: none). */
  flow?: FlowControl | undefined;
  /** `defineWorkflow({ schedules })`, as declared: checked and upserted at server start (runs/schedules.ts). */
  schedules?: readonly WorkflowSchedule<unknown>[] | undefined;
  handler: Handler;
}

export class WorkflowRegistry {
  private readonly byName = new Map<string, LoadedWorkflow>();

  constructor(
    workflows: readonly LoadedWorkflow[],
    readonly workflowDirs: readonly string[],
  ) {
    for (const workflow of workflows) this.byName.set(workflow.name, workflow);
  }

  list(): LoadedWorkflow[] {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  find(name: string): LoadedWorkflow | undefined {
    return this.byName.get(name);
  }

  get(name: string): LoadedWorkflow {
    const workflow = this.byName.get(name);
    if (!workflow) throw new WorkflowNotFoundError(name, [...this.byName.keys()].sort(), this.workflowDirs);
    return workflow;
  }
}

/** Runs the workflow's schema over `input`; returns what the handler receives (schemas may transform). */
export async function validateInput(workflow: LoadedWorkflow, input: JsonValue): Promise<unknown> {
  if (!workflow.input) return input;
  const result = await workflow.input["~standard"].validate(input);
  if (result.issues) {
    throw new InvalidInputError(
      `input does not match the schema of workflow "${workflow.name}"`,
      result.issues.map(describeIssue),
    );
  }
  return result.value;
}

function describeIssue(issue: StandardSchemaV1.Issue): string {
  const path = (issue.path ?? [])
    .map((segment) => (typeof segment === "object" ? segment.key : segment))
    .map((key) => (typeof key === "number" ? `[${key}]` : `.${String(key)}`))
    .join("");
  return path ? `input${path}: ${issue.message}` : `input: ${issue.message}`;
}
