/**
 * The Connect unary protocol (https://connectrpc.com/docs/protocol/#unary-request) for the Node
 * transport: request bodies, and what connect's own transport makes of a response
 * (protocol-connect/transport.ts, validate-response.ts), using its helpers where they are cheap.
 */
import type http2 from "node:http2";
import {
  type BinaryReadOptions,
  type BinaryWriteOptions,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  fromJsonString,
  type JsonReadOptions,
  type JsonWriteOptions,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import { appendHeaders, Code, ConnectError, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { codeFromHttpStatus, errorFromJsonBytes, parseContentType } from "@connectrpc/connect/protocol-connect";
import type { RawResponse } from "./http2-exchange.js";

export interface Codec {
  binary: boolean;
  binaryOptions: Partial<BinaryReadOptions & BinaryWriteOptions> | undefined;
  jsonRead: Partial<JsonReadOptions>;
  jsonWrite: Partial<JsonWriteOptions> | undefined;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** The request body; errors as Connect's serialization reports them. */
export function encodeRequest(request: UnaryRequest, codec: Codec): Uint8Array {
  const schema = request.method.input;
  if (codec.binary) {
    try {
      return toBinary(schema, request.message, codec.binaryOptions);
    } catch (error) {
      throw new ConnectError(`serialize binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal);
    }
  }
  try {
    return utf8.encode(toJsonString(schema, request.message, codec.jsonWrite));
  } catch (error) {
    throw ConnectError.from(error, Code.Internal);
  }
}

/** What connect's transport makes of a unary response (protocol-connect/transport.ts, validate-response.ts). */
export function decodeResponse<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, response: RawResponse, codec: Codec): UnaryResponse<I, O> {
  const contentType = response.headers["content-type"];
  const encoding = response.headers["content-encoding"];
  // No accept-encoding is sent, so a Connect server answers uncompressed.
  if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
    throw new ConnectError(`unsupported response encoding "${encoding}"`, Code.Internal, webHeaders(response.headers));
  }
  if (response.status !== 200) throw errorResponse(response);
  if (contentType !== (codec.binary ? "application/proto" : "application/json")) {
    const parsed = parseContentType(contentType ?? null);
    if (parsed?.binary !== codec.binary || parsed.stream) {
      throw new ConnectError(`unsupported content type ${contentType}`, parsed === undefined ? Code.Unknown : Code.Internal, webHeaders(response.headers));
    }
  }
  const message = decodeMessage(method.output, response.body, codec);
  // The Headers are made when first read: few callers read them (the SDK does not), and making them costs ~2 % of a call.
  let split: [Headers, Headers] | undefined;
  const incoming = response.headers;
  return {
    stream: false,
    service: method.parent,
    method,
    message,
    get header() {
      return (split ??= headersAndTrailers(incoming))[0];
    },
    get trailer() {
      return (split ??= headersAndTrailers(incoming))[1];
    },
  };
}

function decodeMessage<O extends DescMessage>(schema: O, body: Uint8Array, codec: Codec) {
  if (codec.binary) {
    try {
      return fromBinary(schema, body, codec.binaryOptions);
    } catch (error) {
      throw new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal);
    }
  }
  try {
    return fromJsonString(schema, utf8Decoder.decode(body), codec.jsonRead);
  } catch (error) {
    throw ConnectError.from(error, Code.InvalidArgument);
  }
}

/** A non-200 answer: the Connect error JSON if there is one, else the HTTP status's code; the headers become the error's metadata. */
function errorResponse(response: RawResponse): ConnectError {
  const fallback = new ConnectError(`HTTP ${response.status}`, codeFromHttpStatus(response.status), webHeaders(response.headers));
  const parsed = parseContentType(response.headers["content-type"] ?? null);
  if (!parsed || parsed.binary) return fallback;
  const [header, trailer] = headersAndTrailers(response.headers);
  try {
    return errorFromJsonBytes(response.body, appendHeaders(header, trailer), fallback);
  } catch (error) {
    return ConnectError.from(error); // errorFromJsonBytes throws the fallback when the body is not a Connect error
  }
}

/** Response headers without HTTP/2 pseudo-headers. */
function webHeaders(incoming: http2.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const name in incoming) {
    if (name.charCodeAt(0) === 58 /* ":" */) continue;
    appendValues(headers, name, incoming[name]);
  }
  return headers;
}

/** Connect unary responses carry trailers as `trailer-*` headers (as trailerDemux, without the intermediate Headers). */
function headersAndTrailers(incoming: http2.IncomingHttpHeaders): [Headers, Headers] {
  const header = new Headers();
  const trailer = new Headers();
  for (const name in incoming) {
    if (name.charCodeAt(0) === 58 /* ":" */) continue;
    if (name.startsWith("trailer-")) appendValues(trailer, name.slice(8), incoming[name]);
    else appendValues(header, name, incoming[name]);
  }
  return [header, trailer];
}

function appendValues(headers: Headers, name: string, value: string | string[] | number | undefined): void {
  if (value === undefined) return;
  if (Array.isArray(value)) for (const item of value) headers.append(name, item);
  else headers.append(name, String(value));
}
