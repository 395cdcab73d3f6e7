/**
 * Loaded into each bench server process before server/main.ts
 * (`node --expose-gc --import tsx --import ./bench/server-probe.ts server/main.ts`).
 * It touches nothing of the server: it only answers the bench's questions
 * over the IPC channel that the bench opened, with what only the process
 * itself can see: heap figures after a forced GC, and process.cpuUsage()
 * (microseconds, finer than /proc's 10 ms ticks).
 */
import type { ProbeReply, ProbeRequest } from "./probe-protocol.js";

const gc: unknown = Reflect.get(globalThis, "gc");

function answer(request: ProbeRequest): ProbeReply {
  if (request.gc && typeof gc === "function") {
    // Twice: finalizers and weak callbacks of the first pass release more on the second.
    Reflect.apply(gc, globalThis, []);
    Reflect.apply(gc, globalThis, []);
  }
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
  const { user, system } = process.cpuUsage();
  return { id: request.id, gcForced: request.gc && typeof gc === "function", memory: { rss, heapUsed, heapTotal, external, arrayBuffers }, cpuMicros: user + system };
}

if (process.send) {
  process.on("message", (message: ProbeRequest) => {
    process.send?.(answer(message));
  });
  // The channel alone must not keep the server alive (main.ts exits on its own after a graceful close).
  process.channel?.unref();
}
