/** Plain fetch with Connect JSON, the independent client of the run-control tests, and a status wait through the SDK. */
import type { CairnClient, RunInfo } from "../../sdk/client.js";

/** POST {baseUrl}/cairn.v1.WorkflowService/{method} with a JSON body: the HTTP status and the parsed answer. */
export async function postConnectJson(baseUrl: string, method: string, body: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`${baseUrl}/cairn.v1.WorkflowService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

/** Polls GetRun until the run is in `status`; fails with what it is instead after `timeoutMs`. */
export async function untilStatus(sdk: CairnClient, runId: string, status: RunInfo["status"], timeoutMs = 10_000): Promise<RunInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await sdk.getRun(runId);
    if (run.status === status) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} is ${run.status}, not ${status}, after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
