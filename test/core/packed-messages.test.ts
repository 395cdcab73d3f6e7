import { MessageChannel, receiveMessageOnPort } from "node:worker_threads";
import { afterAll, describe, expect, it } from "vitest";
import { packFromThread, packToThread, unpackFromThread, unpackToThread } from "../../server/worker/threads/packed-messages.js";
import type { FromThread, ToThread } from "../../server/worker/threads/protocol.js";

// Each batch crosses a real MessageChannel: what is checked is what the other thread would get.
const { port1, port2 } = new MessageChannel();
afterAll(() => port1.close());

function across<T>(value: T): T {
  port1.postMessage(value);
  return (receiveMessageOnPort(port2) as { message: T }).message;
}

const startedAt = new Date("2026-12-07T05:20:00.123Z");
const appendWithAttempt: FromThread = {
  t: "call",
  id: 7,
  call: 3,
  op: "append",
  arg: { kind: "step_completed", name: "charge", attempt: 2, startedAt, result: { ok: true, cents: 1250, items: ["a", null] } },
  attempt: { step: { name: "charge", attempt: 2, startedAt: startedAt.getTime() }, outcome: "completed", elapsedMs: 0.0421 },
};
const appendAfterWithoutResult: FromThread = { t: "call", id: 8, call: 1, op: "append", arg: { kind: "step_completed", name: "notify", attempt: 1, startedAt }, after: true };
const appendNullResult: FromThread = { t: "call", id: 9, call: 4, op: "append", arg: { kind: "step_completed", name: "n", attempt: 1, startedAt, result: null } };
const appendAttemptWithoutStart: FromThread = { t: "call", id: 9, call: 5, op: "append", arg: { kind: "step_completed", name: "n", attempt: 1, startedAt, result: 0 }, attempt: { step: { name: "n", attempt: 1 }, outcome: "failed", elapsedMs: 3 } };

