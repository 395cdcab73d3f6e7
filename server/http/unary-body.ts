/**
 * Reads a unary request body for the fast lane (`unary-lane.ts`) from the
 * stream's events, with the limits and messages of Connect's `readAllBytes`,
 * which the Connect adapter reads through two async generators:
 *
 * - a `content-length` over `readMaxBytes` is refused before reading:
 *   RESOURCE_EXHAUSTED "message size N is larger than configured readMaxBytes M";
 * - with a `content-length`, a body of another length is INVALID_ARGUMENT
 *   "protocol error: promised N bytes, received M";
 * - without one, a body growing past `readMaxBytes` is RESOURCE_EXHAUSTED
 *   "message size is larger than configured readMaxBytes M".
 *
 * When reading stops early, the request is given up the way Node's stream
 * iterator gives it up (`abandonBody`), so that what the client sees next (the
 * error response, the connection kept or not) is what the adapter produces.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

type Request = IncomingMessage | Http2ServerRequest;

export function readUnaryBody(req: Request, readMaxBytes: number, contentLength: string | undefined): Promise<Uint8Array> {
  const hint = lengthHint(contentLength);
  if (hint !== undefined && hint > readMaxBytes) {
    return Promise.reject(new ConnectError(`message size ${hint} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  return readBodyWith<Uint8Array>(
    req,
    (chunk) => {
      size += chunk.byteLength;
      if (hint !== undefined && size > hint) return { refuse: new ConnectError(`protocol error: promised ${hint} bytes, received ${size}`, Code.InvalidArgument) };
      if (hint === undefined && size > readMaxBytes) return { refuse: new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted) };
      chunks.push(chunk);
      return undefined;
    },
    () => {
      if (hint !== undefined && size < hint) return new ConnectError(`protocol error: promised ${hint} bytes, received ${size}`, Code.InvalidArgument);
      return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    },
  );
}

/**
 * Reads a request body from the stream's events. `onChunk` may stop early: `{ done }` answers with a value,
 * `{ refuse }` with an error; either way the rest of the body is given up (`abandonBody`). At the end, `onEnd`
 * gives the value or the error. A request closed before its end is ABORTED (the client went away).
 */
export function readBodyWith<T>(
  req: Request,
  onChunk: (chunk: Buffer) => { done: T } | { refuse: ConnectError } | undefined,
  onEnd: () => T | ConnectError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stop = (): void => {
      req.off("data", onData);
      req.off("end", onEndEvent);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const onData = (chunk: Buffer): void => {
      const verdict = onChunk(chunk);
      if (!verdict) return;
      stop();
      abandonBody(req);
      if ("refuse" in verdict) reject(verdict.refuse);
      else resolve(verdict.done);
    };
    const onEndEvent = (): void => {
      stop();
      const outcome = onEnd();
      if (outcome instanceof ConnectError) reject(outcome);
      else resolve(outcome);
    };
    const onError = (error: Error): void => {
      stop();
      reject(error);
    };
    // Closed before the end: the client went away mid-body (Node's iterator reports a premature close).
    const onClose = (): void => {
      stop();
      reject(new ConnectError("the request body ended prematurely (the client went away)", Code.Aborted));
    };
    req.on("data", onData);
    req.on("end", onEndEvent);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/** `content-length` as Connect's parseLengthHint reads it: a safe non-negative integer, else no hint. */
function lengthHint(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number.parseInt(value, 10);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * Stops reading a request the way Node's stream iterator does when its consumer gives up (`destroyer`): an HTTP/1.1
 * request is destroyed detached from its socket, so the connection stays and can carry the error response; an HTTP/2
 * request is destroyed, which leaves its stream to the response.
 */
function abandonBody(req: Request): void {
  if (req.destroyed) return;
  // Destroying emits "error" with the reason; nobody else listens to it any more.
  req.on("error", () => undefined);
  const reason = Object.assign(new Error("The operation was aborted"), { name: "AbortError", code: "ABORT_ERR" });
  if (!("stream" in req)) (req as { socket: unknown }).socket = null;
  req.destroy(reason);
}
