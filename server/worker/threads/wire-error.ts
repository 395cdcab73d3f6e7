/**
 * Errors across the thread boundary. Structured clone keeps neither the class nor extra fields, so an error goes as
 * name + message (+ stack); one the main thread sent keeps a `ref` so that, when it comes back as an activation's
 * abort reason, the main thread gets its own object again (the executor tells LeaseLostError, RunCancelRequestedError
 * or ShutdownError apart by class). On the thread, the few Cairn errors the core tests by class are rebuilt as such.
 */
import { InvalidInputError, PayloadTooLargeError, WorkflowNotFoundError } from "../../core/errors.js";
import type { WireError } from "./protocol.js";

const refKey = Symbol("cairn.wireRef");

export function toWire(error: unknown, ref?: number): WireError {
  const tagged = (error as { [refKey]?: number } | null)?.[refKey];
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack, ref: ref ?? tagged };
  return { name: "Error", message: String(error), ref: ref ?? tagged };
}

/** The core checks these by class (a child's bad request is journaled, not fatal). */
const rebuilt: Record<string, { prototype: Error }> = { WorkflowNotFoundError, InvalidInputError, PayloadTooLargeError };

export function fromWire(wire: WireError): Error {
  const error: Error = wire.name in rebuilt ? (Object.create((rebuilt[wire.name] as { prototype: Error }).prototype) as Error) : new Error();
  Object.defineProperty(error, "name", { value: wire.name, writable: true, configurable: true });
  Object.defineProperty(error, "message", { value: wire.message, writable: true, configurable: true });
  if (wire.stack) Object.defineProperty(error, "stack", { value: wire.stack, writable: true, configurable: true });
  if (wire.ref !== undefined) Object.assign(error, { [refKey]: wire.ref });
  return error;
}

/** Keeps the main thread's own error objects by ref while their activation runs. */
export class ErrorRefs {
  private next = 1;
  private readonly byRef = new Map<number, unknown>();

  toWire(error: unknown): WireError {
    const ref = this.next++;
    this.byRef.set(ref, error);
    return toWire(error, ref);
  }

  /** The original of an error that came back, or an Error rebuilt from it. */
  resolve(wire: WireError): unknown {
    return wire.ref !== undefined && this.byRef.has(wire.ref) ? this.byRef.get(wire.ref) : fromWire(wire);
  }
}
