/**
 * The seed's REST routes (DESIGN §5), in front of the Connect handler:
 *
 *   POST /workflows/runs        body {"workflow_name", "input", "eager_start", "idempotency_key", "metadata"}
 *                               (camelCase spellings too)                      → 200 {"run": {...}, "deduplicated"?: true}
 *   GET  /workflows/runs/{id}                                                  → 200 {"run": {...}}
 *   POST /workflows/runs/{id}/pause, /resume, /retry   body {"reason"} or none  → 200 {"run": {...}}
 *   POST /workflows/runs/{id}/fork      body {"from_operation", "input"?}          → 200 {"run": {...}} (the new run)
 *   POST /workflows/batches     body StartBatchRequest {"filter", "operation", "dry_run", "reason"}
 *                                                                              → 200 {"batch"?: {...}, "matched_count", "sample_run_ids"?}
 *   GET  /workflows/batches/{id}                                               → 200 {"batch": {...}}
 *   GET  /workflows/runs/{id}/explain                                          → 200 ExplainRun's answer
 *
 * Both call the very WorkflowService implementation the Connect routes serve, through an in-memory
 * Connect router with the same interceptors, so validation, error codes and messages are identical,
 * and API-key auth (X-Api-Key or Authorization: Bearer, forwarded below) applies here as everywhere.
 *
 * Responses are proto3 JSON with the proto field names (snake_case), like the seed's request body:
 * `{"run": {"run_id": "…", "workflow_name": "…", "status": "RUN_STATUS_QUEUED", "input": {…},
 * "created_at": "2025-01-01T00:00:00Z", …}}`. As in all proto3 JSON, fields holding their default
 * value (empty strings, 0, false, unset messages such as `output`) are left out. The Connect routes
 * (`POST /cairn.v1.WorkflowService/GetRun`) answer the same messages in camelCase; both parsers accept
 * either spelling.
 *
 * Errors: Connect's error JSON `{"code", "message"}` with the code mapped to an HTTP status (see
 * httpStatus: invalid_argument 400, unauthenticated 401, permission_denied 403, not_found 404,
 * already_exists / aborted / failed_precondition 409, resource_exhausted 429, unimplemented 501,
 * unavailable 503, internal 500). Problems with the HTTP request itself: malformed JSON 400, a body
 * over the Connect handler's readMaxBytes 413 (resource_exhausted), a rate-limited key 429 with
 * `Retry-After` (seconds) and `Retry-After-Ms`, a non-JSON content-type 415,
 * another method on a known path 405 with `Allow`.
 */
