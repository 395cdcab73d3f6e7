/**
 * Protocol-level errors that connect-es gives the wrong code or an unhelpful
 * message. They happen before any interceptor runs (while the request body is
 * read and decoded), so `error-mapping.ts` never sees them; this wrapper fixes
 * them in the response of each route, for every protocol.
 *
 * - A request body that is not valid protobuf binary ("parse binary: premature
 *   EOF"), and an envelope flagged as compressed without a declared encoding,
 *   are the client's mistakes: INVALID_ARGUMENT, not INTERNAL (connect-es
 *   reports INTERNAL; connect-go reports INVALID_ARGUMENT).
 * - A body over `readMaxBytes` stays RESOURCE_EXHAUSTED, and the message now
 *   names the setting (CAIRN_MAX_REQUEST_BYTES).
 * - A compressed body that does not decompress is INVALID_ARGUMENT
 *   (`acceptCompression` below, given to the Connect adapter).
 *
 * Errors are rewritten where each protocol carries them: the JSON body of a
 * Connect unary error, the end-of-stream message of a Connect stream, the
 * trailer frame of gRPC-Web and the trailers of gRPC. Compressed end-of-stream
 * frames and gRPC-Web text are passed on unchanged.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Compression, UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

export interface WireError {
  code: Code;
  message: string;
}

/** Returns the corrected error, or undefined to leave it as it is. */
export type Fix = (error: WireError) => WireError | undefined;

export const requestBytesSetting = "CAIRN_MAX_REQUEST_BYTES";

/** The corrections for errors of a method whose request message is `typeName` (also applied by the unary fast lane). */
export function protocolErrorFix(typeName: string, bytesSetting = requestBytesSetting): Fix {
  return ({ code, message }) => {
    if (code === Code.Internal && message.startsWith("parse binary: ")) {
      return { code: Code.InvalidArgument, message: `cannot decode message ${typeName} from protobuf binary: ${message.slice(14)}` };
    }
    if (code === Code.Internal && message.startsWith("received compressed envelope")) {
      return { code: Code.InvalidArgument, message: `${message}: a message is flagged as compressed but the request declares no encoding` };
    }
    if (code === Code.ResourceExhausted && message.includes("readMaxBytes") && !message.includes(bytesSetting)) {
      return { code, message: `${message} (${bytesSetting})` };
    }
    return undefined;
  };
}

