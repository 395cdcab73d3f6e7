/**
 * Assembles a Cairn server: store → workflows → worker → runs service → RPC routes → one
 * listening port. `main.ts` runs it from the environment; tests start it
 * in-process with their own config.
 */
import { WorkflowThreads } from "./worker/threads/workflow-threads.js";
import { setMaxListeners } from "node:events";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AgentService } from "../sdk/gen/cairn/v1/agent_pb.js";
import { KeyService } from "../sdk/gen/cairn/v1/keys_pb.js";
import { ScheduleService } from "../sdk/gen/cairn/v1/schedules_pb.js";
import { createScheduleService } from "./rpc/schedule-service.js";
import { upsertDeclaredSchedules } from "./runs/schedules.js";
import { WorkflowService } from "../sdk/gen/cairn/v1/workflow_pb.js";
import { KeyCache } from "./auth/key-cache.js";
import { RateLimiter } from "./auth/rate-limit.js";
import { type Config, isLoopback } from "./config.js";
import { withConsole } from "./http/console.js";
import { withCors } from "./http/cors.js";
import { withCorsHint } from "./http/cors-hint.js";
import { assertPortFree } from "./http/port-check.js";
import { listen } from "./http/listen.js";
import { withValidAuthority } from "./http/require-authority.js";
import { withOpenModeGuard } from "./http/open-mode-guard.js";
import { restRunPaths, withRestRoutes } from "./http/rest.js";
import { schedulesPath, withScheduleRestRoutes } from "./http/rest-schedules.js";
import { withKeyGate } from "./http/key-gate.js";
import { requestContextValues } from "./http/request-context.js";
import { withUnaryLane } from "./http/unary-lane.js";
import { withStreamLane } from "./http/stream-lane.js";
import type { Logger } from "./logger.js";
import { Metrics } from "./metrics.js";
import { serveMetrics, withMetrics, type AdminCheck } from "./http/metrics-endpoint.js";
import { codeLabel, metricsInterceptor } from "./rpc/metrics-interceptor.js";
import { tracingInterceptor } from "./rpc/tracing-interceptor.js";
import { Tracing } from "./tracing.js";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createAgentService } from "./rpc/agent-service.js";
import { authInterceptor, servicesWithoutKey } from "./rpc/auth.js";
import { CallerSlots, callerCapsInterceptor } from "./rpc/caller-caps.js";
import { errorMappingInterceptor } from "./rpc/error-mapping.js";
import { deadlineInterceptor } from "./rpc/deadline.js";
import { acceptCompression, reclassifyProtocolErrors } from "./rpc/protocol-errors.js";
import { createRequestValidator, validationInterceptor } from "./rpc/validation.js";
import { createHealthService, Health, ServingStatus } from "./rpc/health.js";
import { createReflectionServices, ServerReflectionV1, ServerReflectionV1alpha } from "./rpc/reflection.js";
import { createWorkflowService } from "./rpc/workflow-service.js";
import { createKeyService } from "./rpc/key-service.js";
import { Worker } from "./worker/worker.js";
import { BatchRunner } from "./worker/batch-runner.js";
import { batchOperationFor } from "./runs/batch-operations.js";
import type { RunsDeps } from "./runs/runs-deps.js";
import { readFileSync } from "node:fs";
import { RunFeed } from "./runs/run-feed.js";
import { RunTails } from "./runs/run-tail.js";
import { TurnBoard } from "./runs/turn-board.js";
import { countActiveApiKeys } from "./runs/api-keys.js";
import { type Database, openStore } from "./runs/runtime.js";
import { writeBootstrapKey } from "./auth/bootstrap-key.js";
import { loadWorkflows } from "./workflows/loader.js";
import { describeFirstStore } from "./runs/runtime.js";
import type { WorkflowRegistry } from "./workflows/registry.js";

export interface CairnServer {
  readonly port: number;
  readonly url: string;
  readonly database: Database;
  readonly registry: WorkflowRegistry;
  readonly scheduler: Worker;
  /** The run feed every waiter on runs listens on (AwaitRun, WatchRun, WatchRuns). */
  readonly feed: RunFeed;
  /** This server's Prometheus instruments. */
  readonly metrics: Metrics;
  /** `CAIRN_METRICS_PORT`'s /metrics, when set. */
  readonly metricsUrl: string | undefined;
  /** Calls the unary fast lane answered so far (always 0 with CAIRN_UNARY_LANE=off). */
  unaryLaneCalls(): number;
  /** Streams the stream lane answered so far (always 0 with CAIRN_STREAM_LANE=off). */
  streamLaneCalls(): number;
  /** Graceful: stop serving, let activations finish within the grace period, release the rest, close the store. */
  close(): Promise<void>;
}

