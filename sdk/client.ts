/**
 * The Cairn client: create runs, wait for their results, list, signal and cancel them, from Node
 * (20+) or a browser. Inputs, outputs and payloads are plain JSON; the generated Connect clients
 * stay available as `client.raw`.
 *
 * ```ts
 * const cairn = createCairnClient({ baseUrl: "http://localhost:8080", apiKey: "..." });
 * const orders = workflowRef<{ orderId: string }, { status: string }>("order_fulfillment");
 * const run = await cairn.createRun(orders, { orderId: "o-1" }, { eagerStart: true });
 * const { status } = await run.waitForResult({ timeoutMs: 60_000 });
 * ```
 *
 * Protocols: "connect" (default) and "grpc-web" use @connectrpc/connect-web over `fetch`, so they
 * work in browsers and in Node alike (with `ca`, Node only, they use @connectrpc/connect-node). In
 * Node, `http2: true` sends "connect" calls over one HTTP/2 connection with the SDK's own transport
 * (sdk/node-transport.ts, loaded on the first call), the cheapest for the client's CPU. "grpc"
 * needs HTTP/2 with trailers, which browsers cannot do:
 * pass a Node transport, e.g. `transport: createGrpcTransport({ baseUrl, httpVersion: "2" })` from
 * @connectrpc/connect-node. A supplied `transport` is used as it is, whatever `protocol` says; the API
 * key is still added to every call's headers, and retries still apply.
 *
 * Retries: calls that are safe to repeat (GetRun, ListRuns, ListWorkflows, GetRunHistory, and
 * CreateRun / SendEvent *with* an idempotency key) are retried on UNAVAILABLE, DEADLINE_EXCEEDED,
 * ABORTED, RESOURCE_EXHAUSTED and network failures, with exponential backoff and jitter (4 attempts
 * by default). Other calls are never repeated: a CreateRun without an idempotency key whose answer
 * was lost may have created the run, so the error goes to the caller. The retries are in the
 * transport, so `client.raw` calls get them too. `timeoutMs` applies to each attempt.
 *
 * No Node-only imports here: this file runs in browsers (sdk/tsconfig.json has no Node types).
 */