describe("packed thread messages", () => {
  it("give back every message of a thread's batch, equal and in order, whether packed or not", () => {
    const messages: FromThread[] = [
      appendWithAttempt,
      { t: "log", id: 7, level: "info", message: "hello", fields: { when: startedAt } },
      appendAfterWithoutResult,
      // Not packed: another entry kind; an attempt that is not the entry's step.
      { t: "call", id: 8, call: 2, op: "append", arg: { kind: "timer_started", name: "wait", attempt: 1, startedAt, fireAt: new Date(startedAt.getTime() + 5000) } },
      { ...appendNullResult, attempt: { step: { name: "other", attempt: 1, startedAt: 1 }, outcome: "retrying", elapsedMs: 1 } },
      appendNullResult,
      appendAttemptWithoutStart,
      { t: "call", id: 7, call: 4, op: "suspend", arg: [{ kind: "timer", name: "wait" }], after: true },
      { t: "done", id: 7, outcome: { kind: "completed", output: { sum: 90 } } },
      { t: "answered", n: 12 },
      // Ended attempts told alone (the thread wrote their entries itself): packed, with or without a start time; one
      // with a timeout is not.
      { t: "attempt_done", id: 8, step: { name: "ship", attempt: 3, startedAt: startedAt.getTime() }, outcome: "retrying", elapsedMs: 12.5 },
      { t: "attempt_done", id: 8, step: { name: "ship", attempt: 4 }, outcome: "completed", elapsedMs: 0 },
      { t: "attempt_done", id: 8, step: { name: "slow", attempt: 1, timeout: { ms: 100 } } as never, outcome: "failed", elapsedMs: 101 },
    ];
    const packed = packFromThread(messages);
    const unpacked = unpackFromThread(across(packed));
    expect(unpacked).toEqual(messages);
    // Dates are Dates again, and absent stays absent (a step that returned nothing is not one that returned null).
    const entry = (unpacked[0] as Extract<FromThread, { t: "call" }>).arg as { startedAt: Date };
    expect(entry.startedAt).toBeInstanceOf(Date);
    expect(entry.startedAt.getTime()).toBe(startedAt.getTime());
    expect("result" in ((unpacked[2] as Extract<FromThread, { t: "call" }>).arg as object)).toBe(false);
    expect((unpacked[5] as Extract<FromThread, { t: "call" }>).arg).toHaveProperty("result", null);
    expect("after" in (unpacked[0] as object)).toBe(false);
    expect("startedAt" in (unpacked[6] as Extract<FromThread, { t: "call" }>).attempt!.step).toBe(false);
    expect("startedAt" in (unpacked[11] as Extract<FromThread, { t: "attempt_done" }>).step).toBe(false);
    // The appends of completed steps and the attempts without a timeout are packed: no object crosses for them (the
    // result's value aside).
    expect((packed as unknown[]).filter((item) => typeof item === "object" && item !== null && "t" in item)).toHaveLength(7);
  });

  it("give back a thread's statement report: completed steps as their fields, other entries as they are", () => {
    const committed: FromThread = {
      t: "committed",
      statement: 41,
      entries: [
        { id: 7, sequence: 3, createdAt: startedAt.getTime() + 5, entry: { kind: "step_completed", name: "charge", attempt: 2, startedAt, result: { ok: true, items: ["a", null] } } },
        { id: 8, sequence: 1, createdAt: startedAt.getTime() + 6, entry: { kind: "step_completed", name: "notify", attempt: 1, startedAt } },
        { id: 8, sequence: 2, createdAt: startedAt.getTime() + 6, entry: { kind: "step_completed", name: "n", attempt: 1, startedAt, result: null } },
        { id: 9, sequence: 4, createdAt: startedAt.getTime() + 7, entry: { kind: "timer_started", name: "wait", attempt: 1, startedAt, fireAt: new Date(startedAt.getTime() + 5000) } },
      ],
    };
    const empty: FromThread = { t: "committed", statement: 42, entries: [] };
    const messages: FromThread[] = [committed, { t: "done", id: 7, outcome: { kind: "completed", output: 1 } }, empty];
    const packed = packFromThread(messages);
    const unpacked = unpackFromThread(across(packed));
    expect(unpacked).toEqual(messages);
    const entries = (unpacked[0] as Extract<FromThread, { t: "committed" }>).entries;
    expect(entries[0]!.entry.startedAt).toBeInstanceOf(Date);
    expect("result" in entries[1]!.entry).toBe(false);
    expect(entries[2]!.entry).toHaveProperty("result", null);
    // Alone, a report is packed too.
    expect(unpackFromThread(across(packFromThread([committed])))).toEqual([committed]);
  });

  it("send a message alone as it is, and a lone append packed", () => {
    const log: FromThread = { t: "pong", seq: 4 };
    expect(packFromThread([log])).toBe(log);
    expect(unpackFromThread(across(packFromThread([log])))).toEqual([log]);
    expect(Array.isArray(packFromThread([appendWithAttempt]))).toBe(true);
    expect(unpackFromThread(across(packFromThread([appendWithAttempt])))).toEqual([appendWithAttempt]);
  });

  it("give back every message of the main thread's batch: replies to appends packed, the rest as they are", () => {
    const messages: ToThread[] = [
      { t: "reply", id: 7, call: 3, ok: true, value: undefined },
      { t: "reply", id: 8, call: 1, ok: true, value: { found: [1, 2] } },
      { t: "reply", id: 9, call: 2, ok: false, error: { name: "LeaseLostError", message: "gone", ref: 3 } },
      { t: "abort", id: 10, reason: { name: "Error", message: "cancelled" } },
      { t: "ping", seq: 5, leases: [[7, 1_800_000_000_000]] },
      { t: "reply", id: 10, call: 9, ok: true, value: undefined },
    ];
    const packed = packToThread(messages);
    expect(unpackToThread(across(packed))).toEqual(messages);
    expect((packed as unknown[]).filter((item) => typeof item === "object")).toHaveLength(4);
    const alone: ToThread = { t: "reply", id: 1, call: 1, ok: true, value: 0 };
    expect(packToThread([alone])).toBe(alone);
    expect(unpackToThread(across(packToThread([{ t: "reply", id: 1, call: 2, ok: true, value: undefined }])))).toEqual([{ t: "reply", id: 1, call: 2, ok: true, value: undefined }]);
  });
});
