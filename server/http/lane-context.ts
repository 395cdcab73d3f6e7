/**
 * The `HandlerContext` a lane hands its interceptors and the method (unary-lane.ts, grpc-unary.ts, stream-lane.ts):
 * the fields Connect's adapter fills for a POST call, from the lane's own headers and call signal.
 */
import { createContextValues, type ContextValues, type HandlerContext, type MethodImplSpec } from "@connectrpc/connect";
import type { UnaryCallSignal } from "./unary-call-signal.js";

export function laneContext(
  spec: MethodImplSpec,
  call: UnaryCallSignal,
  fields: Pick<HandlerContext, "protocolName" | "url" | "requestHeader" | "responseHeader" | "responseTrailer"> & { values: ContextValues | undefined },
): HandlerContext {
  return {
    method: spec.method,
    service: spec.method.parent,
    requestMethod: "POST",
    protocolName: fields.protocolName,
    url: fields.url,
    signal: call.signal,
    timeoutMs: call.timeoutMs,
    requestHeader: fields.requestHeader,
    responseHeader: fields.responseHeader,
    responseTrailer: fields.responseTrailer,
    values: fields.values ?? createContextValues(),
  };
}
