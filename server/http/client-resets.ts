/**
 * HTTP/2 streams the client resets (RST_STREAM) before their end. Node's HTTP/2 server closes a connection with
 * INTERNAL_ERROR, and every call on it, once its client has reset 1,000 streams in a burst, 33 a second after
 * (nghttp2's rapid-reset defence, CVE-2023-44487, not adjustable on Node 20), so operators should see a client
 * heading there (`cairn_http2_client_resets_total`). Resets the server sends itself, and streams that close because
 * their whole connection went, are not the client's.
 */
import http2, { type ServerHttp2Stream } from "node:http2";

const resetHere = new WeakSet<ServerHttp2Stream>();

/** Resets `stream` from this side, so that countClientResets does not count it. */
export function resetByServer(stream: ServerHttp2Stream, code: number): void {
  resetHere.add(stream);
  stream.close(code);
}

/** Calls `onReset` when the client resets the stream before its end. */
export function countClientResets(stream: ServerHttp2Stream, onReset: () => void): void {
  // Node lets go of the stream's session before "close"; whether the connection is still there is asked of it.
  const session = stream.session;
  stream.once("close", () => {
    if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR || resetHere.has(stream)) return;
    if (!session || session.destroyed || session.closed) return;
    onReset();
  });
}
