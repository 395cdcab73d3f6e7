/**
 * What the wire comparison needs from a client, whatever its stack: create
 * an eager run, read its status, send an event, and learn of a run's end
 * either by AwaitRun (a long poll, called again until the run has ended) or
 * by WatchRun (a stream, read until a final status). Three implementations
 * share nothing but this shape: grpc-js with proto-loader reading proto/
 * (wire-grpc.ts), Connect JSON over plain fetch (wire-fetch.ts), and the SDK
 * (wire-sdk.ts).
 */
export const wireNames = ["grpc-js", "fetch", "sdk"] as const;
export type WireName = (typeof wireNames)[number];

/** How a client learns that a run ended. */
export const observations = ["await", "watch"] as const;
export type Observation = (typeof observations)[number];

export const finalStatuses = ["completed", "failed", "cancelled"];

export interface WireClient {
  readonly wire: WireName;
  /** CreateRun with eager_start; the run id. */
  createRun(workflowName: string, input: Record<string, unknown>): Promise<string>;
  /** GetRun's status, lower case ("waiting", "completed", ...). */
  status(runId: string): Promise<string>;
  /** SendEvent; the ids of the runs it woke. */
  sendEvent(eventType: string, correlationId: string, payload: Record<string, unknown>): Promise<string[]>;
  /** The run's final status, learnt the given way. */
  observeEnd(runId: string, how: Observation, signal: AbortSignal): Promise<string>;
  close(): void;
}

export function describeWire(wire: WireName): string {
  if (wire === "grpc-js") return "@grpc/grpc-js + @grpc/proto-loader on proto/ (gRPC over h2c, protobuf)";
  if (wire === "fetch") return "Connect protocol, JSON bodies, over plain fetch (undici, HTTP/1.1)";
  return "the SDK (createCairnClient, its node:http2 transport, binary)";
}

/** "RUN_STATUS_COMPLETED" → "completed". */
export function statusName(status: string): string {
  return status.replace(/^RUN_STATUS_/, "").toLowerCase();
}