import { type DescMessage, type DescMethodStreaming, type DescMethodUnary, fromJson, type JsonValue as ProtoJson, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel, timestampDate, timestampFromDate, type Timestamp, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, type ContextValues, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { AgentService } from "./gen/cairn/v1/agent_pb.js";
import { EntryKind, type Failure, type HistoryEntry, type Run, RunStatus, type WaitingOn, WaitKind } from "./gen/cairn/v1/types_pb.js";
import { type Batch, BatchOperation, BatchStatus, type ExplainRunResponse, NearMissReason, type ServerProcess, type WatchRunResponse, WorkflowService } from "./gen/cairn/v1/workflow_pb.js";
import { CairnError, type RunFailure, RunCancelledError, RunFailedError, WaitTimeoutError } from "./errors.js";
import { createScheduleClient, type ScheduleClient } from "./schedules.js";
import { readOnToEnd } from "./stream-drain.js";
import { type Duration, type JsonObject, type JsonValue, parseDuration, type WorkflowDefinition } from "./workflow.js";

/** What `new Headers(...)` accepts (spelled out so the SDK typechecks with Node's types as well as the DOM's). */
export type HeadersInit = ConstructorParameters<typeof Headers>[0];

// ---------------------------------------------------------------------------------------------
// Workflow references

/**
 * A typed handle on a workflow by name, for clients that cannot (or should not) import the
 * workflow's code, e.g. browsers: `workflowRef<Input, Output>("order_fulfillment")`.
 */
export interface WorkflowRef<I = JsonObject, O = JsonValue> {
  readonly kind: "cairn.workflowRef";
  readonly name: string;
  /** Never set: carries the input and output types for `createRun` and `waitForResult`. */
  readonly types?: { readonly input: I; readonly output: O };
}

export function workflowRef<I = JsonObject, O = JsonValue>(name: string): WorkflowRef<I, O> {
  return { kind: "cairn.workflowRef", name };
}

/** What `createRun` accepts as a typed workflow: a `defineWorkflow(...)` value or a `workflowRef`. */
export type TypedWorkflow<I = JsonObject, O = JsonValue> = WorkflowDefinition<I, O> | WorkflowRef<I, O>;

/**
 * The input type of a typed workflow. For a workflow with a schema this is the schema's output
 * type, so fields that have defaults in the schema are still required here.
 */
// `any` on both sides: matches every workflow, whatever its input and output types.
type AnyWorkflow = WorkflowDefinition<any, any> | WorkflowRef<any, any>;
export type WorkflowInput<W extends AnyWorkflow> = W extends TypedWorkflow<infer I, infer _O> ? I : never;
/** The output type of a typed workflow, i.e. what `waitForResult` resolves. */
export type WorkflowOutput<W extends AnyWorkflow> = W extends TypedWorkflow<infer _I, infer O> ? O : never;

// ---------------------------------------------------------------------------------------------
// Plain-JSON views of the API's messages

export type RunStatusName = "queued" | "running" | "waiting" | "paused" | "completed" | "failed" | "cancelled";
export type WaitKindName = "timer" | "event" | "child" | "agent" | "retry";

/** What a WAITING run waits on. */
/** What a waiting run waits on; `description` is the server's one line for people. */
export type WaitingOnInfo = { description: string } & (
  | { kind: "timer"; name: string; fireAt?: Date }
  | { kind: "event"; name: string; eventType: string; correlationId: string; timeoutAt?: Date }
  | { kind: "child"; name: string; runId: string; workflowName: string }
  | { kind: "agent"; name: string; turnId: string; agent: string; timeoutAt?: Date }
  | { kind: "retry"; name: string; stepName: string; nextAttempt: number; retryAt?: Date }
  | { kind: "unknown"; name: string }
);

/** A run, with its input and output as plain JSON. */
export interface RunInfo<O = JsonValue> {
  runId: string;
  workflowName: string;
  status: RunStatusName;
  input: JsonValue;
  /** Set when status is "completed". */
  output?: O;
  /** Set when status is "failed" (what the handler threw) or "cancelled" (the reason). */
  error?: RunFailure;
  /** The run that started this one; absent for top-level runs. */
  parentRunId?: string;
  createdAt: Date;
  updatedAt: Date;
  startedAt?: Date;
  completedAt?: Date;
  /** Set while status is "waiting". */
  waitingOn?: WaitingOnInfo;
  namespace: string;
  metadata: Record<string, string>;
  idempotencyKey?: string;
  activationCount: number;
  /** The run this one was forked from (ForkRun); absent otherwise. */
  forkedFromRunId?: string;
  /** The run-level timeout: not ended by then, the run fails with RunTimeoutError. */
  timeoutAt?: Date;
  /** Claim order: higher first (docs/flow-control.md). */
  priority: number;
  /** Set while flow control holds the queued run back: which limit, its key and its place in line. */
  heldBy?: FlowHoldInfo;
  /** The schedule whose fire created the run; absent otherwise. */
  scheduleId?: string;
}

/** Why flow control holds a queued run back (docs/flow-control.md). */
export interface FlowHoldInfo {
  gate: "concurrency" | "rate" | "namespace";
  /** The run's key ("" when the workflow declares no key function); for "namespace", the namespace. */
  key: string;
  /** 1 for the next run its key releases; 0 for "rate", which waits for `availableAt` instead. */
  position: number;
  availableAt?: Date;
}

export interface RetryRunOptions extends RequestOptions {
  /** Recorded in the run_retried history entry. */
  reason?: string;
}

export interface ForkRunOptions extends RequestOptions {
  /** The operation to run live from, as the source's history names it; everything before it is replayed. */
  fromOperation: string;
  /** The new run's input (a JSON object); absent: the source's input. */
  input?: JsonValue;
}

export type NearMissReasonName = "other_correlation_id" | "before_lookback" | "already_consumed" | "targeted_at_other_run" | "unknown";

/** A stored event of an event wait's type that did not match it, and why. */
export interface EventNearMissInfo {
  eventId: string;
  eventType: string;
  correlationId: string;
  sentAt?: Date;
  reason: NearMissReasonName;
  /** "targeted_at_other_run": the run it was sent to. */
  targetRunId?: string;
  /** One line for people. */
  explanation: string;
}

export interface ServerProcessInfo {
  id: string;
  host: string;
  pid: number;
  version: string;
  startedAt?: Date;
  lastSeenAt?: Date;
}

/** What `explainRun` answers. */
export interface RunExplanation {
  run: RunInfo;
  /** Pending waits, with near-miss events for event waits. */
  waits: { wait: WaitingOnInfo; lookbackFrom?: Date; nearMisses: EventNearMissInfo[] }[];
  /** Queued (or due) runs: claimable runs ahead of it in claim order. */
  queue?: { runsAhead: number; availableAt?: Date };
  /** Running runs: who holds the lease and whether that process is alive. */
  lease?: { owner: string; ownerLive: boolean; leaseExpiresAt?: Date; lastHeartbeatAt?: Date; pendingRequest?: string };
  /** Live processes that loaded the run's workflow; empty: none (a queued run waits for one). */
  loadedBy: ServerProcessInfo[];
  pauseReason?: string;
  abnormalActivations: number;
  timeoutAt?: Date;
  /** The explanation for people, as `cairn runs why` prints it. */
  lines: string[];
}

export interface WorkflowInfo {
  name: string;
  sourceFile: string;
  hasInputSchema: boolean;
  /** "zod", "valibot", ... when hasInputSchema. */
  inputSchemaVendor?: string;
  /** The input schema as JSON Schema (draft 2020-12), when the schema library can describe itself. */
  inputJsonSchema?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Options and results

export interface RetryOptions {
  /** Attempts in all, the first included. Default 4; 1 turns retries off. */
  maxAttempts?: number;
  /** Delay before the second attempt. Default 100 ms; it doubles per attempt. */
  initialDelayMs?: number;
  /** Longest delay between attempts. Default 2000 ms. */
  maxDelayMs?: number;
}

export interface CairnClientOptions {
  /** The server, e.g. "http://localhost:8080" (or "/" from a page it serves). Required unless `transport` is given. */
  baseUrl?: string;
  /** Sent as the `X-Api-Key` header on every call (create keys with `cairn keys create`). */
  apiKey?: string;
  /**
   * Node only: PEM certificate(s) to trust for an `https://` baseUrl, e.g. a private CA or the
   * server's self-signed certificate (browsers use their own trust store). The connect and grpc-web
   * protocols then go through @connectrpc/connect-node (HTTP/1.1, loaded on first call) instead of
   * fetch, or through the SDK's HTTP/2 transport with `http2: true`; `fetch` is unused. With a
   * `transport` of your own, give it the CA instead.
   */
  ca?: string | readonly string[];
  /** Default "connect". "grpc" needs `transport` (browsers cannot speak gRPC). */
  protocol?: "connect" | "grpc-web" | "grpc";
  /**
   * Node only, protocol "connect": calls go over one HTTP/2 connection (h2c for http://, TLS for
   * https://, trusting `ca` if given) with the SDK's own Connect transport (`createHttp2Transport`
   * from "@cairnjs/sdk/node", loaded on the first call). It costs the client far less CPU per call than
   * `fetch` or @connectrpc/connect-node. Bodies are protobuf binary unless `useBinaryFormat: false`;
   * `fetch` is unused.
   */
  http2?: boolean;
  /** A ready Connect transport (e.g. from @connectrpc/connect-node); `baseUrl`, `protocol`, `http2`, `fetch`, `interceptors` and `useBinaryFormat` are then unused. */
  transport?: Transport;
  /** The fetch implementation for the connect and grpc-web transports (default: globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
  /** Extra Connect interceptors for the connect and grpc-web transports. */
  interceptors?: Interceptor[];
  /** Protobuf binary instead of JSON on the wire (connect: default JSON; grpc-web: default binary). */
  useBinaryFormat?: boolean;
  /** Default per-call timeout in milliseconds (connect and grpc-web transports). */
  timeoutMs?: number;
  /** Retry policy for calls that are safe to repeat; `false` turns retries off. */
  retry?: RetryOptions | false;
}

/** Per-call options of every helper. */
export interface RequestOptions {
  signal?: AbortSignal;
  /** Timeout of each attempt, in milliseconds. */
  timeoutMs?: number;
  headers?: HeadersInit;
}

export interface CreateRunOptions extends RequestOptions {
  /** Claim and start the run in the process that receives the request (lowest latency). Default false: queued. */
  eagerStart?: boolean;
  /** Deduplicates retries: another CreateRun with this key (and the same workflow and input) returns the first run. Also makes the call safe to retry automatically. */
  idempotencyKey?: string;
  /** Free-form labels stored with the run. */
  metadata?: Record<string, string>;
  /**
   * Run-level timeout ("30s", "5m", ms, or { minutes: 5 }); must be more than zero. A run not ended this long
   * after it was created fails with RunTimeoutError, its children cancelled. Default: the workflow's
   * `defineWorkflow({ timeout })`, if any. (Not `timeoutMs`, which bounds this call.)
   */
  timeout?: Duration;
  /** Claim order over the workflow's default priority: an integer from -1000 to 1000, higher first. */
  priority?: number;
}

export interface WaitForResultOptions {
  /** Give up after this long with a WaitTimeoutError (the run goes on). Default: wait forever. */
  timeoutMs?: number;
  /** Only against servers without AwaitRun: the longest gap between GetRun polls (they start 50 ms apart). Default 1000. */
  pollIntervalMs?: number;
  signal?: AbortSignal;
}

export interface ListRunsFilter extends RequestOptions {
  /** Only runs of this workflow (a name, a `defineWorkflow` value or a `workflowRef`). */
  workflow?: string | { readonly name: string };
  /** Only runs in one of these states (empty: all). */
  statuses?: readonly RunStatusName[];
  /** Only children of this run. */
  parentRunId?: string;
  /** Only runs this schedule created. */
  scheduleId?: string;
  /** Only runs created at or after / before this instant. */
  createdAfter?: Date;
  createdBefore?: Date;
  /** Only runs that ended (completed, failed or cancelled) at or after / before this instant. */
  endedAfter?: Date;
  endedBefore?: Date;
  /** Only runs whose metadata holds every one of these key/value pairs (served by an index). */
  metadata?: Readonly<Record<string, string>>;
  /** Only runs parked on this kind of wait. */
  waitingFor?: WaitKindName;
  /** Only runs waiting for events of this type / correlation id. */
  waitingEventType?: string;
  waitingCorrelationId?: string;
  /** Runs per request (server default 50, at most 1000). */
  pageSize?: number;
}

/** Which runs a batch selects: ListRuns' filter fields (at least one must be given). */
export type RunSelector = Omit<ListRunsFilter, "pageSize" | keyof RequestOptions>;

export type BatchOperationName = "cancel" | "pause" | "resume" | "retry";

export interface StartBatchInput extends RequestOptions {
  filter: RunSelector;
  operation: BatchOperationName;
  /** Count the selected runs and show a sample; store nothing. */
  dryRun?: boolean;
  /** Recorded in each run's history entry. */
  reason?: string;
}

export type StartBatchResult =
  | { dryRun: true; matchedCount: number; sampleRunIds: string[] }
  | { dryRun: false; matchedCount: number; batch: BatchInfo };

export interface BatchInfo {
  batchId: string;
  operation: BatchOperationName | "unknown";
  /** running until every selected run was handled; failed only when the batch itself could not go on (see error). */
  status: "running" | "completed" | "failed" | "unknown";
  reason: string;
  error?: string;
  selectedCount: number;
  /** Done, skipped or failed so far. */
  processedCount: number;
  /** Already in the wanted state: nothing changed. */
  skippedCount: number;
  failedCount: number;
  createdAt: Date;
  finishedAt?: Date;
  /** The first per-run failures (GetBatch only; at most 100). */
  failures: { runId: string; message: string }[];
}

export interface ListRunsPage {
  runs: RunInfo[];
  /** Pass as `pageToken` for the next page; absent on the last page. */
  nextPageToken?: string;
}

export interface SendEventInput {
  eventType: string;
  correlationId: string;
  payload?: JsonValue;
  /** Deliver only to this run. */
  runId?: string;
  /** Deduplicates retries: the same key stores the event once. Also makes the call safe to retry automatically. */
  idempotencyKey?: string;
}

export interface SendEventResult {
  eventId: string;
  /** Runs woken by this event (empty: stored for a later waitForEvent). */
  matchedRunIds: string[];
  /** True when idempotencyKey matched an event already stored. */
  deduplicated: boolean;
}

/** A created run, typed by its workflow's output. */
export interface RunHandle<O = JsonValue> {
  readonly runId: string;
  readonly workflowName: string;
  /** The run as CreateRun answered it. */
  readonly run: RunInfo<O>;
  /** True when the idempotency key matched an existing run, so no new run was created. */
  readonly deduplicated: boolean;
  /** Resolves the run's output when it completes; throws RunFailedError / RunCancelledError / WaitTimeoutError. */
  waitForResult(options?: WaitForResultOptions): Promise<O>;
  /** The run as it is now. */
  get(options?: RequestOptions): Promise<RunInfo<O>>;
  cancel(reason?: string, options?: RequestOptions): Promise<RunInfo<O>>;
}

export interface HistoryEntryInfo {
  sequence: number;
  /** e.g. "step_completed", "timer_fired", "run_completed". */
  kind: string;
  name: string;
  result?: JsonValue;
  error?: { name: string; message: string };
  attempt: number;
  createdAt?: Date;
  startedAt?: Date;
  /** The server's one line for people: "step charge completed (attempt 2)". */
  summary: string;
}

export type RunUpdate = { type: "run"; run: RunInfo } | { type: "entry"; entry: HistoryEntryInfo };

export interface WatchRunOptions {
  afterSequence?: number;
  signal?: AbortSignal;
  /** Reconnections after a transient failure (default 5). */
  maxReconnects?: number;
}

export interface CairnClient {
  /** Start a run of a typed workflow: the input is type-checked, and the handle's `waitForResult` resolves the workflow's output type. */
  createRun<I, O>(workflow: TypedWorkflow<I, O>, input: NoInfer<I>, options?: CreateRunOptions): Promise<RunHandle<O>>;
  /** Start a run by workflow name. Input defaults to `{}`. */
  createRun<O = JsonValue>(workflowName: string, input?: JsonObject, options?: CreateRunOptions): Promise<RunHandle<O>>;
  getRun<O = JsonValue>(runId: string, options?: RequestOptions): Promise<RunInfo<O>>;
  /** Every matching run, newest first, fetching further pages as the iteration goes on. */
  listRuns(filter?: ListRunsFilter): AsyncIterable<RunInfo>;
  /** One page of runs, for UIs that page themselves. */
  listRunsPage(filter?: ListRunsFilter & { pageToken?: string }): Promise<ListRunsPage>;
  /** Every history entry of a run, oldest first (after `afterSequence`), fetching further pages as the iteration goes on. */
  getRunHistory(runId: string, options?: { afterSequence?: number; pageSize?: number } & RequestOptions): AsyncIterable<HistoryEntryInfo>;
  listWorkflows(options?: RequestOptions): Promise<WorkflowInfo[]>;
  sendEvent(event: SendEventInput, options?: RequestOptions): Promise<SendEventResult>;
  /** Cancel a queued, running or waiting run. A run that already ended is a FAILED_PRECONDITION error. */
  cancelRun(runId: string, reason?: string, options?: RequestOptions): Promise<RunInfo>;
  /**
   * Pause a queued or waiting run: nothing claims it (events and due timers wait) until `resumeRun`. Pausing a
   * paused run returns it unchanged; a running or ended run is a FAILED_PRECONDITION error.
   */
  pauseRun(runId: string, reason?: string, options?: RequestOptions): Promise<RunInfo>;
  /** Make a paused run claimable again. A run that is not paused is a FAILED_PRECONDITION error. */
  resumeRun(runId: string, reason?: string, options?: RequestOptions): Promise<RunInfo>;
  /**
   * Queue a failed run again: it continues from where it failed (completed steps are replayed, not run again;
   * the failed operation runs again with a fresh attempt count). Any other status is a FAILED_PRECONDITION error.
   */
  retryRun(runId: string, options?: RetryRunOptions): Promise<RunInfo>;
  /**
   * A new run of the same workflow that replays `runId`'s journal up to `fromOperation` and runs live from
   * there, with the same or a new input. An operation the source never reached is a FAILED_PRECONDITION error.
   */
  forkRun(runId: string, options: ForkRunOptions): Promise<RunInfo>;
  /**
   * One operation over every run `filter` selects, processed durably by the server(s) in chunks; each selected run
   * is handled once. `dryRun` answers the count and up to 20 run ids. A filter without a condition is INVALID_ARGUMENT.
   */
  startBatch(input: StartBatchInput): Promise<StartBatchResult>;
  /** A batch's progress, counters and first per-run failures. */
  getBatch(batchId: string, options?: RequestOptions): Promise<BatchInfo>;
  /** This namespace's batches, newest first (without failures). */
  listBatches(options?: RequestOptions & { pageSize?: number }): Promise<BatchInfo[]>;
  /**
   * Why the run is where it is, from what the server's database knows: its waits (for an event wait, the
   * stored events that did not match and why), its queue position and which live processes loaded its
   * workflow, its lease holder, its pause reason, its abnormal activations; `lines` for people.
   */
  explainRun(runId: string, options?: RequestOptions): Promise<RunExplanation>;
  /**
   * Polls GetRun until the run ends (a live stream replaces the polling once WatchRun is served):
   * resolves its output, or throws RunFailedError / RunCancelledError (carrying the run's failure),
   * or WaitTimeoutError when `timeoutMs` passes first.
   */
  waitForResult<O = JsonValue>(run: string | RunHandle<O>, options?: WaitForResultOptions): Promise<O>;
  /**
   * The run's snapshot, its history so far (after `afterSequence`), then every
   * new entry and status change until the run ends. A dropped stream is
   * resumed from the last entry seen, without gaps or repeats.
   */
  watchRun(runId: string, options?: WatchRunOptions): AsyncIterable<RunUpdate>;
  /** The generated Connect clients, over the same transport (API key and retries included). They throw ConnectError. */
  readonly raw: {
    readonly workflows: Client<typeof WorkflowService>;
    readonly agents: Client<typeof AgentService>;
  };
  /** ScheduleService: create, list, pause, trigger, backfill... schedules (sdk/schedules.ts). */
  readonly schedules: ScheduleClient;
  readonly transport: Transport;
}

// ---------------------------------------------------------------------------------------------
// The client

export function createCairnClient(options: CairnClientOptions): CairnClient {
  const transport = withRetries(baseTransport(options), options.retry === false ? { maxAttempts: 1 } : (options.retry ?? {}));
  const workflows = createClient(WorkflowService, transport);
  const agents = createClient(AgentService, transport);

  async function rpc<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw CairnError.from(error);
    }
  }

  function handle<O>(run: RunInfo<O>, deduplicated: boolean): RunHandle<O> {
    return {
      runId: run.runId,
      workflowName: run.workflowName,
      run,
      deduplicated,
      waitForResult: (waitOptions) => client.waitForResult<O>(run.runId, waitOptions),
      get: (requestOptions) => client.getRun<O>(run.runId, requestOptions),
      cancel: async (reason, requestOptions) => (await client.cancelRun(run.runId, reason, requestOptions)) as RunInfo<O>,
    };
  }

  async function listRunsPage(filter: ListRunsFilter & { pageToken?: string } = {}): Promise<ListRunsPage> {
    const response = await rpc(() =>
      workflows.listRuns(
        { ...runFilterFields(filter), pageSize: filter.pageSize ?? 0, pageToken: filter.pageToken ?? "" },
        callOptions(filter),
      ),
    );
    return {
      runs: response.runs.map((run) => runInfo(run)),
      ...(response.nextPageToken ? { nextPageToken: response.nextPageToken } : {}),
    };
  }

  const client: CairnClient = {
    raw: { workflows, agents },
    schedules: createScheduleClient(transport),
    transport,

    async createRun<O>(
      workflow: string | TypedWorkflow<unknown, unknown>,
      input?: unknown,
      createOptions: CreateRunOptions = {},
    ): Promise<RunHandle<O>> {
      const workflowName = typeof workflow === "string" ? workflow : workflow.name;
      const response = await rpc(() =>
        workflows.createRun(
          {
            workflowName,
            input: jsonToValue(input === undefined ? {} : input, "input"),
            eagerStart: createOptions.eagerStart ?? false,
            idempotencyKey: createOptions.idempotencyKey ?? "",
            metadata: createOptions.metadata ?? {},
            ...(createOptions.timeout === undefined ? {} : { timeout: protoDuration(createOptions.timeout, "timeout") }),
            ...(createOptions.priority === undefined ? {} : { priority: createOptions.priority }),
          },
          callOptions(createOptions),
        ),
      );
      if (!response.run) throw new CairnError("CreateRun answered without a run", Code.Internal);
      return handle(runInfo<O>(response.run), response.deduplicated);
    },

    async getRun<O>(runId: string, requestOptions?: RequestOptions): Promise<RunInfo<O>> {
      const { run } = await rpc(() => workflows.getRun({ runId }, callOptions(requestOptions)));
      if (!run) throw new CairnError("GetRun answered without a run", Code.Internal);
      return runInfo<O>(run);
    },

    listRuns(filter: ListRunsFilter = {}): AsyncIterable<RunInfo> {
      return {
        async *[Symbol.asyncIterator]() {
          let pageToken: string | undefined;
          do {
            const page = await listRunsPage({ ...filter, ...(pageToken ? { pageToken } : {}) });
            yield* page.runs;
            pageToken = page.nextPageToken;
          } while (pageToken);
        },
      };
    },

    listRunsPage,

    getRunHistory(runId: string, options: { afterSequence?: number; pageSize?: number } & RequestOptions = {}): AsyncIterable<HistoryEntryInfo> {
      return {
        async *[Symbol.asyncIterator]() {
          let afterSequence = BigInt(options.afterSequence ?? 0);
          for (;;) {
            const page = await rpc(() =>
              workflows.getRunHistory({ runId, afterSequence, pageSize: options.pageSize ?? 0 }, callOptions(options)),
            );
            for (const entry of page.entries) yield entryInfo(entry);
            const last = page.entries.at(-1);
            if (!page.hasMore || !last) return;
            afterSequence = last.sequence;
          }
        },
      };
    },

    async listWorkflows(requestOptions?: RequestOptions): Promise<WorkflowInfo[]> {
      const response = await rpc(() => workflows.listWorkflows({}, callOptions(requestOptions)));
      return response.workflows.map((w) => ({
        name: w.name,
        sourceFile: w.sourceFile,
        hasInputSchema: w.hasInputSchema,
        ...(w.inputSchemaVendor ? { inputSchemaVendor: w.inputSchemaVendor } : {}),
        ...(w.inputJsonSchema ? { inputJsonSchema: JSON.parse(w.inputJsonSchema) as Record<string, unknown> } : {}),
      }));
    },

    async sendEvent(event: SendEventInput, requestOptions?: RequestOptions): Promise<SendEventResult> {
      const response = await rpc(() =>
        workflows.sendEvent(
          {
            eventType: event.eventType,
            correlationId: event.correlationId,
            ...(event.payload === undefined ? {} : { payload: jsonToValue(event.payload, "payload") }),
            runId: event.runId ?? "",
            idempotencyKey: event.idempotencyKey ?? "",
          },
          callOptions(requestOptions),
        ),
      );
      return { eventId: response.eventId, matchedRunIds: [...response.matchedRunIds], deduplicated: response.deduplicated };
    },

    async cancelRun(runId: string, reason?: string, requestOptions?: RequestOptions): Promise<RunInfo> {
      const { run } = await rpc(() => workflows.cancelRun({ runId, reason: reason ?? "" }, callOptions(requestOptions)));
      if (!run) throw new CairnError("CancelRun answered without a run", Code.Internal);
      return runInfo(run);
    },

    async pauseRun(runId: string, reason?: string, requestOptions?: RequestOptions): Promise<RunInfo> {
      const { run } = await rpc(() => workflows.pauseRun({ runId, reason: reason ?? "" }, callOptions(requestOptions)));
      if (!run) throw new CairnError("PauseRun answered without a run", Code.Internal);
      return runInfo(run);
    },

    async explainRun(runId: string, requestOptions?: RequestOptions): Promise<RunExplanation> {
      const response = await rpc(() => workflows.explainRun({ runId }, callOptions(requestOptions)));
      if (!response.run) throw new CairnError("ExplainRun answered without a run", Code.Internal);
      return explanation(response);
    },

    async resumeRun(runId: string, reason?: string, requestOptions?: RequestOptions): Promise<RunInfo> {
      const { run } = await rpc(() => workflows.resumeRun({ runId, reason: reason ?? "" }, callOptions(requestOptions)));
      if (!run) throw new CairnError("ResumeRun answered without a run", Code.Internal);
      return runInfo(run);
    },

    async retryRun(runId: string, retryOptions: RetryRunOptions = {}): Promise<RunInfo> {
      const { run } = await rpc(() => workflows.retryRun({ runId, reason: retryOptions.reason ?? "" }, callOptions(retryOptions)));
      if (!run) throw new CairnError("RetryRun answered without a run", Code.Internal);
      return runInfo(run);
    },

    async forkRun(runId: string, forkOptions: ForkRunOptions): Promise<RunInfo> {
      const request = {
        runId,
        fromOperation: forkOptions.fromOperation,
        ...(forkOptions.input === undefined ? {} : { input: jsonToValue(forkOptions.input, "input") }),
      };
      const { run } = await rpc(() => workflows.forkRun(request, callOptions(forkOptions)));
      if (!run) throw new CairnError("ForkRun answered without a run", Code.Internal);
      return runInfo(run);
    },

    async startBatch(input: StartBatchInput): Promise<StartBatchResult> {
      const response = await rpc(() =>
        workflows.startBatch(
          { filter: runFilterFields(input.filter), operation: batchOperationFromName(input.operation), dryRun: input.dryRun ?? false, reason: input.reason ?? "" },
          callOptions(input),
        ),
      );
      const matchedCount = Number(response.matchedCount);
      if (input.dryRun) return { dryRun: true, matchedCount, sampleRunIds: response.sampleRunIds };
      if (!response.batch) throw new CairnError("StartBatch answered without a batch", Code.Internal);
      return { dryRun: false, matchedCount, batch: batchInfo(response.batch) };
    },

    async getBatch(batchId: string, requestOptions?: RequestOptions): Promise<BatchInfo> {
      const { batch } = await rpc(() => workflows.getBatch({ batchId }, callOptions(requestOptions)));
      if (!batch) throw new CairnError("GetBatch answered without a batch", Code.Internal);
      return batchInfo(batch);
    },

    async listBatches(requestOptions: RequestOptions & { pageSize?: number } = {}): Promise<BatchInfo[]> {
      const { batches } = await rpc(() => workflows.listBatches({ pageSize: requestOptions.pageSize ?? 0 }, callOptions(requestOptions)));
      return batches.map(batchInfo);
    },

    async *watchRun(runId: string, watchOptions: WatchRunOptions = {}): AsyncIterable<RunUpdate> {
      let afterSequence = watchOptions.afterSequence ?? 0;
      let reconnects = 0;
      /** The last update handed over was a final status: a failure right after it needs no reconnect. */
      let ended = false;
      for (;;) {
        try {
          // Its own signal: a caller that stops before the run ended cancels the stream in the finally below (what
          // for-await's break would do), even while a read is pending.
          const stop = new AbortController();
          const stopWithCaller = () => stop.abort(watchOptions.signal?.reason);
          if (watchOptions.signal?.aborted) stopWithCaller();
          watchOptions.signal?.addEventListener("abort", stopWithCaller);
          const stream = workflows.watchRun({ runId, afterSequence: BigInt(afterSequence) }, { signal: stop.signal });
          const messages = stream[Symbol.asyncIterator]();
          try {
            // A read already asked for (after a final status), which the loop takes before asking for another.
            let pending: Promise<IteratorResult<WatchRunResponse>> | undefined;
            for (;;) {
              const next = await (pending ?? messages.next());
              pending = undefined;
              if (next.done) return;
              reconnects = 0;
              const update = watchUpdate(next.value);
              if (!update) continue;
              if (update.type === "entry") {
                afterSequence = update.entry.sequence;
                // History after the final status (a finished run): a failure from here on reconnects for the rest.
                ended = false;
              }
              if (update.type === "run" && finalRunStatuses.has(update.run.status)) {
                // The server ends the stream right after a final status, or after the history that follows a finished
                // run's status. Read on to that end before handing the status over: a caller that stops here
                // would otherwise reset the stream, and Node's HTTP/2 server closes a connection, with every call on
                // it, after 1,000 resets in a burst. Bounded: at most 2 s and 1,000 messages are held back; past
                // that, the rest streams as usual.
                const rest = await readOnToEnd(messages, finalEndMs, finalHeldMessages);
                pending = rest.pending;
                ended = true;
                yield update;
                for (const message of rest.held) {
                  const later = watchUpdate(message);
                  if (!later) continue;
                  if (later.type === "entry") {
                    afterSequence = later.entry.sequence;
                    ended = false;
                  }
                  yield later;
                }
                if (rest.ended) return;
                continue;
              }
              yield update;
            }
          } finally {
            watchOptions.signal?.removeEventListener("abort", stopWithCaller);
            stop.abort();
          }
        } catch (error) {
          if (ended) return;
          const cairnError = CairnError.from(error);
          const transient = [Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Aborted].includes(cairnError.code);
          if (watchOptions.signal?.aborted || !transient || reconnects >= (watchOptions.maxReconnects ?? 5)) throw cairnError;
          reconnects++;
          await sleep(Math.min(100 * 2 ** reconnects, 2000), watchOptions.signal);
        }
      }
    },

    async waitForResult<O>(run: string | RunHandle<O>, waitOptions: WaitForResultOptions = {}): Promise<O> {
      const runId = typeof run === "string" ? run : run.runId;
      const { timeoutMs, signal } = waitOptions;
      const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
      const settle = (info: RunInfo<O>): O | undefined => {
        if (info.status === "completed") return info.output as O;
        if (info.status === "failed") throw new RunFailedError(runId, info.error ?? { name: "Error", message: "the run failed without a recorded error" });
        if (info.status === "cancelled") throw new RunCancelledError(runId, info.error);
        return undefined;
      };
      let lastStatus = "unknown";
      // AwaitRun answers the moment the run ends (a long poll); servers without it are polled with GetRun.
      let longPoll = true;
      let interval = Math.min(50, Math.max(1, waitOptions.pollIntervalMs ?? 1000));
      for (;;) {
        const remaining = deadline === undefined ? undefined : deadline - Date.now();
        if (remaining !== undefined && timeoutMs !== undefined && remaining <= 0) throw new WaitTimeoutError(runId, timeoutMs, lastStatus);
        let info: RunInfo<O>;
        try {
          if (longPoll) {
            const waitMs = Math.min(remaining ?? awaitSliceMs, awaitSliceMs);
            const response = await rpc(() =>
              workflows.awaitRun(
                { runId, timeout: { seconds: BigInt(Math.floor(waitMs / 1000)), nanos: (waitMs % 1000) * 1e6 } },
                // The server answers by then; the margin covers the trip.
                { ...(signal ? { signal } : {}), timeoutMs: waitMs + awaitMarginMs },
              ),
            );
            if (!response.run) throw new CairnError("AwaitRun answered without a run", Code.Internal);
            info = runInfo<O>(response.run);
          } else {
            info = await client.getRun<O>(runId, { ...(signal ? { signal } : {}), ...(remaining ? { timeoutMs: Math.max(1, remaining) } : {}) });
          }
        } catch (error) {
          if (longPoll && error instanceof CairnError && error.code === Code.Unimplemented) {
            longPoll = false;
            continue;
          }
          if (deadline !== undefined && timeoutMs !== undefined && Date.now() >= deadline && !signal?.aborted) {
            throw new WaitTimeoutError(runId, timeoutMs, lastStatus);
          }
          throw error;
        }
        lastStatus = info.status;
        const output = settle(info);
        if (output !== undefined || info.status === "completed") return output as O;
        if (!longPoll) {
          const now = Date.now();
          await sleep(deadline === undefined ? interval : Math.max(0, Math.min(interval, deadline - now)), signal);
          interval = Math.min(interval * 2, Math.max(1, waitOptions.pollIntervalMs ?? 1000));
        }
      }
    },
  } as CairnClient;
  return client;
}