/** Everything of a server but its port: the store, the worker, the services and the interceptors they run behind. */
export interface CairnServices {
  readonly database: Database;
  readonly registry: WorkflowRegistry;
  readonly scheduler: Worker;
  /** Where workflow code runs; undefined with CAIRN_WORKFLOW_THREADS=0 (on the main thread). */
  readonly workflowThreads: WorkflowThreads | undefined;
  /** Works through stored batches (StartBatch); started with the server. */
  readonly batches: BatchRunner;
  readonly feed: RunFeed;
  /** Registers every service on a router (the Connect adapter, the unary lane, or a test's router transport). */
  readonly routes: (router: ConnectRouter) => void;
  readonly interceptors: Interceptor[];
  readonly health: ReturnType<typeof createHealthService>;
  readonly keys: KeyCache | undefined;
  /** Failed authentications per peer (keys mode with CAIRN_AUTH_FAILURE_RPS), shared by the HTTP key gate and the interceptor. */
  readonly failedAuthLimiter: RateLimiter | undefined;
  readonly workflowService: ReturnType<typeof createWorkflowService>;
  readonly scheduleService: ReturnType<typeof createScheduleService>;
  /** Aborted at shutdown: every in-flight request listens on it. */
  readonly shutdown: AbortController;
  /** This server's Prometheus registry and instruments. */
  readonly metrics: Metrics;
  /** Undefined when tracing is off. */
  readonly tracing: Tracing | undefined;
}

