/**
 * A workflow file that fails to import stops start-up; the message names the file, the cause in
 * one line and, where it is clear, the fix, instead of a stack trace.
 */
import { dirname } from "node:path";
import { pathToFileURL } from "node:url";

export function describeLoadFailure(file: string, error: unknown): string {
  const cause = error instanceof Error ? error : new Error(String(error));
  const code = (cause as NodeJS.ErrnoException).code;
  const firstLine = cause.message.split("\n")[0] ?? "";
  const missingPackage = /Cannot find package '([^']+)'/.exec(cause.message)?.[1];
  if (code === "ERR_MODULE_NOT_FOUND" && missingPackage) {
    const name = missingPackage.startsWith("@") ? missingPackage.split("/").slice(0, 2).join("/") : missingPackage.split("/")[0];
    return (
      `workflow file ${file} failed to load: it imports the package "${name}", which is not installed where the file is. ` +
      `Fix: run \`npm i ${name}\` in ${dirname(file)} (or a folder above it)`
    );
  }
  if (code === "ERR_MODULE_NOT_FOUND") {
    return `workflow file ${file} failed to load: ${firstLine}. Fix: check the import path (relative imports need the file extension, e.g. "./lib.js")`;
  }
  // Where in the workflow file it went wrong, when the stack says so (syntax errors, top-level throws).
  const fileUrl = pathToFileURL(file).href;
  const where = (cause.stack ?? "").split("\n").find((line) => line.includes(fileUrl) || line.includes(file))?.trim();
  return `workflow file ${file} failed to load: ${cause.name}: ${firstLine}${where ? ` (${where.replace(/^at /, "at ")})` : ""}`;
}
