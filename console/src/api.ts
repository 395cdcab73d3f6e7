/**
 * The console's one connection to Cairn: the generated WorkflowService descriptors over Connect-Web, to
 * the origin that served the page. In keys mode the API key travels in the Authorization header; it is
 * kept in sessionStorage (gone with the tab, never in a URL or a cookie).
 */
import { type JsonValue, fromJson, toJson } from "@bufbuild/protobuf";
import { type Timestamp, ValueSchema, type Value, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";

export { RunStatus, EntryKind, WaitKind } from "../../sdk/gen/cairn/v1/types_pb.js";
export type { Run, HistoryEntry, Failure, WaitingOn } from "../../sdk/gen/cairn/v1/types_pb.js";
export type { Workflow } from "../../sdk/gen/cairn/v1/workflow_pb.js";

const keyStorage = "cairn.apiKey";

export function apiKey(): string {
  return sessionStorage.getItem(keyStorage) ?? "";
}

export function setApiKey(key: string): void {
  if (key) sessionStorage.setItem(keyStorage, key);
  else sessionStorage.removeItem(keyStorage);
}

/** Dispatched on window when a call is refused for want of a (valid) key: the shell shows the login. */
export const loginNeededEvent = "cairn:login-needed";

const withApiKey: Interceptor = (next) => async (request) => {
  const key = apiKey();
  if (key) request.header.set("authorization", `Bearer ${key}`);
  try {
    return await next(request);
  } catch (error) {
    if (needsLogin(error)) dispatchEvent(new Event(loginNeededEvent));
    throw error;
  }
};

export const api = createClient(
  WorkflowService,
  createConnectTransport({ baseUrl: location.origin, interceptors: [withApiKey] }),
);

/** Unauthenticated means this server wants an API key (keys mode) and we have none, or a wrong one. */
export function needsLogin(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}

export function errorText(error: unknown): string {
  if (error instanceof ConnectError) return `${Code[error.code] ?? error.code}: ${error.rawMessage}`;
  return error instanceof Error ? error.message : String(error);
}

export function json(value: Value | undefined): JsonValue | undefined {
  return value ? toJson(ValueSchema, value) : undefined;
}

export function value(json: JsonValue): Value {
  return fromJson(ValueSchema, json);
}

export function date(timestamp: Timestamp | undefined): Date | undefined {
  return timestamp ? timestampDate(timestamp) : undefined;
}

export function isAbort(error: unknown): boolean {
  return (error instanceof ConnectError && error.code === Code.Canceled) || (error instanceof Error && error.name === "AbortError");
}