import { type DescMessage, fromJson, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import {
  CreateRunRequestSchema,
  CreateRunResponseSchema,
  ExplainRunResponseSchema,
  ForkRunRequestSchema,
  ForkRunResponseSchema,
  GetBatchResponseSchema,
  GetRunResponseSchema,
  StartBatchRequestSchema,
  StartBatchResponseSchema,
  PauseRunRequestSchema,
  PauseRunResponseSchema,
  ResumeRunRequestSchema,
  ResumeRunResponseSchema,
  RetryRunRequestSchema,
  RetryRunResponseSchema,
  WorkflowService,
} from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { NodeHandler } from "./listen.js";
import { requestContextValues } from "./request-context.js";
import { carryRequestValues, withRequestValues } from "./rest-call-context.js";

export interface RestOptions {
  /** Largest accepted request body in bytes: the Connect handler's readMaxBytes. */
  readMaxBytes: number;
  /** The Connect handler's interceptors (error mapping, later auth), applied to REST calls too. */
  interceptors?: Interceptor[];
  /** Aborts in-flight REST calls when the server shuts down. */
  shutdownSignal?: AbortSignal;
  /** Called with errors of the REST layer itself (not RPC errors, which the interceptors see). */
  onError?: (error: unknown) => void;
}

export type Request = IncomingMessage | Http2ServerRequest;
export type Response = ServerResponse | Http2ServerResponse;

const collectionPath = "/workflows/runs";
const batchesPath = "/workflows/batches";
/** The paths these routes answer (each and everything under it). */
export const restRunPaths = [collectionPath, batchesPath] as const;

/** Request headers handed on to the service call, so interceptors (API-key auth) see them as on the Connect routes. */
const forwardedHeaders = ["x-api-key", "authorization", "user-agent"];
/** Error metadata passed back to REST clients as response headers (the rate limit's retry hint). */
const returnedErrorHeaders = ["retry-after", "retry-after-ms"];

/** Answers the REST routes under /workflows/runs and hands every other request to `next`. */
export function withRestRoutes(next: NodeHandler, service: ServiceImpl<typeof WorkflowService>, options: RestOptions): NodeHandler {
  const transport = createRouterTransport((router) => carryRequestValues(router.service(WorkflowService, service)), {
    // JSON in memory too: a body that decoded from REST JSON decodes again the same way. (Binary would refuse JSON
    // nested past protobuf's 100-message limit that JSON accepts, as INTERNAL: a fuzz finding.)
    transport: { useBinaryFormat: false },
    router: {
      interceptors: options.interceptors ?? [],
      readMaxBytes: options.readMaxBytes,
      ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
    },
  });
  const client = createClient(WorkflowService, transport);

  return (req, res) => {
    const path = pathOf(req.url);
    const isRuns = path === collectionPath || path.startsWith(`${collectionPath}/`);
    const isBatches = path === batchesPath || path.startsWith(`${batchesPath}/`);
    if (!isRuns && !isBatches) {
      next(req, res);
      return;
    }
    (isRuns ? serve : serveBatches)(client, req, res, path, options).catch((error: unknown) => {
      options.onError?.(error);
      if (!res.headersSent) sendError(res, new ConnectError("internal error (the server logged the cause)", Code.Internal));
      else res.destroy();
    });
  };
}

async function serve(client: Client<typeof WorkflowService>, req: Request, res: Response, path: string, options: RestOptions): Promise<void> {
  const rest = path.slice(collectionPath.length).replace(/^\/+|\/+$/g, "");
  const method = req.method ?? "GET";

  if (rest === "") {
    if (method !== "POST") return sendMethodNotAllowed(res, method, path, "POST");
    const body = await readJsonBody(req, res, options.readMaxBytes);
    if (body === undefined) return; // already answered
    let request: MessageShape<typeof CreateRunRequestSchema>;
    try {
      request = fromJson(CreateRunRequestSchema, body);
    } catch (error) {
      return sendError(res, new ConnectError(`invalid request body: ${(error as Error).message}`, Code.InvalidArgument));
    }
    return call(res, req, CreateRunResponseSchema, (callOptions) => client.createRun(request, callOptions));
  }

  if (!rest.includes("/")) {
    if (method !== "GET" && method !== "HEAD") return sendMethodNotAllowed(res, method, path, "GET");
    let runId: string;
    try {
      runId = decodeURIComponent(rest);
    } catch {
      return sendError(res, new ConnectError(`run id "${rest}" is not valid URL encoding`, Code.InvalidArgument));
    }
    return call(res, req, GetRunResponseSchema, (callOptions) => client.getRun({ runId }, callOptions));
  }

  const explain = /^([^/]+)\/explain$/.exec(rest);
  if (explain) {
    if (method !== "GET" && method !== "HEAD") return sendMethodNotAllowed(res, method, path, "GET");
    let runId: string;
    try {
      runId = decodeURIComponent(explain[1] as string);
    } catch {
      return sendError(res, new ConnectError(`run id "${explain[1]}" is not valid URL encoding`, Code.InvalidArgument));
    }
    return call(res, req, ExplainRunResponseSchema, (callOptions) => client.explainRun({ runId }, callOptions));
  }

  const control = /^([^/]+)\/(pause|resume|retry|fork)$/.exec(rest);
  if (control) {
    if (method !== "POST") return sendMethodNotAllowed(res, method, path, "POST");
    let runId: string;
    try {
      runId = decodeURIComponent(control[1] as string);
    } catch {
      return sendError(res, new ConnectError(`run id "${control[1]}" is not valid URL encoding`, Code.InvalidArgument));
    }
    const action = control[2] as "pause" | "resume" | "retry" | "fork";
    const body = await readJsonBody(req, res, options.readMaxBytes, { allowEmpty: action !== "fork" });
    if (body === undefined) return;
    // The run id comes from the path; the body may carry only the action's fields (unknown fields are refused by name).
    const fields = { ...(body as Record<string, JsonValue>), run_id: runId };
    try {
      switch (action) {
        case "pause": {
          const { reason } = fromJson(PauseRunRequestSchema, fields);
          return call(res, req, PauseRunResponseSchema, (callOptions) => client.pauseRun({ runId, reason }, callOptions));
        }
        case "resume": {
          const { reason } = fromJson(ResumeRunRequestSchema, fields);
          return call(res, req, ResumeRunResponseSchema, (callOptions) => client.resumeRun({ runId, reason }, callOptions));
        }
        case "retry": {
          const { reason } = fromJson(RetryRunRequestSchema, fields);
          return call(res, req, RetryRunResponseSchema, (callOptions) => client.retryRun({ runId, reason }, callOptions));
        }
        case "fork": {
          const request = fromJson(ForkRunRequestSchema, fields);
          return call(res, req, ForkRunResponseSchema, (callOptions) => client.forkRun(request, callOptions));
        }
      }
    } catch (error) {
      return sendError(res, new ConnectError(`invalid request body: ${(error as Error).message}`, Code.InvalidArgument));
    }
  }

  sendError(
    res,
    new ConnectError(
      `no route for ${method} ${path}; REST routes are POST ${collectionPath}, GET ${collectionPath}/{id}, GET ${collectionPath}/{id}/explain and POST ${collectionPath}/{id}/pause|resume|retry|fork`,
      Code.NotFound,
    ),
  );
}

/** POST /workflows/batches (StartBatch) and GET /workflows/batches/{id} (GetBatch). */
async function serveBatches(client: Client<typeof WorkflowService>, req: Request, res: Response, path: string, options: RestOptions): Promise<void> {
  const rest = path.slice(batchesPath.length).replace(/^\/+|\/+$/g, "");
  const method = req.method ?? "GET";
  if (rest === "") {
    if (method !== "POST") return sendMethodNotAllowed(res, method, path, "POST");
    const body = await readJsonBody(req, res, options.readMaxBytes);
    if (body === undefined) return; // already answered
    let request: MessageShape<typeof StartBatchRequestSchema>;
    try {
      request = fromJson(StartBatchRequestSchema, body);
    } catch (error) {
      return sendError(res, new ConnectError(`invalid request body: ${(error as Error).message}`, Code.InvalidArgument));
    }
    return call(res, req, StartBatchResponseSchema, (callOptions) => client.startBatch(request, callOptions));
  }
  if (!rest.includes("/")) {
    if (method !== "GET" && method !== "HEAD") return sendMethodNotAllowed(res, method, path, "GET");
    let batchId: string;
    try {
      batchId = decodeURIComponent(rest);
    } catch {
      return sendError(res, new ConnectError(`batch id "${rest}" is not valid URL encoding`, Code.InvalidArgument));
    }
    return call(res, req, GetBatchResponseSchema, (callOptions) => client.getBatch({ batchId }, callOptions));
  }
  sendError(res, new ConnectError(`no route for ${method} ${path}; batch routes are POST ${batchesPath} and GET ${batchesPath}/{id}`, Code.NotFound));
}

/** The call's context values (peer, verified key) travel beside these: see rest-call-context.ts. */
interface CallOptions {
  headers: Headers;
  signal: AbortSignal;
}

export async function call<O extends DescMessage>(
  res: Response,
  req: Request,
  schema: O,
  invoke: (options: CallOptions) => Promise<MessageShape<O>>,
): Promise<void> {
  const headers = new Headers();
  for (const name of forwardedHeaders) {
    const value = req.headers[name];
    if (typeof value === "string") headers.set(name, value);
  }
  // The client went away: stop working for it (the call sees Canceled, like a dropped Connect call).
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.once("close", onClose);
  try {
    const message = await withRequestValues(requestContextValues(req), () => invoke({ headers, signal: abort.signal }));
    sendJson(res, 200, toJson(schema, message, { useProtoFieldName: true }), req.method === "HEAD");
  } catch (error) {
    if (abort.signal.aborted) return;
    sendError(res, ConnectError.from(error));
  } finally {
    res.off("close", onClose);
  }
}

/** The parsed body, or undefined after answering the request with an error. */
export async function readJsonBody(req: Request, res: Response, limit: number, options: { allowEmpty?: boolean } = {}): Promise<JsonValue | undefined> {
  const contentType = headerValue(req, "content-type");
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase();
  if (mediaType && mediaType !== "application/json" && !/^application\/[\w.+-]+\+json$/.test(mediaType)) {
    sendError(res, new ConnectError(`content-type "${contentType}" is not supported; send a JSON body with content-type: application/json`, Code.InvalidArgument), 415);
    return undefined;
  }
  const tooLarge = () =>
    new ConnectError(
      `request body is larger than the limit of ${limit} bytes (CAIRN_MAX_REQUEST_BYTES)`,
      Code.ResourceExhausted,
    );
  const declared = Number(headerValue(req, "content-length"));
  if (Number.isFinite(declared) && declared > limit) {
    refuseBody(req, res, tooLarge());
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        refuseBody(req, res, tooLarge());
        return undefined;
      }
      chunks.push(chunk);
    }
  } catch {
    // The client went away mid-body: nobody is left to answer.
    res.destroy();
    return undefined;
  }
  const text = Buffer.concat(chunks).toString("utf8");
  // A body without a content type is what a cross-site page can send without a CORS preflight (a Blob or
  // bytes): never read as JSON, so such a page cannot start or change runs by REST.
  if (!mediaType && text.trim() !== "") {
    sendError(res, new ConnectError(`a request body needs content-type: application/json`, Code.InvalidArgument), 415);
    return undefined;
  }
  if (text.trim() === "" && options.allowEmpty) return {};
  if (text.trim() === "") {
    sendError(res, new ConnectError(`request body is empty; send a JSON object such as {"workflow_name": "...", "input": {...}}`, Code.InvalidArgument));
    return undefined;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    sendError(res, new ConnectError(`request body is not valid JSON: ${(error as Error).message}`, Code.InvalidArgument));
    return undefined;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    sendError(res, new ConnectError(`request body must be a JSON object such as {"workflow_name": "...", "input": {...}}`, Code.InvalidArgument));
    return undefined;
  }
  return body as JsonValue;
}

