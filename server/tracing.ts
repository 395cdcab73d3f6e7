/**
 * OpenTelemetry traces, exported over OTLP/HTTP as the standard `OTEL_*` environment says. Off unless an OTLP
 * endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`); when off, nothing is
 * created and no interceptor or hook is installed, so tracing costs nothing.
 *
 * One trace per run: CreateRun's span (a child of the caller's `traceparent` when sent) is stored on the run
 * row as a W3C `traceparent`; every activation of the run is a child of it, each step attempt a child of its
 * activation, and a child run stores its parent's activation as its own `traceparent`. Spans are parented
 * explicitly from these strings: no context manager is installed (so a step's own HTTP calls are not
 * auto-instrumented from here).
 */
import { type Context, ROOT_CONTEXT, type Span, trace, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

export interface TracingConfig {
  /** Where spans are POSTed (…/v1/traces). */
  url: string;
  serviceName: string;
}

type Env = Record<string, string | undefined>;

/** Tracing as the `OTEL_*` environment asks for, or undefined (off: no endpoint, `OTEL_SDK_DISABLED`, exporter `none`). */
export function tracingConfigFromEnv(env: Env): TracingConfig | undefined {
  if (env.OTEL_SDK_DISABLED?.toLowerCase() === "true") return undefined;
  const exporter = env.OTEL_TRACES_EXPORTER?.toLowerCase();
  if (exporter !== undefined && exporter !== "" && exporter !== "otlp") return undefined;
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces` : undefined);
  if (!url) return undefined;
  return { url, serviceName: env.OTEL_SERVICE_NAME || "cairn" };
}

const propagator = new W3CTraceContextPropagator();
const getter = { get: (carrier: Record<string, string>, key: string) => carrier[key], keys: (carrier: Record<string, string>) => Object.keys(carrier) };
const setter = { set: (carrier: Record<string, string>, key: string, value: string) => void (carrier[key] = value) };

export class Tracing {
  readonly tracer: Tracer;
  private readonly provider: BasicTracerProvider;

  constructor(config: TracingConfig) {
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ "service.name": config.serviceName }),
      // The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)HEADERS and _TIMEOUT itself; batches follow OTEL_BSP_*.
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: config.url }))],
    });
    this.tracer = this.provider.getTracer("cairn");
  }

  /** The context a `traceparent` (and `tracestate`) names; the root context when absent or malformed. */
  contextOf(traceParent: string | null | undefined, traceState?: string | null): Context {
    if (!traceParent) return ROOT_CONTEXT;
    return propagator.extract(ROOT_CONTEXT, { traceparent: traceParent, ...(traceState ? { tracestate: traceState } : {}) }, getter);
  }

  /** The W3C `traceparent` of `span`, as stored on a run row. */
  traceParentOf(span: Span): string | undefined {
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, setter);
    return carrier.traceparent;
  }

  /** Sends what is buffered and stops (at server close). */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
