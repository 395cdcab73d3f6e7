/** The wire comparison's SDK client: createCairnClient over its own HTTP/2 transport (see client.ts). */
import { sdkClient } from "./client.js";
import type { JsonObject } from "../sdk/workflow.js";
import { finalStatuses, type Observation, type WireClient } from "./wire.js";

export function sdkWire(baseUrl: string): WireClient {
  const client = sdkClient(baseUrl, "2");
  return {
    wire: "sdk",
    createRun: async (workflowName, input) => (await client.createRun(workflowName, input as JsonObject, { eagerStart: true })).runId,
    status: async (runId) => (await client.getRun(runId)).status,
    sendEvent: async (eventType, correlationId, payload) => (await client.sendEvent({ eventType, correlationId, payload: payload as JsonObject })).matchedRunIds,
    async observeEnd(runId: string, how: Observation, signal: AbortSignal): Promise<string> {
      if (how === "await") {
        // waitForResult: AwaitRun long polls until the run ends (a failed run throws, which the bench counts).
        await client.waitForResult(runId, { timeoutMs: 300_000, signal });
        return "completed";
      }
      const stop = new AbortController();
      const abort = () => stop.abort();
      signal.addEventListener("abort", abort);
      try {
        for await (const update of client.watchRun(runId, { signal: stop.signal })) {
          if (update.type === "run" && finalStatuses.includes(update.run.status)) return update.run.status;
        }
        throw new Error(`run ${runId}: the watch stream ended before the run did`);
      } finally {
        signal.removeEventListener("abort", abort);
        stop.abort();
      }
    },
    close: () => undefined,
  };
}
