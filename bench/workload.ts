/**
 * The client side: N runs of bench_steps, at most C in flight. Each run is
 * created with eager_start and then polled with GetRun until it ends; its
 * latency is from just before CreateRun to the poll that saw it end, so it
 * includes up to one poll interval of slack. Polling is real load on the
 * server and its connection pool (one SELECT per poll), which is why the
 * poll count is reported next to the commit count.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { performance } from "node:perf_hooks";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { RunStatus } from "../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../sdk/gen/cairn/v1/workflow_pb.js";
import { WORKFLOW_NAME } from "./workflows/ten-steps.js";

export interface WorkloadOptions {
  runs: number;
  steps: number;
  concurrency: number;
  pollMs: number;
  /** A run not finished after this long counts as failed. */
  runTimeoutMs: number;
  signal: AbortSignal;
}

export interface WorkloadResult {
  wallMs: number;
  /** Create → observed completion, ms, ascending, completed runs only. */
  latenciesMs: number[];
  completed: number;
  failures: string[];
  getRunCalls: number;
}

export type WorkflowClient = Client<typeof WorkflowService>;

const finished = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);

/** A Connect client over one HTTP/2 connection (a real socket), shared by every run. */
export function connect(baseUrl: string): WorkflowClient {
  return createClient(WorkflowService, createConnectTransport({ baseUrl, httpVersion: "2" }));
}

export async function runWorkload(client: WorkflowClient, options: WorkloadOptions): Promise<WorkloadResult> {
  const input = fromJson(ValueSchema, { steps: options.steps });
  const latencies: number[] = [];
  const failures: string[] = [];
  let getRunCalls = 0;
  let next = 0;

  const oneRun = async (): Promise<void> => {
    const started = performance.now();
    const created = await client.createRun({ workflowName: WORKFLOW_NAME, input, eagerStart: true });
    const runId = created.run?.runId;
    if (!runId) throw new Error("CreateRun answered without a run id");
    let status = created.run?.status ?? RunStatus.UNSPECIFIED;
    while (!finished.has(status)) {
      if (options.signal.aborted) throw new Error(`run ${runId}: interrupted`);
      if (performance.now() - started > options.runTimeoutMs) throw new Error(`run ${runId}: not finished after ${options.runTimeoutMs} ms`);
      await sleep(options.pollMs);
      getRunCalls++;
      const polled = await client.getRun({ runId });
      status = polled.run?.status ?? RunStatus.UNSPECIFIED;
      if (status === RunStatus.FAILED) throw new Error(`run ${runId} failed: ${polled.run?.error?.message ?? "no message"}`);
    }
    if (status !== RunStatus.COMPLETED) throw new Error(`run ${runId} ended as ${RunStatus[status]}`);
    latencies.push(performance.now() - started);
  };

  const worker = async (): Promise<void> => {
    while (next < options.runs && !options.signal.aborted) {
      next++;
      try {
        await oneRun();
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error));
      }
    }
  };

  const begin = performance.now();
  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.runs) }, worker));
  const wallMs = performance.now() - begin;
  latencies.sort((a, b) => a - b);
  return { wallMs, latenciesMs: latencies, completed: latencies.length, failures, getRunCalls };
}

/** A few warm-up runs so connection set-up and lazy initialisation stay out of the figures. */
export async function warmUp(client: WorkflowClient, steps: number, signal: AbortSignal): Promise<void> {
  const result = await runWorkload(client, { runs: 4, steps, concurrency: 4, pollMs: 5, runTimeoutMs: 30_000, signal });
  if (result.failures.length > 0) throw new Error(`warm-up failed: ${result.failures.join("; ")}`);
}