/** Opens the store and builds the services; nothing runs yet (tests route calls to them without a socket). */
export async function createServices(config: Config, logger: Logger): Promise<CairnServices> {
  const registry = await loadWorkflows(config.workflowDirs, logger);
  describeFirstStore(config, logger);
  const store = await openStore({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    leasePoolSize: config.leasePoolSize,
    acquireTimeoutMs: config.dbAcquireTimeoutMs,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    listenerCheckMs: config.dbListenerCheckMs,
  });
  const database = store.database;
  logger.info({ store: database.description }, "store ready");

  const metrics = new Metrics();
  const tracing = config.tracing ? new Tracing(config.tracing) : undefined;
  const turnBoard = new TurnBoard();
  const feed = new RunFeed({ recheckMs: config.watchRecheckMs, metrics });
  // Workflow code runs on these threads (started with the server), never on the thread that serves and renews leases.
  const workflowThreads =
    config.workflowThreads > 0
      ? new WorkflowThreads({
          workflowDirs: config.workflowDirs,
          threads: config.workflowThreads,
          blockedCodeMs: config.blockedCodeMs,
          heapMb: config.workflowHeapMb,
          logger,
          // On PostgreSQL each thread journals its runs' steps over two connections of its own.
          journal: config.databaseUrl
            ? {
                url: config.databaseUrl,
                connections: 2,
                acquireTimeoutMs: config.dbAcquireTimeoutMs,
                statementTimeoutMs: config.dbStatementTimeoutMs,
                applicationName: "cairn workflow thread",
              }
            : undefined,
          commits: store.commits,
        })
      : undefined;
  // Group commits wait for the threads' turn: what one commit resumed comes back as the next commit's items.
  if (workflowThreads) store.gatherWith(workflowThreads.gather);
  const scheduler = new Worker({
    store,
    registry,
    ...(workflowThreads ? { runner: workflowThreads } : {}),
    logger,
    turnBoard,
    leaseMs: config.leaseMs,
    maxAbnormalActivations: config.maxAbnormalActivations,
    eventRetentionMs: config.eventRetentionMs,
    runRetention: config.runRetention,
    sweepIntervalMs: config.sweepIntervalMs,
    pollIntervalMs: config.pollIntervalMs,
    maxConcurrentRuns: config.maxConcurrentRuns,
    onRunChanged: (runId, row, entries) => feed.publishLocal(runId, row, entries),
    onEntriesAppended: (runId, entries) => feed.publishAppended(runId, entries),
    limits: { inputBytes: config.maxInputBytes, stepResultBytes: config.maxStepResultBytes, journalBytes: config.maxJournalBytes },
    metrics,
    tracing,
    version: serverVersion(),
  });
  metrics.observe({ queue: () => scheduler.queueDepth(), pool: database.poolStats });
  const health = createHealthService({ services: [WorkflowService.typeName, AgentService.typeName, KeyService.typeName, ScheduleService.typeName] });
  const reflection = createReflectionServices([WorkflowService, AgentService, KeyService, ScheduleService, Health]);
  const shutdown = new AbortController();
  // Every in-flight request listens on this signal; many concurrent requests are normal, not a leak.
  setMaxListeners(0, shutdown.signal);

  const runsDeps: RunsDeps = {
    store,
    registry,
    worker: scheduler,
    // Threads that journal their runs' entries themselves tell the main thread those of runs tailed here.
    tails: new RunTails(database.watchDb, feed, metrics, store.commits, workflowThreads && ((runId, tailed) => workflowThreads.tailed(runId, tailed))),
    leaseMs: config.leaseMs,
    maxInputBytes: config.maxInputBytes,
    namespaceMaxRunning: config.namespaceMaxRunning,
    maxEventBytes: config.maxEventBytes,
    maxListRunsPageSize: config.maxListRunsPageSize,
    maxHistoryPageSize: config.maxHistoryPageSize,
    maxHistoryPageBytes: config.maxHistoryPageBytes,
    feed,
    metrics,
  };
  const workflowService = createWorkflowService(runsDeps);
  const scheduleService = createScheduleService(runsDeps);
  // Before any worker fires: a declaration that does not check stops start-up here, naming the file and schedule.
  await upsertDeclaredSchedules(runsDeps, logger);
  // Any server works through stored batches; one that dies mid-batch leaves the rest to the next claimer.
  const batches = new BatchRunner({
    database,
    owner: scheduler.owner,
    logger,
    leaseMs: config.leaseMs,
    pollMs: Math.max(config.pollIntervalMs, 1000),
    chunkSize: config.batchChunkSize,
    operationFor: batchOperationFor(runsDeps),
    commits: store.commits,
    waitersOf: (runId) => feed.waiters(runId),
    onChunk: (batch, outcomes) => {
      for (const [outcome, n] of Object.entries(outcomes)) if (n > 0) metrics.batchRuns.inc({ operation: batch.operation, outcome }, n);
    },
  });
  const agentService = createAgentService({
    db: database.db,
    turnBoard,
    leaseMs: config.agentLeaseMs,
    maxResultBytes: config.maxAgentResultBytes,
  });
  // Called by the Connect adapter and by the unary fast lane: both serve these very implementations.
  const routes = (router: ConnectRouter) => {
    router.service(WorkflowService, workflowService);
    router.service(AgentService, agentService);
    router.service(KeyService, createKeyService(database, (keyId) => keys?.evict(keyId)));
    router.service(ScheduleService, scheduleService);
    router.service(Health, health.impl);
    reflection.register(router);
    // Decoding errors that connect-es reports as INTERNAL are the client's: INVALID_ARGUMENT (see protocol-errors.ts).
    router.handlers.splice(0, router.handlers.length, ...router.handlers.map((handler) => reclassifyProtocolErrors(handler)));
  };
  const { auth } = config;
  const keys = auth.mode === "keys" ? new KeyCache(database.db, { ttlMs: auth.keyCacheTtlMs, logger }) : undefined;
  const rateLimiter = config.rateLimit && auth.mode === "keys" ? new RateLimiter(config.rateLimit.rps, config.rateLimit.burst) : undefined;
  const failedAuthLimiter = auth.failureLimit && auth.mode === "keys" ? new RateLimiter(auth.failureLimit.rps, auth.failureLimit.burst) : undefined;
  // Outermost first: errors of everything inside are mapped (a store failure while loading a key becomes UNAVAILABLE);
  // a call already past its deadline stops; the caller is authenticated; requests are validated against the proto
  // rules last, right before the service.
  const interceptors = [
    ...(tracing ? [tracingInterceptor(tracing)] : []),
    metricsInterceptor(metrics),
    errorMappingInterceptor(logger),
    deadlineInterceptor(),
    authInterceptor({ mode: auth.mode, keys, openHealth: auth.openHealth, openReflection: auth.openReflection, rateLimiter, failedAuthLimiter, logger }),
    // Needs the caller auth resolved; before validation, so a refused stream costs no decoding work beyond auth's.
    callerCapsInterceptor(new CallerSlots(config.maxStreamsPerCaller)),
    validationInterceptor(createRequestValidator([WorkflowService, AgentService, ScheduleService])),
  ];
  return { database, registry, scheduler, workflowThreads, batches, feed, routes, interceptors, health, keys, failedAuthLimiter, workflowService, scheduleService, shutdown, metrics, tracing };
}

