/** Listing runs: filters, newest first, keyset pages behind an opaque token. */
import { InvalidInputError } from "../core/errors.js";
import type { WaitKind } from "../core/waits.js";
import { listRuns as readRuns, type RunCursor, type RunFilter } from "../store/runs/read.js";
import type { RunRow, RunStatus } from "../store/schema.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export interface RunListRequest extends RunSelection {
  /** 0 asks for the default. */
  pageSize: number;
  pageToken: string;
}

/** Which runs: ListRuns' filter, also a batch's selection (StartBatch). */
export interface RunSelection {
  workflowName?: string | undefined;
  statuses: RunStatus[];
  parentRunId?: string | undefined;
  scheduleId?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
  /** Only runs that ended at or after / before these instants. */
  endedAfter?: Date | undefined;
  endedBefore?: Date | undefined;
  waitingFor?: WaitKind | undefined;
  waitingEventType?: string | undefined;
  waitingCorrelationId?: string | undefined;
  /** Only runs whose metadata holds every one of these pairs. */
  metadata?: Readonly<Record<string, string>> | undefined;
}

/** The store's filter: empty strings and empty maps (proto defaults) mean "no condition". */
export function runFilterOf(request: RunSelection): RunFilter {
  return {
    workflowName: request.workflowName || undefined,
    statuses: request.statuses,
    parentRunId: request.parentRunId?.toLowerCase() || undefined,
    scheduleId: request.scheduleId || undefined,
    createdAfter: request.createdAfter,
    createdBefore: request.createdBefore,
    endedAfter: request.endedAfter,
    endedBefore: request.endedBefore,
    waitingFor: request.waitingFor,
    waitingEventType: request.waitingEventType || undefined,
    waitingCorrelationId: request.waitingCorrelationId || undefined,
    metadata: request.metadata && Object.keys(request.metadata).length > 0 ? request.metadata : undefined,
  };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function listRuns(deps: RunsDeps, call: Pick<Call, "namespace">, request: RunListRequest): Promise<{ runs: RunRow[]; nextPageToken: string }> {
  const pageSize = clampPageSize(request.pageSize, 50, deps.maxListRunsPageSize);
  const rows = await readRuns(
    deps.store.db,
    call.namespace,
    runFilterOf(request),
    pageSize,
    decodePageToken(request.pageToken),
  );
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  const more = rows.length > pageSize && last;
  return { runs: page, nextPageToken: more ? encodePageToken({ createdAt: last.createdAt, id: last.id }) : "" };
}

/** 0 asks for the default; the transports refuse negative sizes. */
export function clampPageSize(requested: number, fallback: number, max: number): number {
  return Math.min(requested === 0 ? fallback : requested, max);
}

function encodePageToken(cursor: RunCursor): string {
  return Buffer.from(JSON.stringify({ c: cursor.createdAt.toISOString(), i: cursor.id })).toString("base64url");
}

function decodePageToken(token: string): RunCursor | undefined {
  if (!token) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { c?: unknown; i?: unknown };
    const createdAt = typeof parsed.c === "string" ? new Date(parsed.c) : undefined;
    // Years 1 to 9999, like every timestamp this server hands out: others would reach SQL out of range (fuzz finding).
    const year = createdAt?.getUTCFullYear() ?? Number.NaN;
    if (createdAt && year >= 1 && year <= 9999 && typeof parsed.i === "string" && uuidPattern.test(parsed.i)) {
      return { createdAt, id: parsed.i };
    }
  } catch {
    // fall through to the error below
  }
  throw new InvalidInputError("page_token is not one this server issued; pass next_page_token from a ListRuns response unchanged");
}
