/** Starts a real Cairn server inside the test process on a fresh database, with a Connect client. */
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { type CairnServer, startServer } from "../../server/app.js";
import { type Config, loadConfig } from "../../server/config.js";
import type { Logger } from "../../server/logger.js";
import { RunStatus, type Run } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";

export type WorkflowClient = Client<typeof WorkflowService>;

/**
 * A server's config for tests: any free port on loopback, a quick poll, open mode unless `env` says otherwise.
 * Workflow code runs on the test's own thread (CAIRN_WORKFLOW_THREADS=0) unless `env` says otherwise: in-process
 * fixtures share module state with their test (counters, switches, hooks), which a workflow thread's separate copy of
 * the module would not see. Real server processes (test/e2e, chaos, bench) run workflow code on threads.
 */
export function testConfig(env: Record<string, string>): Config {
  return loadConfig({ PORT: "0", HOST: "127.0.0.1", CAIRN_POLL_INTERVAL_MS: "50", CAIRN_AUTH: "open", CAIRN_WORKFLOW_THREADS: "0", ...env });
}

/** Silent unless TEST_LOG_LEVEL says otherwise. */
export function testLogger(): Logger {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
}

/** Open mode (no API keys) unless `env` sets CAIRN_AUTH: the tests of everything but auth carry no keys. */
export async function startTestServer(env: Record<string, string>): Promise<{ server: CairnServer; client: WorkflowClient }> {
  const server = await startServer(testConfig(env), testLogger());
  const client = createClient(WorkflowService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
  return { server, client };
}

const finished = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);

/** Polls GetRun until the run has finished (or the timeout, which fails the test). */
export async function waitForEnd(client: WorkflowClient, runId: string, timeoutMs = 10_000): Promise<Run> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { run } = await client.getRun({ runId });
    if (run && finished.has(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish within ${timeoutMs} ms (status ${run?.status})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Polls `check` every 20 ms until it holds (or 10 s pass, which fails the test with `message`). */
export async function until(check: () => Promise<boolean>, message: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until every run is WAITING (parked). */
export async function untilParked(client: WorkflowClient, runIds: readonly string[]): Promise<void> {
  await until(async () => (await Promise.all(runIds.map((runId) => client.getRun({ runId })))).every((r) => r.run?.status === RunStatus.WAITING), "the runs never parked");
}
