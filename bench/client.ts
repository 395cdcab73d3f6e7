/**
 * The bench's clients: the SDK (`createCairnClient`) over a real socket to a
 * server process. Three wires, all with protobuf binary bodies so that only
 * the HTTP client differs:
 *
 * - "2": the SDK's own HTTP/2 transport (`http2: true`, sdk/node-transport.ts):
 *   one h2c connection per client, every unary call a stream on it;
 * - "2-connect": a @connectrpc/connect-node transport with httpVersion "2",
 *   the "2" wire before the SDK had its own (kept for before/after figures);
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

export const httpVersions = ["1.1", "2", "2-connect"] as const;
export type HttpVersion = (typeof httpVersions)[number];

export function sdkClient(baseUrl: string, http: HttpVersion): CairnClient {
  if (http === "2") return createCairnClient({ baseUrl, http2: true, useBinaryFormat: true, retry: false });
  if (http === "2-connect") return createCairnClient({ transport: createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }), retry: false });
  return createCairnClient({ baseUrl, useBinaryFormat: true, retry: false });
}

export function describeHttp(http: HttpVersion): string {
  if (http === "2") return "HTTP/2 (h2c, the SDK's node:http2 transport, binary)";
  if (http === "2-connect") return "HTTP/2 (h2c, connect-node transport, binary)";
  return "HTTP/1.1 (fetch/undici keep-alive pool, binary)";
}
