/**
 * The one check for JSON a caller hands in (a run's input, an event's
 * payload, an agent's result): under its size limit, and text PostgreSQL can
 * store. The three used to be three copies.
 */
import type { JsonValue } from "../../sdk/workflow.js";
import { InvalidInputError, PayloadTooLargeError } from "../core/errors.js";
import { requestJsonProblem } from "../core/json.js";

export interface PayloadLimit {
  bytes: number;
  /** The setting that raises it, named in the error. */
  setting: string;
}

export function checkPayload(value: JsonValue, field: string, limit: PayloadLimit): void {
  const text = JSON.stringify(value);
  const size = Buffer.byteLength(text);
  if (size > limit.bytes) throw new PayloadTooLargeError(field, size, limit.bytes, limit.setting);
  const problem = requestJsonProblem(value, text, field);
  if (problem) throw new InvalidInputError(problem);
}