export async function startServer(config: Config, logger: Logger): Promise<CairnServer> {
  // A busy port fails at once, before the store is opened (which can take seconds the first time).
  await assertPortFree(config.host, config.port);
  const { database, registry, scheduler, workflowThreads, batches, feed, routes, interceptors, health, keys, failedAuthLimiter, workflowService, scheduleService, shutdown, metrics, tracing } =
    await createServices(config, logger);
  const { auth } = config;
  // Bodies over the cap are refused unread; it covers the largest payload limit (see config.ts).
  const readMaxBytes = config.maxRequestBytes;
  // A deadline beyond setTimeout's ceiling (2^31 - 1 ms, 24.8 days) would fire after 1 ms: such a call is refused
  // with INVALID_ARGUMENT naming the ceiling, on every protocol, instead of ending at once with DEADLINE_EXCEEDED.
  const maxTimeoutMs = 2 ** 31 - 1;
  // Connect ignores unknown JSON fields by default, so a misspelt filter (`{"metdata": ...}`) silently widened a
  // ListRuns to every run: here an unknown field is INVALID_ARGUMENT naming it ('key "metdata" is unknown'), as
  // the REST routes already answer. Binary requests keep protobuf's rule (unknown fields skipped).
  const jsonOptions = { ignoreUnknownFields: false };
  const connectOptions = { routes, interceptors, readMaxBytes, acceptCompression, maxTimeoutMs, jsonOptions, shutdownSignal: shutdown.signal, contextValues: requestContextValues };
  // The adapter throws out of the request listener on a request without a usable Host: refused before it instead.
  const connectHandler = withValidAuthority(connectNodeAdapter(connectOptions));
  // Plain unary Connect calls skip the adapter's generic machinery, with the same options (see unary-lane.ts).
  // WatchRun streams over HTTP/2 skip the adapter's per-stream pipeline, which thousands of open streams pay for in memory.
  const streamLane = config.streamLane ? withStreamLane(connectHandler, connectOptions) : undefined;
  const lane = config.unaryLane ? withUnaryLane(streamLane ?? connectHandler, connectOptions) : undefined;
  // REST routes call the same service through the same interceptors; CORS wraps everything, so
  // preflights for every route are answered before routing.
  // The console's pages and assets (GET only) come first: they are files, not calls.
  // In keys mode /metrics wants an admin key: it counts every namespace's runs (see metrics-endpoint.ts).
  const checkAdmin: AdminCheck | undefined = keys
    ? async (presented) => {
        if (!presented) return "unauthenticated";
        const verified = await keys.verify(presented);
        if (!verified.ok) return "unauthenticated";
        return verified.key.role === "admin" ? "ok" : "permission_denied";
      }
    : undefined;
  const restOptions = { interceptors, readMaxBytes, shutdownSignal: shutdown.signal, onError: (error: unknown) => logger.error({ err: error }, "REST route failed") };
  const apiRoutes = withScheduleRestRoutes(withRestRoutes(lane ?? streamLane ?? connectHandler, workflowService, restOptions), scheduleService, restOptions);
  // In keys mode the key is checked from the headers before any of those reads a body (see key-gate.ts).
  const withoutKey = servicesWithoutKey(auth);
  const served = [WorkflowService, AgentService, KeyService, ScheduleService, Health, ServerReflectionV1, ServerReflectionV1alpha];
  const services = served.map((s) => s.typeName);
  const procedurePaths = new Set(served.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)));
  const gated = keys
    ? withKeyGate(apiRoutes, {
        keys,
        failedAuthLimiter,
        services: services.filter((name) => !withoutKey.has(name)),
        restPaths: [...restRunPaths, schedulesPath],
        logger,
        // Counted under the procedure, as the interceptor's refusals were (REST paths name no procedure: not counted).
        onRefused: (path, error) => {
          if (procedurePaths.has(path)) metrics.rpcCalls.inc({ method: path.slice(1), code: codeLabel(error) });
        },
      })
    : apiRoutes;
  const withRest = withMetrics(withConsole(gated), metrics, checkAdmin);
  const withCorsRules = config.corsOrigins.length > 0 ? withCors(withRest, { origins: config.corsOrigins }) : withCorsHint(withRest, logger);
  const handler =
    auth.mode === "open" ? withOpenModeGuard(withCorsRules, { checkHost: isLoopback(config.host), corsOrigins: config.corsOrigins }) : withCorsRules;

  if (keys) {
    await keys.start(database);
    let active = await countActiveApiKeys(database.db);
    if (active === 0 && database.kind === "pglite") {
      await writeBootstrapKey(database, config.dataDir, logger);
      active = 1;
    }
    if (active === 0) {
      logger.warn(
        "API keys are required (CAIRN_AUTH=keys) but none exists yet, so every request will be refused; create one with " +
          "`cairn keys create --namespace default --role admin` against this database",
      );
    }
    logger.info({ activeKeys: active, keyCacheTtlMs: auth.keyCacheTtlMs, rateLimit: config.rateLimit ?? "off" }, "API keys required");
  } else {
    logger.warn(
      { host: config.host, reason: auth.explicit ? "CAIRN_AUTH=open" : "embedded store on a loopback address (set CAIRN_AUTH=keys to require keys)" },
      "OPEN MODE: no API key is checked; every request acts as admin in namespace \"default\"",
    );
  }

  await workflowThreads?.start();
  await scheduler.start();
  await batches.start();
  await feed.start(database).catch((error: unknown) => logger.warn({ err: error }, "run change feed not listening; watchers fall back to polling"));
  const listening = await listen(handler, {
    host: config.host,
    port: config.port,
    ...(config.tls ? { tls: { cert: config.tls.cert, key: config.tls.key } } : {}),
    limits: config.connectionLimits,
    onError: (error) => logger.warn({ err: error }, "http server error"),
    onClientReset: () => metrics.http2ClientResets.inc(),
  });
  const metricsServer = config.metricsPort === undefined ? undefined : await listenForMetrics(metrics, config.host, config.metricsPort);
  const url = `${config.tls ? "https" : "http"}://${listening.host.includes(":") ? `[${listening.host}]` : listening.host}:${listening.port}`;
  logger.info(
    { url, workflows: registry.list().map((w) => w.name), owner: scheduler.owner, auth: auth.mode, tls: config.tls ? config.tls.certFile : false, traces: config.tracing?.url ?? false },
    "cairn server listening",
  );

  let closing: Promise<void> | undefined;
  return {
    port: listening.port,
    url,
    database,
    registry,
    scheduler,
    feed,
    metrics,
    unaryLaneCalls: () => lane?.served() ?? 0,
    streamLaneCalls: () => streamLane?.served() ?? 0,
    metricsUrl: metricsServer ? `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${(metricsServer.address() as { port: number }).port}/metrics` : undefined,
    close() {
      closing ??= (async () => {
        for (const service of [WorkflowService.typeName, AgentService.typeName, ScheduleService.typeName, ""]) health.setStatus(service, ServingStatus.NOT_SERVING);
        health.shutdown();
        shutdown.abort();
        await listening.close();
        await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
        await batches.stop();
        await scheduler.stop(config.shutdownGraceMs);
        await workflowThreads?.close();
        feed.stop();
        await keys?.stop();
        await database.close();
        // Spans still buffered are sent before the process goes.
        await tracing?.shutdown().catch((error: unknown) => logger.warn({ err: error }, "could not flush traces"));
        logger.info("cairn server stopped");
      })();
      return closing;
    },
  };
}

/** `CAIRN_METRICS_PORT`: /metrics alone, plain HTTP, no key (bind it where only the scraper reaches). */
async function listenForMetrics(metrics: Metrics, host: string, port: number): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    if ((req.url ?? "").split("?")[0] === "/metrics" && (req.method === "GET" || req.method === "HEAD")) return void serveMetrics(req, res, metrics);
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("only /metrics is served on CAIRN_METRICS_PORT\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** The package version, announced in the `processes` table; "" when package.json is not where the sources or the build expect it. */
function serverVersion(): string {
  for (const path of ["../package.json", "../../package.json"]) {
    try {
      const parsed = JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (parsed.name === "@cairnjs/server" && parsed.version) return parsed.version;
    } catch {
      // Not there: try the next place.
    }
  }
  return "";
}
