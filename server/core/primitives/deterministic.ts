/**
 * Values a workflow must not take from the world directly, because a replay
 * would see different ones: `ctx.now()`, `ctx.random()`, `ctx.uuid()`; and
 * `ctx.patched(id)` / `ctx.deprecatePatch(id)`, which let new code branch
 * away from what old runs recorded.
 *
 * Each call is an operation named by its count in the run (`$now#1`,
 * `$uuid#2`) or by its patch id (`$patch:new-fee`), settled at once (the
 * methods are synchronous). Its entry costs no commit of its own: the kernel
 * `defer`s it, and it is written in the same statement as the run's next
 * entry (or with the activation's final write). If the process dies before
 * that, nothing durable depended on the value yet and the replay draws a new
 * one — a step that used it and had not committed runs again anyway.
 */
import type { EntryDescriptors, OperationKernel } from "./primitive.js";
import type { WorkflowContext } from "../../../sdk/workflow.js";
import type { NewEntry } from "../journal.js";

type ValueKind = "now_recorded" | "random_recorded" | "uuid_recorded";

export const deterministicEntries: EntryDescriptors<ValueKind | "patch_marked"> = {
  now_recorded: { operation: "value", summary: (entry) => `${entry.name} recorded ${new Date(entry.result).toISOString()}` },
  random_recorded: { operation: "value", summary: (entry) => `${entry.name} recorded ${entry.result}` },
  uuid_recorded: { operation: "value", summary: (entry) => `${entry.name} recorded ${entry.result}` },
  patch_marked: { operation: "patch", summary: (entry) => `patch ${entry.name.slice(patchPrefix.length)} taken` },
};

const patchPrefix = "$patch:";

export function patchOperationName(id: string): string {
  return `${patchPrefix}${id}`;
}

export function deterministicContext(kernel: OperationKernel): Pick<WorkflowContext, "now" | "random" | "uuid" | "patched" | "deprecatePatch"> {
  // Per activation: the handler runs from the start each activation, so counts line up with the journal's names.
  const counts = { now: 0, random: 0, uuid: 0 };
  const patches = new Map<string, boolean>();

  function value<T extends number | string>(label: keyof typeof counts, kind: ValueKind, draw: () => T): T {
    const name = `$${label}#${++counts[label]}`;
    const { operation, recorded } = kernel.register<never>(name, "value");
    operation.settled = true;
    const entry = recorded.find((e) => e.kind === kind);
    if (entry && "result" in entry) return entry.result as T;
    const drawn = draw();
    kernel.defer({ kind, name, result: drawn, attempt: 1, startedAt: kernel.host.now() } as NewEntry, operation);
    return drawn;
  }

  function patch(id: string, deprecated: boolean): boolean {
    if (typeof id !== "string" || id.length === 0) throw kernel.fail(invalidPatch(id), false);
    const known = patches.get(id);
    if (known !== undefined) return known;
    const name = patchOperationName(id);
    const recorded = kernel.recorded(name).some((e) => e.kind === "patch_marked");
    let taken: boolean;
    if (recorded) {
      // Registered so that replay delivers the marker where it was recorded.
      kernel.register<never>(name, "patch").operation.settled = true;
      taken = true;
    } else if (deprecated) {
      // The old branch is gone: every run takes the new code, and new runs journal nothing.
      taken = true;
    } else if (kernel.replaying()) {
      // Inside recorded history without the marker: this run passed here on code without the patch.
      taken = false;
    } else {
      const { operation } = kernel.register<never>(name, "patch");
      operation.settled = true;
      kernel.defer({ kind: "patch_marked", name, attempt: 1, startedAt: kernel.host.now() }, operation);
      taken = true;
    }
    patches.set(id, taken);
    return taken;
  }

  return {
    now: () => new Date(value("now", "now_recorded", () => kernel.host.now().getTime())),
    random: () => value("random", "random_recorded", () => Math.random()),
    uuid: () => value("uuid", "uuid_recorded", () => crypto.randomUUID()),
    patched: (id) => patch(id, false),
    deprecatePatch: (id) => {
      patch(id, true);
    },
  };
}

function invalidPatch(id: unknown): Error {
  const error = new Error(`ctx.patched / ctx.deprecatePatch need a non-empty string id (got ${JSON.stringify(id)})`);
  error.name = "InvalidOperationError";
  return error;
}
