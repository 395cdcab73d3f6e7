/**
 * Argument helpers shared by the commands: the usage error every parsing mistake becomes
 * (exit code 3), and the readers for JSON values given inline or from a file.
 */
import { readFile } from "node:fs/promises";
import type { JsonObject, JsonValue, RunStatusName } from "../sdk/index.js";

/** The command line was wrong: the message and the command's usage go to stderr, exit code 3. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The command could not reach what it works on (a server, a database): exit code 3. */
export class UnreachableError extends Error {
  override readonly name = "UnreachableError";
}

/** Parses `text` as JSON; `what` names the flag in the error ("--input", "--payload"). */
export function parseJson(text: string, what: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new UsageError(`${what} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Reads a JSON file, or standard input for "-". */
export async function readJsonFile(path: string, what: string): Promise<JsonValue> {
  let text: string;
  try {
    text = path === "-" ? await readStdin() : await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`${what}: cannot read ${path === "-" ? "standard input" : path}: ${(error as Error).message}`);
  }
  return parseJson(text, `${what} ${path === "-" ? "(standard input)" : path}`);
}

/** A JSON value given either inline (`--input '{...}'`) or as a file (`--input-file f.json`), at most one of them. */
export async function jsonOption(inline: string | undefined, file: string | undefined, flag: string): Promise<JsonValue | undefined> {
  if (inline !== undefined && file !== undefined) throw new UsageError(`use either --${flag} or --${flag}-file, not both`);
  if (inline !== undefined) return parseJson(inline, `--${flag}`);
  if (file !== undefined) return readJsonFile(file, `--${flag}-file`);
  return undefined;
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function positiveInteger(raw: string, flag: string): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < 1) throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** "2026-01-31T12:00:00Z" (any string Date parses) → a Date; anything else is a usage error naming the flag. */
export function instant(raw: string, flag: string): Date {
  const date = new Date(raw);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${flag} must be an instant such as 2026-01-31T12:00:00Z, got ${JSON.stringify(raw)}`);
  return date;
}

/** Repeated `--meta KEY=VALUE` → { KEY: VALUE }; the value may itself contain '='. */
export function keyValuePairs(raw: readonly string[], flag: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const item of raw) {
    const at = item.indexOf("=");
    if (at < 1) throw new UsageError(`${flag} takes KEY=VALUE, got ${JSON.stringify(item)}`);
    pairs[item.slice(0, at)] = item.slice(at + 1);
  }
  return pairs;
}

export const runStatusNames: readonly RunStatusName[] = ["queued", "running", "waiting", "paused", "completed", "failed", "cancelled"];

/** "completed,FAILED" or "RUN_STATUS_WAITING" → the SDK's lower-case names. */
export function parseStatuses(raw: string): RunStatusName[] {
  return raw
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const name = part.toLowerCase().replace(/^run_status_/, "");
      const status = runStatusNames.find((candidate) => candidate === name);
      if (!status) throw new UsageError(`unknown status ${JSON.stringify(part)}; use one or more of ${runStatusNames.join(", ")} (comma-separated)`);
      return status;
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}
