/**
 * A span per RPC (server kind), continuing the caller's `traceparent` header. The span's own `traceparent`
 * is put in the call's context values, so CreateRun stores it on the run (the run's trace hangs below the
 * call that made it). Installed only when tracing is on.
 */
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode, type Span } from "@opentelemetry/api";
import type { Tracing } from "../tracing.js";
import { codeLabel } from "./metrics-interceptor.js";

/** The `traceparent` of the current RPC's span (undefined when tracing is off). */
export const traceParentKey = createContextKey<string | undefined>(undefined, { description: "the RPC span's traceparent" });

export function tracingInterceptor(tracing: Tracing): Interceptor {
  return (next) => async (request) => {
    const parent = tracing.contextOf(request.header.get("traceparent"), request.header.get("tracestate"));
    const span = tracing.tracer.startSpan(
      `${request.service.typeName}/${request.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": "connect_rpc", "rpc.service": request.service.typeName, "rpc.method": request.method.name },
      },
      parent,
    );
    request.contextValues.set(traceParentKey, tracing.traceParentOf(span));
    let response;
    try {
      response = await next(request);
    } catch (error) {
      endWithError(span, error);
      throw error;
    }
    if (!response.stream) {
      span.end();
      return response;
    }
    return { ...response, message: traced(response.message, span) };
  };
}

function endWithError(span: Span, error: unknown): void {
  span.setAttribute("rpc.connect_rpc.error_code", codeLabel(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  span.end();
}

async function* traced<T>(messages: AsyncIterable<T>, span: Span): AsyncIterable<T> {
  let failed = false;
  try {
    yield* messages;
  } catch (error) {
    failed = true;
    endWithError(span, error);
    throw error;
  } finally {
    // Also when the client stops reading (return()).
    if (!failed) span.end();
  }
}