/** One AwaitRun call waits at most this long; waitForResult calls it again until the run ends. */
const awaitSliceMs = 30_000;
const awaitMarginMs = 5_000;

function callOptions(options: RequestOptions | undefined): RequestOptions {
  if (!options) return {};
  return {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.headers ? { headers: options.headers } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Transports

/** Adds `X-Api-Key` to every request that does not carry one already. */
export function apiKeyInterceptor(apiKey: string): Interceptor {
  return (next) => (request) => {
    if (!request.header.has("x-api-key")) request.header.set("x-api-key", apiKey);
    return next(request);
  };
}

function baseTransport(options: CairnClientOptions): Transport {
  if (options.transport) {
    return options.apiKey ? withDefaultHeaders(options.transport, { "x-api-key": options.apiKey }) : options.transport;
  }
  const protocol = options.protocol ?? "connect";
  if (protocol === "grpc") {
    throw new TypeError(
      'protocol "grpc" needs a `transport`: browsers cannot speak gRPC (HTTP/2 trailers); in Node pass createGrpcTransport({ baseUrl, httpVersion: "2" }) from @connectrpc/connect-node, or use protocol "connect" or "grpc-web"',
    );
  }
  if (!options.baseUrl) throw new TypeError("createCairnClient needs a `baseUrl` (e.g. \"http://localhost:8080\") or a `transport`");
  const fetchImpl = options.fetch;
  const common = {
    baseUrl: options.baseUrl,
    interceptors: [...(options.apiKey ? [apiKeyInterceptor(options.apiKey)] : []), ...(options.interceptors ?? [])],
    // Called as a plain function: some fetch implementations must not be called as a method of the options.
    ...(fetchImpl ? { fetch: ((input, init) => fetchImpl(input, init)) as typeof globalThis.fetch } : {}),
    ...(options.useBinaryFormat === undefined ? {} : { useBinaryFormat: options.useBinaryFormat }),
    ...(options.timeoutMs === undefined ? {} : { defaultTimeoutMs: options.timeoutMs }),
  };
  if (protocol !== "grpc-web" && protocol !== "connect") throw new TypeError(`unknown protocol ${JSON.stringify(protocol)}; use "connect", "grpc-web" or "grpc"`);
  if (options.http2) {
    if (protocol !== "connect") throw new TypeError(`http2: true speaks the "connect" protocol only, not ${JSON.stringify(protocol)}`);
    const { fetch: _unused, ...http2Options } = common;
    return nodeHttp2Transport({ ...http2Options, ...(options.ca === undefined ? {} : { ca: options.ca }) });
  }
  if (options.ca !== undefined) return nodeTlsTransport(protocol, common, options.ca);
  if (protocol === "grpc-web") return createGrpcWebTransport(common);
  if (protocol === "connect") return createConnectTransport(common);
  throw new TypeError(`unknown protocol ${JSON.stringify(protocol)}; use "connect", "grpc-web" or "grpc"`);
}

/** What this file uses of @connectrpc/connect-node (typed here: the SDK compiles without Node's types). */
interface NodeTransportFactories {
  createConnectTransport(options: object): Transport;
  createGrpcWebTransport(options: object): Transport;
}

/** What this file uses of ./node-transport.ts ("@cairnjs/sdk/node"). */
interface NodeHttp2TransportModule {
  createHttp2Transport(options: object): Transport;
}

/**
 * Imports a Node-only module, on the first call, through a specifier that bundlers leave alone, so
 * that browser bundles of this file do not pull in Node code. `failure` is the message if it cannot.
 */
async function importNodeModule<M>(specifier: string, failure: string): Promise<M> {
  try {
    return (await import(/* @vite-ignore */ specifier)) as M;
  } catch (error) {
    throw new CairnError(failure, Code.Unimplemented, { cause: error });
  }
}

/** A Node transport that trusts `ca` (HTTP/1.1, @connectrpc/connect-node), made on the first call. */
function nodeTlsTransport(protocol: "connect" | "grpc-web", common: object, ca: string | readonly string[]): Transport {
  return lazyTransport(async () => {
    const node = await importNodeModule<NodeTransportFactories>(
      "@connectrpc/connect-node",
      "the `ca` option needs Node.js (@connectrpc/connect-node); in browsers the browser's certificates apply",
    );
    const make = protocol === "grpc-web" ? node.createGrpcWebTransport : node.createConnectTransport;
    return make({ ...common, httpVersion: "1.1", nodeOptions: { ca: typeof ca === "string" ? ca : [...ca] } });
  });
}

/** The SDK's HTTP/2 transport (sdk/node-transport.ts), made on the first call. */
function nodeHttp2Transport(options: object): Transport {
  // The package's own export rather than a relative path, so that it also resolves from a bundled
  // Node app; in a variable, so that neither bundlers nor sdk/tsconfig.json's browser check follow it.
  const specifier = "@cairnjs/sdk/node";
  return lazyTransport(async () => {
    const module = await importNodeModule<NodeHttp2TransportModule>(specifier, "the `http2` option needs Node.js (node:http2); browsers choose the HTTP version themselves");
    return module.createHttp2Transport(options);
  });
}

/** A transport made by `load` on the first call; later calls go straight to it. */
function lazyTransport(load: () => Promise<Transport>): Transport {
  let loaded: Transport | undefined;
  let loading: Promise<Transport> | undefined;
  const ready = (): Promise<Transport> =>
    (loading ??= load().then((transport) => {
      loaded = transport;
      return transport;
    }));
  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ) {
      if (loaded) return loaded.unary(method, signal, timeoutMs, header, input, contextValues);
      return ready().then((transport) => transport.unary(method, signal, timeoutMs, header, input, contextValues));
    },
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ) {
      if (loaded) return loaded.stream(method, signal, timeoutMs, header, input, contextValues);
      return ready().then((transport) => transport.stream(method, signal, timeoutMs, header, input, contextValues));
    },
  };
}

