/**
 * The wire comparison's Connect client in a few lines of plain `fetch`:
 * unary calls are JSON POSTs, WatchRun is a Connect server stream
 * (application/connect+json: 5-byte envelopes, flag 0x02 on the end-of-stream
 * message). Node's fetch (undici) speaks HTTP/1.1 with a keep-alive pool, so
 * every call or stream in flight holds a connection of its own.
 */
import { finalStatuses, type Observation, statusName, type WireClient } from "./wire.js";

const servicePath = "cairn.v1.WorkflowService";
const endOfStream = 0x02;
/** One AwaitRun waits at most this long; the client calls it again until the run ends. */
const awaitSliceSeconds = 30;

type JsonRun = { runId: string; status: string };

export function fetchWire(baseUrl: string): WireClient {
  const url = (method: string) => `${baseUrl.replace(/\/$/, "")}/${servicePath}/${method}`;
  const unary = async <T>(method: string, body: object, signal?: AbortSignal): Promise<T> => {
    const response = await fetch(url(method), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method}: HTTP ${response.status} ${text.slice(0, 200)}`);
    return JSON.parse(text) as T;
  };
  // The run's end is known at its final message; the body is then read on to the server's end-of-stream rather than
  // aborted, as a client that keeps its connection does: aborting a response mid-body costs undici the HTTP/1.1
  // connection (the next call opens a new one).
  const watchEnd = (runId: string, signal: AbortSignal): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      let settled = false;
      const settle = (error: Error | undefined, status?: string) => {
        if (settled) return;
        settled = true;
        if (error) reject(error);
        else resolve(status as string);
      };
      readWatch(runId, signal, (status) => settle(undefined, status)).then(
        () => settle(new Error(`run ${runId}: the watch stream ended before the run did`)),
        (error: unknown) => settle(error instanceof Error ? error : new Error(String(error))),
      );
    });
  /** Reads one WatchRun to its end-of-stream message, telling `onFinal` of the run's final status when it comes. */
  const readWatch = async (runId: string, signal: AbortSignal, onFinal: (status: string) => void): Promise<void> => {
    const stop = new AbortController();
    const abort = () => stop.abort();
    signal.addEventListener("abort", abort);
    // A server that does not end the stream soon after the final status is a defect the bench should not hide.
    let lingering: NodeJS.Timeout | undefined;
    try {
      const json = new TextEncoder().encode(JSON.stringify({ runId }));
      const envelope = new Uint8Array(5 + json.length);
      new DataView(envelope.buffer).setUint32(1, json.length);
      envelope.set(json, 5);
      const response = await fetch(url("WatchRun"), { method: "POST", headers: { "content-type": "application/connect+json" }, body: envelope, signal: stop.signal });
      if (!response.ok || !response.body) throw new Error(`WatchRun: HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
      let buffered = new Uint8Array(0);
      let final: string | undefined;
      const decoder = new TextDecoder();
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        const joined = new Uint8Array(buffered.length + chunk.length);
        joined.set(buffered);
        joined.set(chunk, buffered.length);
        buffered = joined;
        while (buffered.length >= 5) {
          const view = new DataView(buffered.buffer, buffered.byteOffset, buffered.byteLength);
          const flags = view.getUint8(0);
          const length = view.getUint32(1);
          if (buffered.length < 5 + length) break;
          const message = JSON.parse(decoder.decode(buffered.subarray(5, 5 + length))) as { run?: JsonRun; error?: { code: string; message?: string } };
          buffered = buffered.subarray(5 + length);
          if (flags & endOfStream) {
            if (message.error) throw new Error(`WatchRun: ${message.error.code} ${message.error.message ?? ""}`);
            if (final) return;
            throw new Error(`run ${runId}: the watch stream ended before the run did`);
          }
          const status = message.run ? statusName(message.run.status) : undefined;
          if (status && finalStatuses.includes(status) && !final) {
            final = status;
            onFinal(status);
            lingering = setTimeout(() => stop.abort(), 5_000);
          }
        }
      }
      throw new Error(`run ${runId}: the watch stream closed without an end-of-stream message`);
    } finally {
      clearTimeout(lingering);
      signal.removeEventListener("abort", abort);
      stop.abort();
    }
  };
  return {
    wire: "fetch",
    createRun: async (workflowName, input) => (await unary<{ run: JsonRun }>("CreateRun", { workflowName, input, eagerStart: true })).run.runId,
    status: async (runId) => statusName((await unary<{ run: JsonRun }>("GetRun", { runId })).run.status),
    sendEvent: async (eventType, correlationId, payload) => (await unary<{ matchedRunIds?: string[] }>("SendEvent", { eventType, correlationId, payload })).matchedRunIds ?? [],
    async observeEnd(runId: string, how: Observation, signal: AbortSignal): Promise<string> {
      if (how === "watch") return watchEnd(runId, signal);
      for (;;) {
        if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
        const { run } = await unary<{ run: JsonRun }>("AwaitRun", { runId, timeout: `${awaitSliceSeconds}s` }, signal);
        const status = statusName(run.status);
        if (finalStatuses.includes(status)) return status;
      }
    },
    close: () => undefined,
  };
}
