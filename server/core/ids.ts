/** Ids that are pure functions of their inputs, so a replay after a crash derives the same child and turn ids. */
import { sha256 } from "@noble/hashes/sha2.js";

/** A UUID (version 8) derived from a run id and a name. */
export function derivedId(runId: string, name: string): string {
  const bytes = sha256(new TextEncoder().encode(`${runId}\u0000${name}`));
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x80; // UUID version 8 (custom)
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** A child's run id is a function of its parent and the operation name: creating it twice finds the first. */
export function childRunId(parentRunId: string, name: string): string {
  return derivedId(parentRunId, name);
}

/** An agent turn's id, derived the same way under its own prefix. */
export function agentTurnId(runId: string, name: string): string {
  return derivedId(runId, `agent:${name}`);
}