/** For a supplied transport, whose interceptors we cannot extend: default headers added per call. */
function withDefaultHeaders(transport: Transport, defaults: Record<string, string>): Transport {
  const merge = (header: HeadersInit | undefined): Headers => {
    const headers = new Headers(header);
    for (const [name, value] of Object.entries(defaults)) if (!headers.has(name)) headers.set(name, value);
    return headers;
  };
  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ) {
      return transport.unary(method, signal, timeoutMs, merge(header), input, contextValues);
    },
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ) {
      return transport.stream(method, signal, timeoutMs, merge(header), input, contextValues);
    },
  };
}

const transientCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.ResourceExhausted]);

/** Whether a failed call may have failed for a passing reason. */
function isTransient(error: unknown): boolean {
  const connect = ConnectError.from(error);
  if (transientCodes.has(connect.code)) return true;
  // fetch rejects with a TypeError when the connection fails (refused, reset, DNS); connect-web reports it as UNKNOWN.
  return connect.code === Code.Unknown && connect.cause instanceof TypeError;
}

/** The server's `retry-after-ms` (or `retry-after`, seconds) on a refused call, in milliseconds. */
function retryHintMs(error: unknown): number | undefined {
  const metadata = ConnectError.from(error).metadata;
  const ms = Number(metadata.get("retry-after-ms") ?? Number.NaN);
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const seconds = Number(metadata.get("retry-after") ?? Number.NaN);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/** Whether repeating the call cannot do anything twice. */
function isRepeatable(method: DescMethodUnary, input: unknown): boolean {
  // NO_SIDE_EFFECTS reads, and IDEMPOTENT calls (CancelRun answers a repeat like the first call).
  if (method.idempotency !== MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN) return true;
  const key = (input as { idempotencyKey?: unknown } | undefined)?.idempotencyKey;
  return typeof key === "string" && key.length > 0;
}

/** Unary calls that are safe to repeat are retried with exponential backoff; streams pass through. */
function withRetries(transport: Transport, retry: RetryOptions): Transport {
  const maxAttempts = Math.max(1, Math.floor(retry.maxAttempts ?? 4));
  const initialDelayMs = Math.max(0, retry.initialDelayMs ?? 100);
  const maxDelayMs = Math.max(initialDelayMs, retry.maxDelayMs ?? 2000);
  if (maxAttempts === 1) return transport;
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ) {
      const repeatable = isRepeatable(method as DescMethodUnary, input);
      for (let attempt = 1; ; attempt++) {
        try {
          return await transport.unary(method, signal, timeoutMs, header, input, contextValues);
        } catch (error) {
          if (!repeatable || attempt >= maxAttempts || signal?.aborted || !isTransient(error)) throw error;
          const backoff = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
          // A rate-limited call says when to come back (retry-after-ms); a wait of over a minute is the caller's decision.
          const hinted = retryHintMs(error);
          if (hinted !== undefined && hinted > 60_000) throw error;
          try {
            await sleep(Math.max(backoff * (0.5 + Math.random() * 0.5), hinted ?? 0), signal);
          } catch {
            throw error; // aborted while backing off: the caller gets the last real failure
          }
        }
      }
    },
    stream: (method, signal, timeoutMs, header, input, contextValues) => transport.stream(method, signal, timeoutMs, header, input, contextValues),
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new CairnError("the operation was aborted", Code.Canceled, { cause: signal.reason }));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new CairnError("the operation was aborted", Code.Canceled, { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Conversions

/** Any JSON-serialisable value → google.protobuf.Value, with JSON.stringify's semantics (undefined fields dropped, Dates as strings). */
function jsonToValue(value: unknown, what: string): Value {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new CairnError(`${what} is not JSON-serializable: ${(error as Error).message}`, Code.InvalidArgument, { cause: error });
  }
  if (text === undefined) throw new CairnError(`${what} is not JSON-serializable (got ${typeof value})`, Code.InvalidArgument);
  return fromJson(ValueSchema, JSON.parse(text) as ProtoJson);
}

function valueToJson(value: Value): JsonValue {
  return toJson(ValueSchema, value) as JsonValue;
}

function date(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

const statusNames: Record<RunStatus, RunStatusName | undefined> = {
  [RunStatus.UNSPECIFIED]: undefined,
  [RunStatus.QUEUED]: "queued",
  [RunStatus.RUNNING]: "running",
  [RunStatus.WAITING]: "waiting",
  [RunStatus.COMPLETED]: "completed",
  [RunStatus.FAILED]: "failed",
  [RunStatus.CANCELLED]: "cancelled",
  [RunStatus.PAUSED]: "paused",
};

/** The filtering fields of ListRuns, also StartBatch's RunFilter. */
function runFilterFields(filter: RunSelector) {
  return {
    workflowName: typeof filter.workflow === "string" ? filter.workflow : (filter.workflow?.name ?? ""),
    statuses: (filter.statuses ?? []).map(statusFromName),
    parentRunId: filter.parentRunId ?? "",
    scheduleId: filter.scheduleId ?? "",
    createdAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
    createdBefore: filter.createdBefore ? timestampFromDate(filter.createdBefore) : undefined,
    endedAfter: filter.endedAfter ? timestampFromDate(filter.endedAfter) : undefined,
    endedBefore: filter.endedBefore ? timestampFromDate(filter.endedBefore) : undefined,
    metadata: { ...filter.metadata },
    waitingFor: filter.waitingFor ? waitKindFromName(filter.waitingFor) : WaitKind.UNSPECIFIED,
    waitingEventType: filter.waitingEventType ?? "",
    waitingCorrelationId: filter.waitingCorrelationId ?? "",
  };
}

const batchOperationValues: Record<BatchOperationName, BatchOperation> = {
  cancel: BatchOperation.CANCEL,
  pause: BatchOperation.PAUSE,
  resume: BatchOperation.RESUME,
  retry: BatchOperation.RETRY,
};

function batchOperationFromName(name: BatchOperationName): BatchOperation {
  const operation = batchOperationValues[name];
  if (operation === undefined) throw new CairnError(`unknown batch operation ${JSON.stringify(name)}; use one of ${Object.keys(batchOperationValues).join(", ")}`, Code.InvalidArgument);
  return operation;
}

const batchStatusNames: Record<BatchStatus, BatchInfo["status"]> = {
  [BatchStatus.UNSPECIFIED]: "unknown",
  [BatchStatus.RUNNING]: "running",
  [BatchStatus.COMPLETED]: "completed",
  [BatchStatus.FAILED]: "failed",
};

function batchInfo(batch: Batch): BatchInfo {
  const operation = (Object.entries(batchOperationValues).find(([, value]) => value === batch.operation)?.[0] ?? "unknown") as BatchInfo["operation"];
  return {
    batchId: batch.batchId,
    operation,
    status: batchStatusNames[batch.status] ?? "unknown",
    reason: batch.reason,
    ...(batch.error ? { error: batch.error } : {}),
    selectedCount: Number(batch.selectedCount),
    processedCount: Number(batch.processedCount),
    skippedCount: Number(batch.skippedCount),
    failedCount: Number(batch.failedCount),
    createdAt: date(batch.createdAt) ?? new Date(0),
    ...optionalDate("finishedAt", batch.finishedAt),
    failures: batch.failures.map((f) => ({ runId: f.runId, message: f.message })),
  };
}

function statusFromName(name: RunStatusName): RunStatus {
  for (const [status, statusName] of Object.entries(statusNames)) if (statusName === name) return Number(status) as RunStatus;
  throw new CairnError(`unknown run status ${JSON.stringify(name)}; use one of queued, running, waiting, paused, completed, failed, cancelled`, Code.InvalidArgument);
}

function waitKindFromName(name: WaitKindName): WaitKind {
  const kinds: Record<WaitKindName, WaitKind> = {
    timer: WaitKind.TIMER,
    event: WaitKind.EVENT,
    child: WaitKind.CHILD,
    agent: WaitKind.AGENT,
    retry: WaitKind.RETRY,
  };
  const kind = kinds[name];
  if (kind === undefined) throw new CairnError(`unknown wait kind ${JSON.stringify(name)}; use one of ${Object.keys(kinds).join(", ")}`, Code.InvalidArgument);
  return kind;
}

function failureInfo(failure: Failure): RunFailure {
  return {
    name: failure.name,
    message: failure.message,
    ...(failure.stack ? { stack: failure.stack } : {}),
    ...(failure.details ? { details: valueToJson(failure.details) } : {}),
  };
}

function waitingOnInfo(waiting: WaitingOn): WaitingOnInfo {
  const { name, target } = waiting;
  const description = waiting.description || name;
  switch (target.case) {
    case "timer":
      return { kind: "timer", name, description, ...optionalDate("fireAt", target.value.fireAt) };
    case "event":
      return { kind: "event", name, description, eventType: target.value.eventType, correlationId: target.value.correlationId, ...optionalDate("timeoutAt", target.value.timeoutAt) };
    case "child":
      return { kind: "child", name, description, runId: target.value.runId, workflowName: target.value.workflowName };
    case "agent":
      return { kind: "agent", name, description, turnId: target.value.turnId, agent: target.value.agent, ...optionalDate("timeoutAt", target.value.timeoutAt) };
    case "retry":
      return { kind: "retry", name, description, stepName: target.value.stepName, nextAttempt: target.value.nextAttempt, ...optionalDate("retryAt", target.value.retryAt) };
    default:
      return { kind: "unknown", name, description };
  }
}

function optionalDate<K extends string>(key: K, ts: Timestamp | undefined): { [P in K]?: Date } {
  const value = date(ts);
  return (value ? { [key]: value } : {}) as { [P in K]?: Date };
}

/** How long, and for how many messages, watchRun reads on after a final status for the stream's end. */
const finalEndMs = 2_000;
const finalHeldMessages = 1_000;
const finalRunStatuses = new Set<RunStatusName>(["completed", "failed", "cancelled"]);

function watchUpdate(message: WatchRunResponse): RunUpdate | undefined {
  if (message.update.case === "run") return { type: "run", run: runInfo(message.update.value) };
  if (message.update.case === "entry") return { type: "entry", entry: entryInfo(message.update.value) };
  return undefined;
}

function entryInfo(entry: HistoryEntry): HistoryEntryInfo {
  const info: HistoryEntryInfo = {
    sequence: Number(entry.sequence),
    kind: (EntryKind[entry.kind] ?? "UNSPECIFIED").toLowerCase(),
    name: entry.name,
    attempt: entry.attempt,
    summary: entry.summary || `${(EntryKind[entry.kind] ?? "entry").toLowerCase().replaceAll("_", " ")} ${entry.name}`.trimEnd(),
  };
  if (entry.result) info.result = toJson(ValueSchema, entry.result) as JsonValue;
  if (entry.error) info.error = { name: entry.error.name, message: entry.error.message };
  if (entry.createdAt) info.createdAt = timestampDate(entry.createdAt);
  if (entry.startedAt) info.startedAt = timestampDate(entry.startedAt);
  return info;
}

function runInfo<O = JsonValue>(run: Run): RunInfo<O> {
  const status = statusNames[run.status];
  return {
    runId: run.runId,
    workflowName: run.workflowName,
    status: status ?? ("unknown" as RunStatusName),
    input: run.input ? valueToJson(run.input) : {},
    ...(run.output ? { output: valueToJson(run.output) as O } : {}),
    ...(run.error ? { error: failureInfo(run.error) } : {}),
    ...(run.parentRunId ? { parentRunId: run.parentRunId } : {}),
    createdAt: date(run.createdAt) ?? new Date(0),
    updatedAt: date(run.updatedAt) ?? date(run.createdAt) ?? new Date(0),
    ...optionalDate("startedAt", run.startedAt),
    ...optionalDate("completedAt", run.completedAt),
    ...(run.waitingOn ? { waitingOn: waitingOnInfo(run.waitingOn) } : {}),
    namespace: run.namespace,
    metadata: { ...run.metadata },
    ...(run.idempotencyKey ? { idempotencyKey: run.idempotencyKey } : {}),
    activationCount: run.activationCount,
    ...(run.forkedFromRunId ? { forkedFromRunId: run.forkedFromRunId } : {}),
    ...optionalDate("timeoutAt", run.timeoutAt),
    priority: run.priority,
    ...(run.heldBy
      ? {
          heldBy: {
            gate: run.heldBy.gate as FlowHoldInfo["gate"],
            key: run.heldBy.key,
            position: Number(run.heldBy.position),
            ...optionalDate("availableAt", run.heldBy.availableAt),
          },
        }
      : {}),
    ...(run.scheduleId ? { scheduleId: run.scheduleId } : {}),
  };
}

/** A Duration as authors write it → the proto Duration; a bad one is refused here as the server would (INVALID_ARGUMENT). */
function protoDuration(duration: Duration, field: string): { seconds: bigint; nanos: number } {
  let ms: number;
  try {
    ms = parseDuration(duration);
  } catch (error) {
    throw new CairnError(`${field}: ${(error as Error).message}`, Code.InvalidArgument);
  }
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

const nearMissReasons: Record<number, NearMissReasonName> = {
  [NearMissReason.OTHER_CORRELATION_ID]: "other_correlation_id",
  [NearMissReason.BEFORE_LOOKBACK]: "before_lookback",
  [NearMissReason.ALREADY_CONSUMED]: "already_consumed",
  [NearMissReason.TARGETED_AT_OTHER_RUN]: "targeted_at_other_run",
};

function processInfo(p: ServerProcess): ServerProcessInfo {
  return { id: p.id, host: p.host, pid: p.pid, version: p.version, ...optionalDate("startedAt", p.startedAt), ...optionalDate("lastSeenAt", p.lastSeenAt) };
}

function explanation(response: ExplainRunResponse): RunExplanation {
  return {
    run: runInfo(response.run!),
    waits: response.waits.map((w) => ({
      wait: waitingOnInfo(w.wait!),
      ...optionalDate("lookbackFrom", w.lookbackFrom),
      nearMisses: w.nearMisses.map((m) => ({
        eventId: m.eventId,
        eventType: m.eventType,
        correlationId: m.correlationId,
        ...optionalDate("sentAt", m.sentAt),
        reason: nearMissReasons[m.reason] ?? "unknown",
        ...(m.targetRunId ? { targetRunId: m.targetRunId } : {}),
        explanation: m.explanation,
      })),
    })),
    ...(response.queue ? { queue: { runsAhead: Number(response.queue.runsAhead), ...optionalDate("availableAt", response.queue.availableAt) } } : {}),
    ...(response.lease
      ? {
          lease: {
            owner: response.lease.owner,
            ownerLive: response.lease.ownerLive,
            ...optionalDate("leaseExpiresAt", response.lease.leaseExpiresAt),
            ...optionalDate("lastHeartbeatAt", response.lease.lastHeartbeatAt),
            ...(response.lease.pendingRequest ? { pendingRequest: response.lease.pendingRequest } : {}),
          },
        }
      : {}),
    loadedBy: response.loadedBy.map(processInfo),
    ...(response.pauseReason ? { pauseReason: response.pauseReason } : {}),
    abnormalActivations: response.abnormalActivations,
    ...optionalDate("timeoutAt", response.timeoutAt),
    lines: [...response.lines],
  };
}
