/**
 * Finds workflows in WORKFLOW_DIRS. Each `.ts`, `.mts`, `.js` or `.mjs` file
 * directly inside a folder is imported (TypeScript loads through tsx, no build
 * step) and may export a workflow either as `WORKFLOW_NAME` + `handler` (+
 * optional `Input` schema) or as `defineWorkflow(...)` values. Every load and
 * skip is logged with the file and the reason; a file that fails to import or
 * two workflows with one name stop start-up, because serving a partial set of
 * workflows would fail runs later and far from the cause.
 */
import { readdirSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { Duration, WorkflowSchedule } from "../../sdk/workflow.js";
import type { Handler } from "../core/activation.js";
import { parseDuration } from "../core/duration.js";
import { type FlowControl, parseFlowControl } from "../core/flow-control.js";
import type { Logger } from "../logger.js";
import { describeLoadFailure } from "./load-error.js";
import { registerWorkflowHooks } from "./module-hooks.js";
import { type LoadedWorkflow, WorkflowRegistry } from "./registry.js";

const workflowExtensions = new Set([".ts", ".mts", ".js", ".mjs"]);

export class WorkflowLoadError extends Error {
  override readonly name = "WorkflowLoadError";
}

export async function loadWorkflows(dirs: readonly string[], logger: Logger): Promise<WorkflowRegistry> {
  registerWorkflowHooks();
  const loaded: LoadedWorkflow[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (error) {
      logger.warn({ dir, reason: (error as Error).message }, "workflow folder not readable; skipped");
      continue;
    }
    for (const name of names) {
      const file = join(dir, name);
      const skip = skipReason(file, name);
      if (skip) {
        logger.info({ file, reason: skip }, "skipped file in workflow folder");
        continue;
      }
      let exports: Record<string, unknown>;
      try {
        exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      } catch (error) {
        throw new WorkflowLoadError(describeLoadFailure(file, error), { cause: error });
      }
      const found = workflowsIn(exports, file);
      if (typeof found === "string") {
        // A file that looks meant to be a workflow but is not one is worth a warning; a helper module is not.
        if (nearMiss(exports)) logger.warn({ file, reason: found }, "file in workflow folder looks like a workflow but is not one; skipped");
        else logger.info({ file, reason: found }, "skipped file in workflow folder");
        continue;
      }
      for (const workflow of found) {
        const clash = loaded.find((w) => w.name === workflow.name);
        if (clash) {
          throw new WorkflowLoadError(
            `two workflows are named "${workflow.name}": ${clash.file} and ${workflow.file}; workflow names must be unique`,
          );
        }
        loaded.push(workflow);
        logger.info({ workflow: workflow.name, file, inputSchema: workflow.input?.["~standard"].vendor ?? null }, "loaded workflow");
      }
    }
  }
  if (loaded.length === 0) logger.warn({ dirs }, "no workflows loaded; check WORKFLOW_DIRS");
  return new WorkflowRegistry(loaded, dirs);
}

function skipReason(file: string, name: string): string | undefined {
  if (name.startsWith(".") || name.startsWith("_")) return "hidden or underscore-prefixed name";
  if (statSync(file).isDirectory()) return "a folder (only files directly inside WORKFLOW_DIRS are loaded)";
  if (name.endsWith(".d.ts") || name.endsWith(".d.mts")) return "a type declaration file";
  if (/\.(test|spec)\.[mc]?[jt]s$/.test(name)) return "a test file";
  if (!workflowExtensions.has(extname(name))) return `not a .ts, .mts, .js or .mjs file`;
  return undefined;
}

/** The workflows a module exports, or why it exports none. */
function workflowsIn(exports: Record<string, unknown>, file: string): LoadedWorkflow[] | string {
  const defined: LoadedWorkflow[] = [];
  for (const value of new Set(Object.values(exports))) {
    if (!isDefinition(value)) continue;
    let timeoutMs: number | undefined;
    if (value.timeout !== undefined) {
      try {
        timeoutMs = parseDuration(value.timeout);
      } catch (error) {
        // A bad default would fail every run later, far from the cause: stop start-up instead.
        throw new WorkflowLoadError(`${file}: the timeout of workflow "${value.name}" is not valid: ${(error as Error).message}`);
      }
      if (timeoutMs <= 0) throw new WorkflowLoadError(`${file}: the timeout of workflow "${value.name}" must be more than zero`);
    }
    let flow: FlowControl;
    try {
      flow = parseFlowControl(value as Record<string, unknown>);
    } catch (error) {
      // A zero limit or a bad period would hold or flood every run later: stop start-up with the cause instead.
      throw new WorkflowLoadError(`${file}: workflow "${value.name}": ${(error as Error).message}`);
    }
    defined.push({ name: value.name, file, input: value.input, timeoutMs, flow, schedules: value.schedules, handler: value.handler });
  }
  if (defined.length > 0) return defined;

  const name = exports.WORKFLOW_NAME;
  const handler = exports.handler;
  if (name === undefined && typeof handler === "function") return 'exports a handler but no WORKFLOW_NAME: add `export const WORKFLOW_NAME = "..."` or use defineWorkflow(...)';
  if (name === undefined) return "no WORKFLOW_NAME export and no defineWorkflow(...) export";
  if (typeof name !== "string" || name.trim() === "") return "WORKFLOW_NAME is not a non-empty string";
  if (typeof handler !== "function") return `WORKFLOW_NAME is "${name}" but there is no exported handler function`;
  const input = exports.Input;
  if (input !== undefined && !isStandardSchema(input)) {
    return `Input of workflow "${name}" is not a Standard Schema validator (zod, valibot, arktype, ...)`;
  }
  return [{ name, file, input, handler: handler as Handler }];
}

/** Exports that show the file was meant to be a workflow: a handler, a WORKFLOW_NAME, an Input, or a definition-like object. */
function nearMiss(exports: Record<string, unknown>): boolean {
  if ("handler" in exports || "WORKFLOW_NAME" in exports || "Input" in exports) return true;
  return Object.values(exports).some((value) => typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "cairn.workflow");
}

function isDefinition(
  value: unknown,
): value is { name: string; input?: StandardSchemaV1; timeout?: Duration; schedules?: readonly WorkflowSchedule<unknown>[]; handler: Handler } {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as { kind?: unknown; name?: unknown; handler?: unknown; input?: unknown };
  return (
    candidate.kind === "cairn.workflow" &&
    typeof candidate.name === "string" &&
    typeof candidate.handler === "function" &&
    (candidate.input === undefined || isStandardSchema(candidate.input))
  );
}

function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const standard = (value as { "~standard"?: { version?: unknown; validate?: unknown } })["~standard"];
  return typeof standard === "object" && standard !== null && standard.version === 1 && typeof standard.validate === "function";
}