/** Answers 413 without reading the rest of the body; an HTTP/1.1 connection is closed after it. */
function refuseBody(req: Request, res: Response, error: ConnectError): void {
  if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
  sendError(res, error, 413);
}

export function sendMethodNotAllowed(res: Response, method: string, path: string, allowed: string): void {
  res.setHeader("allow", allowed === "GET" ? "GET, HEAD" : allowed);
  sendError(res, new ConnectError(`${method} ${path} is not supported; use ${allowed}`, Code.Unimplemented), 405);
}

export function sendError(res: Response, error: ConnectError, status = httpStatus(error.code)): void {
  for (const name of returnedErrorHeaders) {
    const value = error.metadata.get(name);
    if (value !== null) res.setHeader(name, value);
  }
  sendJson(res, status, { code: codeName(error.code), message: error.rawMessage });
}

function sendJson(res: Response, status: number, body: unknown, headOnly = false): void {
  const bytes = Buffer.from(JSON.stringify(body), "utf8");
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", bytes.length);
  if (headOnly) res.end();
  else res.end(bytes);
}

/** HTTP status for a Connect code on the REST routes. */
export function httpStatus(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
    case Code.FailedPrecondition: // the run's state conflicts with the request (e.g. it already finished)
      return 409;
    case Code.ResourceExhausted:
      return 429;
    case Code.Canceled:
      return 499;
    case Code.Unimplemented:
      return 501;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

/** `Code.InvalidArgument` → `"invalid_argument"`, as in Connect's error JSON. */
function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase();
}

export function pathOf(url: string | undefined): string {
  const raw = url ?? "/";
  const end = raw.search(/[?#]/);
  return end === -1 ? raw : raw.slice(0, end);
}

function headerValue(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
