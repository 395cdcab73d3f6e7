/**
 * One request/response exchange on an HTTP/2 stream of the Node transport, with the whole body
 * sent at once and the whole response read into memory, and the ways it can fail mapped to
 * Connect codes the way the SDK's retries need them:
 *
 * - the connection failed (refused, reset, TLS, GOAWAY with an error, closed under the stream)
 *   → UNAVAILABLE, so retries apply to calls that are safe to repeat;
 * - the peer reset the stream → connect-node's mapping of the HTTP/2 code (REFUSED_STREAM, i.e.
 *   not processed, → UNAVAILABLE);
 * - a body over `readMaxBytes` → RESOURCE_EXHAUSTED (as Connect);
 * - the call aborted (caller or deadline) → its reason; the stream is reset with CANCEL.
 */
import type http2 from "node:http2";
import { constants as h2 } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Abortable } from "./cancellation.js";
import type { Http2Sessions } from "./http2-sessions.js";

export interface RawResponse {
  status: number;
  /** As node:http2 gives them: lower-case names, pseudo-headers included. */
  headers: http2.IncomingHttpHeaders;
  body: Uint8Array;
}

export function exchange(sessions: Http2Sessions, headers: http2.OutgoingHttpHeaders, body: Uint8Array, call: Abortable, readMaxBytes: number): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    if (call.aborted) {
      reject(call.reason);
      return;
    }
    let stream: http2.ClientHttp2Stream;
    try {
      stream = sessions.open(headers);
    } catch (error) {
      reject(openError(error));
      return;
    }
    const session = stream.session;
    let responseHeaders: http2.IncomingHttpHeaders | undefined;
    let expectedLength = Number.NaN;
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;

    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      call.stopListening();
      reject(error);
      if (!stream.closed) stream.close(h2.NGHTTP2_CANCEL);
    };
    call.listen(fail);

    stream.on("response", (incoming) => {
      responseHeaders = incoming;
      const length = incoming["content-length"];
      if (length !== undefined) expectedLength = Number(length);
      if (expectedLength > readMaxBytes) fail(tooLarge(expectedLength, readMaxBytes));
    });
    stream.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > readMaxBytes) fail(tooLarge(received, readMaxBytes));
      else chunks.push(chunk);
    });
    stream.on("end", () => {
      if (settled) return;
      // Node also ends the streams of a connection that died (after closing them with CANCEL), with
      // whatever part of the response had arrived: only a clean end with the whole body is an answer.
      const complete = stream.rstCode === h2.NGHTTP2_NO_ERROR && responseHeaders !== undefined && (Number.isNaN(expectedLength) || received === expectedLength);
      if (!complete || !responseHeaders) {
        fail(connectionLost());
        return;
      }
      settled = true;
      call.stopListening();
      resolve({
        status: Number(responseHeaders[":status"]),
        headers: responseHeaders,
        body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received),
      });
    });
    stream.on("error", (error) => fail(streamError(error, stream.rstCode)));
    stream.on("close", () => {
      if (settled) return;
      // No error event: the connection went away (Node then closes its streams with CANCEL), or the peer reset the stream.
      if (!session || session.destroyed) fail(connectionLost());
      else fail(resetError(stream.rstCode) ?? new ConnectError(`the HTTP/2 stream closed before the response was complete (code ${stream.rstCode})`, Code.Unavailable));
    });
    stream.end(body);
  });
}

function connectionLost(): ConnectError {
  return new ConnectError("the connection closed before the response was complete", Code.Unavailable);
}

function tooLarge(bytes: number, readMaxBytes: number): ConnectError {
  return new ConnectError(`message size ${bytes} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
}

/** No stream could be opened: the session went away (and so did the one tried next), or the request is malformed. */
function openError(error: unknown): ConnectError {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "ERR_HTTP2_INVALID_SESSION" || code === "ERR_HTTP2_GOAWAY_SESSION") return unavailable(error);
  return ConnectError.from(error, Code.Internal);
}

/** A stream's error event: a reset by the peer carries an HTTP/2 code; anything else is its connection failing. */
function streamError(error: Error, rstCode: number | undefined): ConnectError {
  if ((error as { code?: unknown }).code === "ERR_HTTP2_STREAM_ERROR" && rstCode !== undefined) {
    const reset = resetError(rstCode);
    if (reset) {
      reset.cause = error;
      return reset;
    }
  }
  // Node reports a failed connection on each of its streams, e.g. ERR_HTTP2_STREAM_CANCEL caused by ECONNREFUSED.
  return unavailable(error);
}

function unavailable(cause: unknown): ConnectError {
  return new ConnectError(cause instanceof Error ? cause.message : String(cause), Code.Unavailable, undefined, undefined, cause);
}

/** connect-node's mapping of RST_STREAM codes (its node-error.ts); NO_ERROR and STREAM_CLOSED have none. */
function resetError(rstCode: number): ConnectError | undefined {
  const known = resetCodes.get(rstCode);
  if (!known) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${known.name} (0x${rstCode.toString(16)})`, known.code);
}

const resetCodes = new Map<number, { name: string; code: Code }>([
  [h2.NGHTTP2_PROTOCOL_ERROR, { name: "PROTOCOL_ERROR", code: Code.Internal }],
  [h2.NGHTTP2_INTERNAL_ERROR, { name: "INTERNAL_ERROR", code: Code.Internal }],
  [h2.NGHTTP2_FLOW_CONTROL_ERROR, { name: "FLOW_CONTROL_ERROR", code: Code.Internal }],
  [h2.NGHTTP2_SETTINGS_TIMEOUT, { name: "SETTINGS_TIMEOUT", code: Code.Internal }],
  [h2.NGHTTP2_FRAME_SIZE_ERROR, { name: "FRAME_SIZE_ERROR", code: Code.Internal }],
  [h2.NGHTTP2_COMPRESSION_ERROR, { name: "COMPRESSION_ERROR", code: Code.Internal }],
  [h2.NGHTTP2_CONNECT_ERROR, { name: "CONNECT_ERROR", code: Code.Internal }],
  // The peer did not process the stream (e.g. it was past a GOAWAY's last stream id): safe to retry.
  [h2.NGHTTP2_REFUSED_STREAM, { name: "REFUSED_STREAM", code: Code.Unavailable }],
  [h2.NGHTTP2_CANCEL, { name: "CANCEL", code: Code.Canceled }],
  [h2.NGHTTP2_ENHANCE_YOUR_CALM, { name: "ENHANCE_YOUR_CALM", code: Code.ResourceExhausted }],
  [h2.NGHTTP2_INADEQUATE_SECURITY, { name: "INADEQUATE_SECURITY", code: Code.PermissionDenied }],
  [h2.NGHTTP2_HTTP_1_1_REQUIRED, { name: "HTTP_1_1_REQUIRED", code: Code.PermissionDenied }],
]);
