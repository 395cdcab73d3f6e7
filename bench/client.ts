/**
 * The bench's clients: the SDK (`createCairnClient`) over a real socket to a
 * server process. Two wires, both with protobuf binary bodies so that only
 * the HTTP version differs:
 *
 * - "2": a @connectrpc/connect-node transport with httpVersion "2": one
 *   HTTP/2 (h2c) connection per client, every call a stream on it;
 * - "1.1": the SDK's own transport over `fetch` (undici), HTTP/1.1 with a
 *   keep-alive pool, one connection per call in flight.
 *
 * SDK retries are off: a failure must show in the figures, not be hidden by
 * a retry.
 */
import type { Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type CairnClient, createCairnClient } from "../sdk/client.js";
import type { WorkflowService } from "../sdk/gen/cairn/v1/workflow_pb.js";

/** The generated Connect client (`sdk.raw.workflows`), for the extras that poll GetRun and read histories. */
export type WorkflowClient = Client<typeof WorkflowService>;

export type HttpVersion = "1.1" | "2";

export function sdkClient(baseUrl: string, http: HttpVersion): CairnClient {
  if (http === "2") return createCairnClient({ transport: createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }), retry: false });
  return createCairnClient({ baseUrl, useBinaryFormat: true, retry: false });
}

export function describeHttp(http: HttpVersion): string {
  return http === "2" ? "HTTP/2 (h2c, connect-node transport, binary)" : "HTTP/1.1 (fetch/undici keep-alive pool, binary)";
}
