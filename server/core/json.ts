/**
 * JSON discipline for journaled values. Everything a run records must come
 * back identical on replay, so values that JSON would silently change (Dates,
 * Maps, class instances, NaN, undefined in arrays) are refused with the path
 * of the offending part rather than stored mangled.
 */
import { AgentTurnFailedError, ChildWorkflowFailedError, type JsonValue } from "../../sdk/workflow.js";
import { NonJsonValueError, PayloadTooLargeError } from "./errors.js";

export interface FailureInfo {
  name: string;
  message: string;
  stack?: string;
  details?: JsonValue;
}

/** Returns `value` typed as JSON, or throws NonJsonValueError naming the first bad path. */
export function toJsonValue(value: unknown, what: string): JsonValue {
  const problem = findNonJson(value, "$", new Set());
  if (problem) {
    throw new NonJsonValueError(
      `${what} cannot be stored as JSON: ${problem}. Return plain objects, arrays, strings, finite numbers, booleans or null (e.g. date.toISOString() instead of a Date)`,
    );
  }
  return value as JsonValue;
}

/** A UTF-16 surrogate without its pair: not Unicode, so no JSON text (and no PostgreSQL jsonb) can hold it. */
const unpairedSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether JSON.stringify output carries an unpaired surrogate: it writes them, and only them, as `\udXXX` escapes. */
export function hasUnpairedSurrogate(jsonText: string): boolean {
  return /(?<!\\)(?:\\\\)*\\ud[89a-f]/.test(jsonText);
}

/**
 * For a JSON value from a request, serialised as `jsonText`: what makes it unstorable (an unpaired surrogate, or
 * nesting deeper than maxJsonDepth), with its path under `field`, or undefined. Scans the text, and walks the value
 * only to name the path of a problem.
 */
export function requestJsonProblem(value: unknown, jsonText: string, field: string): string | undefined {
  if (!hasUnpairedSurrogate(jsonText) && !(jsonText.length > 2 * maxJsonDepth && jsonTextDepth(jsonText) > maxJsonDepth)) return undefined;
  return jsonProblem(value, field) ?? `${field} cannot be stored as JSON`;
}

/** The deepest nesting of arrays and objects in a JSON text. */
function jsonTextDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > deepest) deepest = depth;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return deepest;
}

/** What makes `value` unstorable as JSON, with its path under `root`, or undefined. */
export function jsonProblem(value: unknown, root: string): string | undefined {
  return findNonJson(value, root, new Set());
}

/**
 * Deepest nesting of arrays and objects a journaled value may have. Each JSON level is two protobuf messages
 * (Value, then Struct or ListValue), and protobuf decoders stop at 100 levels (protobuf-es, and most others):
 * deeper values could be stored but never read back through the API.
 */
export const maxJsonDepth = 48;

/**
 * What makes `value` unstorable as JSON, with its path under `root`, or undefined. The path is spelled out only for a
 * problem: a journaled value is checked on every step, and building `$.a[3].b` for every part that is fine was most of
 * the check's garbage.
 */
function findNonJson(value: unknown, root: string, seen: Set<object>): string | undefined {
  const path: (string | number)[] = [];
  const problem = findNonJsonAt(value, path, seen, 0);
  return problem === undefined ? undefined : `${pathText(root, path)}${problem}`;
}

function pathText(root: string, path: readonly (string | number)[]): string {
  let text = root;
  for (const part of path) text += typeof part === "number" ? `[${part}]` : `.${part}`;
  return text;
}

/** The problem with `value` (at `path`, which it extends while it looks and leaves at the problem), as the end of a sentence that starts with the path. */
function findNonJsonAt(value: unknown, path: (string | number)[], seen: Set<object>, depth: number): string | undefined {
  switch (typeof value) {
    case "string":
      return unpairedSurrogate.test(value) ? " contains an unpaired UTF-16 surrogate, which is not Unicode" : undefined;
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : ` is ${value}`;
    case "undefined":
      return " is undefined";
    case "bigint":
    case "symbol":
    case "function":
      return ` is a ${typeof value}`;
  }
  if (value === null) return undefined;
  if (depth >= maxJsonDepth) return ` nests arrays and objects deeper than ${maxJsonDepth} levels`;
  const object = value as object;
  if (seen.has(object)) return " is a circular reference";
  seen.add(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      path.push(i);
      const problem = findNonJsonAt(object[i], path, seen, depth + 1);
      if (problem) return problem;
      path.pop();
    }
    seen.delete(object);
    return undefined;
  }
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const kind = (object as { constructor?: { name?: string } }).constructor?.name ?? "object";
    return ` is a ${kind}, not a plain object`;
  }
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue;
    if (unpairedSurrogate.test(key)) return " has a key with an unpaired UTF-16 surrogate, which is not Unicode";
    const item = (object as Record<string, unknown>)[key];
    // JSON drops undefined properties; accept them as "absent", like JSON.stringify does.
    if (item === undefined) continue;
    path.push(key);
    const problem = findNonJsonAt(item, path, seen, depth + 1);
    if (problem) return problem;
    path.pop();
  }
  seen.delete(object);
  return undefined;
}

/** A size limit on a journaled value, with the setting that configures it (named in the error). */
export interface SizeLimit {
  bytes: number;
  setting: string;
}

/** Size limits the engine enforces on values a workflow journals (absent: unlimited, as in engine tests). */
export interface ValueLimits {
  /** Step results and the run's output: CAIRN_MAX_STEP_RESULT_BYTES. */
  stepResultBytes?: number;
  /** Child run inputs and agent requests: CAIRN_MAX_INPUT_BYTES. */
  inputBytes?: number;
  /** A run's journal, results and errors in all: CAIRN_MAX_JOURNAL_BYTES (journal-budget.ts). */
  journalBytes?: number;
}