export function reclassifyProtocolErrors(handler: UniversalHandler, bytesSetting = requestBytesSetting): UniversalHandler {
  const fix = protocolErrorFix(handler.method.input.typeName, bytesSetting);
  const wrapped = async (request: Parameters<UniversalHandler>[0]) => rewrite(await handler(request), fix);
  return Object.assign(wrapped, {
    method: handler.method,
    service: handler.service,
    requestPath: handler.requestPath,
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

async function rewrite(response: UniversalServerResponse, fix: Fix): Promise<UniversalServerResponse> {
  const contentType = response.header?.get("content-type") ?? "";
  const body = response.body;
  if (!body) return response;
  if (contentType.startsWith("application/json") && response.status >= 400) return rewriteConnectUnary(response, body, fix);
  if (contentType.startsWith("application/connect+")) return { ...response, body: mapEnvelopes(body, 0b10, (payload) => rewriteEndStream(payload, fix)) };
  if (contentType.startsWith("application/grpc-web+") || contentType === "application/grpc-web") {
    return { ...response, body: mapEnvelopes(body, 0x80, (payload) => rewriteGrpcWebTrailer(payload, fix)) };
  }
  if (contentType.startsWith("application/grpc")) {
    if (response.header) fixGrpcStatus(response.header, fix); // trailers-only responses carry the status in the headers
    return { ...response, body: afterBody(body, () => response.trailer && fixGrpcStatus(response.trailer, fix)) };
  }
  return response;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function rewriteConnectUnary(response: UniversalServerResponse, body: AsyncIterable<Uint8Array>, fix: Fix): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = concat(chunks);
  const replay = { ...response, body: once(bytes) };
  let parsed: { code?: unknown; message?: unknown; details?: unknown };
  try {
    parsed = JSON.parse(decoder.decode(bytes)) as typeof parsed;
  } catch {
    return replay;
  }
  const code = codeFromName(parsed.code);
  if (code === undefined || typeof parsed.message !== "string") return replay;
  const fixed = fix({ code, message: parsed.message });
  if (!fixed) return replay;
  const out = encoder.encode(JSON.stringify({ ...parsed, code: codeName(fixed.code), message: fixed.message }));
  const header = new Headers(response.header);
  header.set("content-length", String(out.byteLength));
  return { ...response, status: connectHttpStatus(fixed.code), header, body: once(out) };
}

/** A Connect end-stream message with its error corrected, or undefined to leave it (also used by the stream lane). */
export function rewriteEndStream(payload: Uint8Array, fix: Fix): Uint8Array | undefined {
  let parsed: { error?: { code?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(decoder.decode(payload)) as typeof parsed;
  } catch {
    return undefined;
  }
  const code = codeFromName(parsed.error?.code);
  if (!parsed.error || code === undefined || typeof parsed.error.message !== "string") return undefined;
  const fixed = fix({ code, message: parsed.error.message });
  if (!fixed) return undefined;
  return encoder.encode(JSON.stringify({ ...parsed, error: { ...parsed.error, code: codeName(fixed.code), message: fixed.message } }));
}

function rewriteGrpcWebTrailer(payload: Uint8Array, fix: Fix): Uint8Array | undefined {
  const lines = decoder.decode(payload).split("\r\n").filter((line) => line.length > 0);
  const trailer = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) trailer.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (!fixGrpcStatus(trailer, fix)) return undefined;
  let text = "";
  trailer.forEach((value, key) => {
    text += `${key}: ${value}\r\n`;
  });
  return encoder.encode(text);
}

/** Rewrites grpc-status / grpc-message in place; true when something changed (also used by the stream lane). */
export function fixGrpcStatus(headers: Headers, fix: Fix): boolean {
  const status = headers.get("grpc-status");
  if (status === null || !/^\d+$/.test(status)) return false;
  let message = headers.get("grpc-message") ?? "";
  try {
    message = decodeURIComponent(message);
  } catch {
    // leave it as sent
  }
  const fixed = fix({ code: Number(status) as Code, message });
  if (!fixed) return false;
  headers.set("grpc-status", String(fixed.code));
  headers.set("grpc-message", encodeURIComponent(fixed.message));
  return true;
}

/** Passes envelopes on, replacing the payload of uncompressed ones with `flag` set where `map` returns bytes. */
async function* mapEnvelopes(
  body: AsyncIterable<Uint8Array>,
  flag: number,
  map: (payload: Uint8Array) => Uint8Array | undefined,
): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    const length = chunk.byteLength >= 5 ? new DataView(chunk.buffer, chunk.byteOffset, 5).getUint32(1) : -1;
    const flags = chunk[0] ?? 0;
    // One envelope per chunk is how connect-es writes them; anything else goes through untouched.
    const replaced = length === chunk.byteLength - 5 && (flags & flag) === flag && (flags & 0b1) === 0 ? map(chunk.subarray(5)) : undefined;
    if (!replaced) {
      yield chunk;
      continue;
    }
    const envelope = new Uint8Array(5 + replaced.byteLength);
    envelope[0] = flags;
    new DataView(envelope.buffer).setUint32(1, replaced.byteLength);
    envelope.set(replaced, 5);
    yield envelope;
  }
}

async function* afterBody(body: AsyncIterable<Uint8Array>, done: () => unknown): AsyncIterable<Uint8Array> {
  yield* body;
  done();
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** `Code.InvalidArgument` ↔ `"invalid_argument"`, as Connect writes codes in JSON. */
function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase();
}

function codeFromName(name: unknown): Code | undefined {
  if (typeof name !== "string") return undefined;
  for (const value of Object.values(Code)) if (typeof value === "number" && codeName(value) === name) return value;
  return undefined;
}

/** The HTTP status of a Connect unary error with this code (the codes fix() can produce). */
function connectHttpStatus(code: Code): number {
  if (code === Code.InvalidArgument) return 400;
  if (code === Code.ResourceExhausted) return 429;
  return 500;
}

/**
 * The request compressions the server accepts (gzip, br), where a body that does not decompress is the client's
 * mistake: INVALID_ARGUMENT. connect-node reports some of those failures (brotli, truncated gzip) as INTERNAL.
 * Output over readMaxBytes stays RESOURCE_EXHAUSTED.
 */
export const acceptCompression: Compression[] = [compressionGzip, compressionBrotli].map((compression) => ({
  ...compression,
  async decompress(bytes: Uint8Array, readMaxBytes: number) {
    try {
      return await compression.decompress(bytes, readMaxBytes);
    } catch (error) {
      const connectError = ConnectError.from(error);
      if (connectError.code !== Code.Internal) throw connectError;
      throw new ConnectError(`the request body is not valid ${compression.name} data: ${connectError.rawMessage}`, Code.InvalidArgument, undefined, undefined, error);
    }
  },
}));
