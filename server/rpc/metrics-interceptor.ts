/**
 * Counts every RPC by method and Connect code, and times it (streams until they end). Outermost, so it sees
 * the code the caller gets, after error mapping, auth and validation. Methods come from the router (unknown
 * paths never reach an interceptor), so the label set stays bounded.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Metrics } from "../metrics.js";

/** `invalid_argument`, as the Connect protocol spells codes. */
export function codeLabel(error: unknown): string {
  const code = error instanceof ConnectError ? error.code : Code.Unknown;
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
}

export function metricsInterceptor(metrics: Metrics): Interceptor {
  return (next) => async (request) => {
    const method = `${request.service.typeName}/${request.method.name}`;
    const started = performance.now();
    const done = (code: string) => {
      metrics.rpcCalls.inc({ method, code });
      metrics.rpcDuration.observe({ method }, (performance.now() - started) / 1000);
    };
    let response;
    try {
      response = await next(request);
    } catch (error) {
      done(codeLabel(error));
      throw error;
    }
    if (!response.stream) {
      done("ok");
      return response;
    }
    return { ...response, message: counted(response.message, done) };
  };
}

async function* counted<T>(messages: AsyncIterable<T>, done: (code: string) => void): AsyncIterable<T> {
  let code = "ok";
  try {
    yield* messages;
  } catch (error) {
    code = codeLabel(error);
    throw error;
  } finally {
    // A client that stops reading ends the stream through return(): counted as ok, it was not refused.
    done(code);
  }
}
