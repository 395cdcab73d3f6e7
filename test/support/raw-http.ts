/**
 * Raw HTTP/1.1 and HTTP/2 exchanges, to compare what two servers answer to the same bytes: status,
 * every header and the body as sent, or how the exchange broke off. No Connect client in between.
 */
import http from "node:http";
import http2 from "node:http2";

export type HttpVersion = "1.1" | "2";

export interface RawRequest {
  path: string;
  method?: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** HTTP/1.1: send the body chunked (no content-length). HTTP/2 bodies never carry one unless `headers` has it. */
  chunked?: boolean;
  /** Aborts the request when it fires (the client goes away). */
  signal?: AbortSignal;
  /** Send the body's first `bytes`, then the rest (and the end) `ms` later. */
  pause?: { bytes: number; ms: number };
}

export interface RawResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** HTTP/2 trailers (gRPC's status), when the response had any. */
  trailers?: Record<string, string>;
}

/** The response, or the error code of the broken exchange (ECONNRESET, ERR_HTTP2_STREAM_ERROR…). */
export type RawOutcome = RawResponse | { broken: string };

export function rawExchange(baseUrl: string, http: HttpVersion, request: RawRequest): Promise<RawOutcome> {
  return http === "2" ? exchange2(baseUrl, request) : exchange1(baseUrl, request);
}

function bodyBytes(request: RawRequest): Buffer {
  return typeof request.body === "string" ? Buffer.from(request.body, "utf8") : Buffer.from(request.body ?? new Uint8Array());
}

function exchange1(baseUrl: string, request: RawRequest): Promise<RawOutcome> {
  const url = new URL(baseUrl);
  const body = bodyBytes(request);
  return new Promise((resolve) => {
    const headers: Record<string, string> = { ...request.headers };
    if (!request.chunked && headers["content-length"] === undefined) headers["content-length"] = String(body.byteLength);
    const req = http.request({ host: url.hostname, port: url.port, path: request.path, method: request.method ?? "POST", headers, agent: false, signal: request.signal });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: flatten(res.headers), body: Buffer.concat(chunks) }));
      res.on("error", (error: NodeJS.ErrnoException) => resolve({ broken: error.code ?? error.message }));
    });
    req.on("error", (error: NodeJS.ErrnoException) => resolve({ broken: error.code ?? error.message }));
    if (request.pause) {
      const { bytes, ms } = request.pause;
      req.write(body.subarray(0, bytes));
      setTimeout(() => {
        if (!req.destroyed) req.end(body.subarray(bytes));
      }, ms);
    } else if (request.chunked) {
      // Several writes, so the server sees the body arrive in pieces.
      for (let offset = 0; offset < body.byteLength; offset += 16 * 1024) req.write(body.subarray(offset, offset + 16 * 1024));
      req.end();
    } else {
      req.end(body);
    }
  });
}

function exchange2(baseUrl: string, request: RawRequest): Promise<RawOutcome> {
  const body = bodyBytes(request);
  return new Promise((resolve) => {
    const session = http2.connect(baseUrl);
    const done = (outcome: RawOutcome) => {
      session.close();
      resolve(outcome);
    };
    session.on("error", (error: NodeJS.ErrnoException) => done({ broken: error.code ?? error.message }));
    const stream = session.request({ ":method": request.method ?? "POST", ":path": request.path, ...request.headers }, { signal: request.signal });
    let status = 0;
    let headers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (received) => {
      status = Number(received[":status"]);
      const { ":status": _, ...rest } = received;
      headers = flatten(rest);
    });
    let trailers: Record<string, string> | undefined;
    stream.on("trailers", (received) => {
      trailers = flatten(received);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => done({ status, headers, body: Buffer.concat(chunks), ...(trailers ? { trailers } : {}) }));
    stream.on("error", (error: NodeJS.ErrnoException) => done({ broken: error.code ?? error.message }));
    const send = (part: Buffer) => {
      for (let offset = 0; offset < part.byteLength; offset += 16 * 1024) stream.write(part.subarray(offset, offset + 16 * 1024));
    };
    if (!request.pause) {
      send(body);
      stream.end();
      return;
    }
    send(body.subarray(0, request.pause.bytes));
    setTimeout(() => {
      if (stream.closed) return;
      send(body.subarray(request.pause!.bytes));
      stream.end();
    }, request.pause.ms);
  });
}

function flatten(headers: Record<string, string | string[] | number | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}

/** A message in the length-prefixed framing of Connect streams, gRPC and gRPC-Web: flags, length, payload. */
export function envelope(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}