export const stepResultLimit = (limits: ValueLimits | undefined): SizeLimit | undefined =>
  limits?.stepResultBytes === undefined ? undefined : { bytes: limits.stepResultBytes, setting: "CAIRN_MAX_STEP_RESULT_BYTES" };
export const inputLimit = (limits: ValueLimits | undefined): SizeLimit | undefined =>
  limits?.inputBytes === undefined ? undefined : { bytes: limits.inputBytes, setting: "CAIRN_MAX_INPUT_BYTES" };

/**
 * `toJsonValue` + `normalizeJson` with one serialisation, refusing a value over `limit` with a
 * PayloadTooLargeError (`step "fetch" result is 2000000 bytes, over the limit of 1048576 bytes (CAIRN_MAX_STEP_RESULT_BYTES)`).
 */
export function storedJson(value: unknown, what: string, limit?: SizeLimit): JsonValue {
  const text = JSON.stringify(toJsonValue(value, what));
  if (limit) checkSize(text, what, limit);
  return JSON.parse(text) as JsonValue;
}

/** Throws PayloadTooLargeError when the JSON text of a value is over the limit. */
export function checkSize(jsonText: string, what: string, limit: SizeLimit): void {
  // UTF-8 needs at most 3 bytes per UTF-16 unit: most values are cleared without counting.
  if (jsonText.length * 3 <= limit.bytes) return;
  const size = utf8Bytes(jsonText);
  if (size > limit.bytes) throw new PayloadTooLargeError(what, size, limit.bytes, limit.setting);
}

/** Drops undefined object properties so the stored value equals what replay returns. */
export function normalizeJson(value: JsonValue): JsonValue {
  return JSON.parse(JSON.stringify(value)) as JsonValue;
}

export function toFailureInfo(error: unknown): FailureInfo {
  if (error instanceof Error) {
    // Recorded as jsonb: an unpaired surrogate in a message would make the write fail on every replay.
    const info: FailureInfo = { name: wellFormed(String(error.name || "Error")), message: wellFormed(String(error.message)) };
    if (error.stack) info.stack = wellFormed(error.stack);
    const details = (error as { details?: unknown }).details;
    if (details !== undefined && findNonJson(details, "$", new Set()) === undefined) {
      info.details = normalizeJson(details as JsonValue);
    }
    return info;
  }
  let message: string;
  try {
    message = typeof error === "string" ? error : JSON.stringify(error) ?? String(error);
  } catch {
    message = String(error);
  }
  return { name: "Error", message: wellFormed(`non-Error thrown: ${message}`) };
}

/** Unpaired surrogates replaced by U+FFFD, as a UTF-8 encoder would. */
export function wellFormed(text: string): string {
  return unpairedSurrogate.test(text) ? text.replace(new RegExp(unpairedSurrogate.source, "g"), "\ufffd") : text;
}

/** Rebuilds a recorded failure as an Error with the same name, message and stack (class identity is kept for Cairn's own errors). */
export function failureToError(info: FailureInfo): Error {
  if (info.name === "ChildWorkflowFailedError" && isChildDetails(info.details)) {
    const { childRunId, workflowName, status, failure } = info.details;
    return new ChildWorkflowFailedError(childRunId, workflowName, status, failure);
  }
  if (info.name === "AgentTurnFailedError" && isTurnDetails(info.details)) {
    return new AgentTurnFailedError(info.details.turnId, info.details.agent, info.details.failure);
  }
  const error = new Error(info.message);
  error.name = info.name;
  if (info.stack) error.stack = info.stack;
  if (info.details !== undefined) Object.assign(error, { details: info.details });
  return error;
}

function isTurnDetails(details: JsonValue | undefined): details is { turnId: string; agent: string; failure: { name: string; message: string } } {
  if (typeof details !== "object" || details === null || Array.isArray(details)) return false;
  const failure = details.failure;
  return (
    typeof details.turnId === "string" &&
    typeof details.agent === "string" &&
    typeof failure === "object" &&
    failure !== null &&
    !Array.isArray(failure) &&
    typeof failure.name === "string" &&
    typeof failure.message === "string"
  );
}

function isChildDetails(details: JsonValue | undefined): details is {
  childRunId: string;
  workflowName: string;
  status: string;
  failure: { name: string; message: string };
} {
  if (typeof details !== "object" || details === null || Array.isArray(details)) return false;
  const failure = details.failure;
  return (
    typeof details.childRunId === "string" &&
    typeof details.workflowName === "string" &&
    typeof details.status === "string" &&
    typeof failure === "object" &&
    failure !== null &&
    !Array.isArray(failure) &&
    typeof failure.name === "string" &&
    typeof failure.message === "string"
  );
}

/** Structural equality of JSON values, ignoring object key order (PostgreSQL's jsonb reorders keys). */
export function sameJson(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameJson(item, b[i] as JsonValue));
  }
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => key in b && sameJson(a[key] as JsonValue, b[key] as JsonValue));
}

/**
 * UTF-8 length of a string (what the store and the wire count), without Node's Buffer. Counted from the UTF-16 code
 * units rather than by encoding: every step result is measured, and an encoder allocates a copy of each just to
 * take its length. A lone surrogate counts 3 bytes, as the encoder writes U+FFFD for it.
 */
export function utf8Bytes(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) bytes += 1;
    else if (unit >= 0xd800 && unit < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A surrogate pair: two units, four bytes.
      bytes += 2;
      i++;
    } else bytes += 2;
  }
  return bytes;
}
