/**
 * Configuration from the environment (DESIGN §6). Parsed once at start-up;
 * a bad value stops the server with a message naming the variable.
 */
import { defaultWorkflowThreads } from "./worker/threads/workflow-threads.js";
import { type TracingConfig, tracingConfigFromEnv } from "./tracing.js";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { delimiter, resolve } from "node:path";
import { createSecureContext } from "node:tls";
import { parseDuration } from "./core/duration.js";
import type { ConnectionLimits } from "./http/connection-limits.js";

export type AuthMode = "keys" | "open";

export interface AuthConfig {
  /**
   * "keys": every request needs an API key (X-Api-Key or Authorization: Bearer).
   * "open": no key is asked for or checked; every request acts as admin in namespace "default".
   */
  mode: AuthMode;
  /** CAIRN_AUTH was set (otherwise the mode was derived from the store and HOST). */
  explicit: boolean;
  /** grpc.health.v1.Health answers without a key. */
  openHealth: boolean;
  /** gRPC server reflection answers without a key. */
  openReflection: boolean;
  /** How long a verified key is trusted from memory when no change notice arrives. */
  keyCacheTtlMs: number;
  /**
   * Failed authentications allowed per peer address (token bucket: CAIRN_AUTH_FAILURE_RPS, CAIRN_AUTH_FAILURE_BURST);
   * past it, that peer's requests are refused before any key lookup, except with a key verified from memory.
   * Undefined (RPS 0): no limit.
   */
  failureLimit: { rps: number; burst: number } | undefined;
}

export interface RateLimitConfig {
  /** Requests per second per API key, in each process. */
  rps: number;
  /** Requests a key may make at once after being idle. */
  burst: number;
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/** `forever` keeps ended runs; a namespace without an override uses `defaultMs`. */
export interface RunRetention {
  defaultMs: number | "forever";
  byNamespace: Record<string, number | "forever">;
}

export interface Config {
  port: number;
  host: string;
  /** Absent: the embedded PGlite store in dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  databasePoolSize: number;
  /** CAIRN_DB_LEASE_POOL_SIZE: clients of the heartbeat's own pool (lease renewals, lapsed-lease sweeps). */
  leasePoolSize: number;
  /** CAIRN_DB_ACQUIRE_TIMEOUT: how long a query waits for a pool client before failing (0: forever). */
  dbAcquireTimeoutMs: number;
  /** CAIRN_DB_STATEMENT_TIMEOUT: `statement_timeout` of pooled connections (0: none). */
  dbStatementTimeoutMs: number;
  /** CAIRN_DB_LISTENER_CHECK: how often the LISTEN connection checks it still hears (a self-NOTIFY; 0: never). */
  dbListenerCheckMs: number;
  /** CAIRN_WATCH_RECHECK: the run feed's safety net: how often one batched read rechecks every run waited on here (covers lost notices). */
  watchRecheckMs: number;
  workflowDirs: string[];
  logLevel: string;
  /** Largest run input (CreateRun, REST, child runs) and agent request, as JSON bytes. */
  maxInputBytes: number;
  /** How long a claimed run stays ours without a heartbeat. */
  leaseMs: number;
  /** CAIRN_MAX_STREAMS_PER_CALLER: open streams and long polls one API key (open mode: one peer address) may hold. */
  maxStreamsPerCaller: number;
  /** CAIRN_MAX_ABNORMAL_ACTIVATIONS: the poison-run breaker pauses a run whose lease lapsed this many activations in a row. */
  maxAbnormalActivations: number;
  /** CAIRN_WORKFLOW_THREADS: worker threads that run workflow code (0: on the main thread, uncontained). */
  workflowThreads: number;
  /** CAIRN_BLOCKED_CODE_MS: workflow code that keeps its thread busy longer than this is stopped. */
  blockedCodeMs: number;
  /** CAIRN_WORKFLOW_HEAP_MB: each workflow thread's heap limit; a run that blows it is stopped. */
  workflowHeapMb: number;
  /** How often idle schedulers look for queued runs and lapsed leases. */
  pollIntervalMs: number;
  /** Activations one process executes at once. */
  maxConcurrentRuns: number;
  /** CAIRN_NAMESPACE_MAX_RUNNING: runs of one namespace executing at once across all processes (absent: no quota). */
  namespaceMaxRunning?: number | undefined;
  /** Largest accepted event payload, as JSON bytes. */
  maxEventBytes: number;
  /** Largest agent result (CompleteTurn), as JSON bytes. */
  maxAgentResultBytes: number;
  /** Largest step result or run output a workflow may journal, as JSON bytes. */
  maxStepResultBytes: number;
  /** CAIRN_MAX_JOURNAL_BYTES: a run whose journal's results and errors would pass it fails (JournalTooLargeError). */
  maxJournalBytes: number;
  /** Largest request body; derived from the payload limits unless set, and never below the largest of them. */
  maxRequestBytes: number;
  /** Cap on ListRuns page_size. */
  maxListRunsPageSize: number;
  /** Cap on GetRunHistory page_size. */
  maxHistoryPageSize: number;
  /** CAIRN_MAX_HISTORY_PAGE_BYTES: a GetRunHistory page stops early (has_more) once its entries' JSON reaches it. */
  maxHistoryPageBytes: number;
  /** Runs a batch applies its operation to per transaction (CAIRN_BATCH_CHUNK_SIZE). */
  batchChunkSize: number;
  /** How long sent events are kept for waits that start later. */
  eventRetentionMs: number;
  /** How long ended runs (and their journals and waits) are kept; per-namespace overrides. */
  runRetention: RunRetention;
  /** Deadlines and caps on the API port's connections. */
  connectionLimits: ConnectionLimits;
  /** How often each housekeeping sweep (event and run retention) runs. */
  sweepIntervalMs: number;
  /** How long an agent worker holds a turn without a heartbeat before it is delivered again. */
  agentLeaseMs: number;
  /** On SIGTERM, how long running activations may finish before their runs are handed back. */
  shutdownGraceMs: number;
  /** Origins browsers may call from (CORS): exact origins, or "*" for any. Empty: CORS off. */
  corsOrigins: string[];
  auth: AuthConfig;
  /** Per-key rate limit; undefined: off. */
  rateLimit: RateLimitConfig | undefined;
  /** Serve TLS on the port (HTTP/2 by ALPN, HTTP/1.1 otherwise); undefined: plaintext. */
  tls: TlsConfig | undefined;
  /** Plain unary Connect calls take the fast lane (server/http/unary-lane.ts); off: all go through the Connect adapter. */
  unaryLane: boolean;
  /** WatchRun streams (Connect over HTTP/2 or HTTP/1.1, gRPC over HTTP/2) take the stream lane (server/http/stream-lane.ts); off: all go through the Connect adapter. */
  streamLane: boolean;
  /** `CAIRN_METRICS_PORT`: also serve `/metrics`, without a key, on this port of `host` (absent: main port only). */
  metricsPort: number | undefined;
  /** OpenTelemetry traces from the standard OTEL_* variables; undefined: off. */
  tracing: TracingConfig | undefined;
}

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Room for protocol framing and the other fields of a request around its largest JSON payload. */
export const requestEnvelopeBytes = 64 * 1024;

export function loadConfig(env: Env = process.env): Config {
  const host = env.HOST || "127.0.0.1";
  const databaseUrl = env.DATABASE_URL || undefined;
  const maxInputBytes = integer(env, "CAIRN_MAX_INPUT_BYTES", 1024 * 1024, 1, 512 * 1024 * 1024);
  const maxEventBytes = integer(env, "CAIRN_MAX_EVENT_BYTES", 256 * 1024, 1, 512 * 1024 * 1024);
  const maxAgentResultBytes = integer(env, "CAIRN_MAX_AGENT_RESULT_BYTES", 1024 * 1024, 1, 512 * 1024 * 1024);
  return {
    port: integer(env, "PORT", 8080, 0, 65535),
    host,
    databaseUrl,
    dataDir: resolve(env.CAIRN_DATA_DIR || "./.cairn"),
    databasePoolSize: integer(env, "DATABASE_POOL_SIZE", 10, 1, 1000),
    leasePoolSize: integer(env, "CAIRN_DB_LEASE_POOL_SIZE", 2, 1, 100),
    dbAcquireTimeoutMs: duration(env, "CAIRN_DB_ACQUIRE_TIMEOUT", "10s"),
    dbStatementTimeoutMs: duration(env, "CAIRN_DB_STATEMENT_TIMEOUT", "60s"),
    dbListenerCheckMs: duration(env, "CAIRN_DB_LISTENER_CHECK", "10s"),
    watchRecheckMs: duration(env, "CAIRN_WATCH_RECHECK", "5s"),
    workflowDirs: (env.WORKFLOW_DIRS || "./workflows")
      .split(delimiter)
      .filter((dir) => dir.length > 0)
      .map((dir) => resolve(dir)),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["trace", "debug", "info", "warn", "error", "fatal", "silent"]),
    maxInputBytes,
    leaseMs: integer(env, "CAIRN_LEASE_MS", 15_000, 500, 3_600_000),
    maxAbnormalActivations: integer(env, "CAIRN_MAX_ABNORMAL_ACTIVATIONS", 5, 1, 1_000_000),
    workflowThreads: integer(env, "CAIRN_WORKFLOW_THREADS", defaultWorkflowThreads(), 0, 64),
    blockedCodeMs: integer(env, "CAIRN_BLOCKED_CODE_MS", 5000, 100, 3_600_000),
    workflowHeapMb: integer(env, "CAIRN_WORKFLOW_HEAP_MB", 512, 16, 65_536),
    pollIntervalMs: integer(env, "CAIRN_POLL_INTERVAL_MS", 1000, 10, 60_000),
    maxConcurrentRuns: integer(env, "CAIRN_MAX_CONCURRENT_RUNS", 100, 1, 100_000),
    namespaceMaxRunning: env.CAIRN_NAMESPACE_MAX_RUNNING ? integer(env, "CAIRN_NAMESPACE_MAX_RUNNING", 0, 1, 1_000_000) : undefined,
    maxEventBytes,
    maxAgentResultBytes,
    maxStepResultBytes: integer(env, "CAIRN_MAX_STEP_RESULT_BYTES", 1024 * 1024, 1, 512 * 1024 * 1024),
    maxJournalBytes: integer(env, "CAIRN_MAX_JOURNAL_BYTES", 100 * 1024 * 1024, 1, 16 * 1024 * 1024 * 1024),
    maxRequestBytes: requestBytes(env, { CAIRN_MAX_INPUT_BYTES: maxInputBytes, CAIRN_MAX_EVENT_BYTES: maxEventBytes, CAIRN_MAX_AGENT_RESULT_BYTES: maxAgentResultBytes }),
    maxListRunsPageSize: integer(env, "CAIRN_MAX_LIST_RUNS_PAGE_SIZE", 1000, 1, 100_000),
    maxHistoryPageSize: integer(env, "CAIRN_MAX_HISTORY_PAGE_SIZE", 10_000, 1, 100_000),
    maxHistoryPageBytes: integer(env, "CAIRN_MAX_HISTORY_PAGE_BYTES", 4 * 1024 * 1024, 1, 1024 * 1024 * 1024),
    batchChunkSize: integer(env, "CAIRN_BATCH_CHUNK_SIZE", 200, 1, 10_000),
    eventRetentionMs: duration(env, "CAIRN_EVENT_RETENTION", "7d"),
    runRetention: runRetention(env),
    sweepIntervalMs: integer(env, "CAIRN_SWEEP_INTERVAL_MS", 60_000, 100, 86_400_000),
    connectionLimits: {
      headersTimeoutMs: integer(env, "CAIRN_HEADERS_TIMEOUT_MS", 10_000, 100, 600_000),
      requestTimeoutMs: integer(env, "CAIRN_REQUEST_TIMEOUT_MS", 30_000, 100, 3_600_000),
      idleTimeoutMs: integer(env, "CAIRN_IDLE_TIMEOUT_MS", 60_000, 100, 3_600_000),
      maxConnections: integer(env, "CAIRN_MAX_CONNECTIONS", 10_000, 1, 1_000_000),
      maxConcurrentStreams: integer(env, "CAIRN_MAX_STREAMS_PER_CONNECTION", 1000, 1, 1_000_000),
    },
    maxStreamsPerCaller: integer(env, "CAIRN_MAX_STREAMS_PER_CALLER", 100, 1, 1_000_000),
    agentLeaseMs: integer(env, "CAIRN_AGENT_LEASE_MS", 30_000, 100, 3_600_000),
    shutdownGraceMs: integer(env, "CAIRN_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    corsOrigins: origins(env, "CAIRN_CORS_ORIGINS"),
    auth: authConfig(env, host, databaseUrl),
    rateLimit: rateLimitConfig(env),
    tls: tlsConfig(env),
    unaryLane: boolean(env, "CAIRN_UNARY_LANE", true),
    streamLane: boolean(env, "CAIRN_STREAM_LANE", true),
    tracing: tracingConfigFromEnv(env),
    metricsPort: env.CAIRN_METRICS_PORT ? integer(env, "CAIRN_METRICS_PORT", 0, 0, 65535) : undefined,
  };
}

/** 127.0.0.0/8, ::1 (and its IPv4-mapped form), "localhost". Anything else may be reachable from elsewhere. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  if (isIP(bare) === 6) return bare === "::1" || /^::ffff:127\./.test(bare) || /^(0{1,4}:){7}0{0,3}1$/.test(bare);
  return false;
}

/**
 * CAIRN_AUTH defaults to "open" only for the embedded store (no DATABASE_URL) on a loopback HOST:
 * `npm start` on a laptop. A server on PostgreSQL may sit behind a proxy or share its database with
 * other replicas, so it asks for keys unless told otherwise. Open on a non-loopback HOST needs
 * CAIRN_ALLOW_OPEN=true as well.
 */
function authConfig(env: Env, host: string, databaseUrl: string | undefined): AuthConfig {
  const explicit = env.CAIRN_AUTH !== undefined && env.CAIRN_AUTH !== "";
  const mode = explicit
    ? (oneOf(env, "CAIRN_AUTH", "keys", ["keys", "open"]) as AuthMode)
    : databaseUrl === undefined && isLoopback(host)
      ? "open"
      : "keys";
  if (mode === "open" && !isLoopback(host) && !boolean(env, "CAIRN_ALLOW_OPEN", false)) {
    throw new ConfigError(
      `${explicit ? "CAIRN_AUTH=open" : "open mode"} with HOST=${JSON.stringify(host)} would let anyone who can reach this address act as admin; ` +
        `use CAIRN_AUTH=keys (create keys with \`cairn keys create\`), bind to 127.0.0.1, or set CAIRN_ALLOW_OPEN=true if that is really meant`,
    );
  }
  return {
    mode,
    explicit,
    openHealth: boolean(env, "CAIRN_OPEN_HEALTH", true),
    openReflection: boolean(env, "CAIRN_OPEN_REFLECTION", true),
    keyCacheTtlMs: duration(env, "CAIRN_KEY_CACHE_TTL", "30s"),
    failureLimit: authFailureLimit(env),
  };
}

function authFailureLimit(env: Env): { rps: number; burst: number } | undefined {
  const rps = number(env, "CAIRN_AUTH_FAILURE_RPS", 2, 0, 1_000_000);
  if (rps === 0) return undefined;
  return { rps, burst: integer(env, "CAIRN_AUTH_FAILURE_BURST", 20, 1, 10_000_000) };
}

function rateLimitConfig(env: Env): RateLimitConfig | undefined {
  const rps = number(env, "CAIRN_RATE_LIMIT_RPS", 0, 0, 1_000_000);
  if (rps === 0) {
    if (env.CAIRN_RATE_LIMIT_BURST) throw new ConfigError("CAIRN_RATE_LIMIT_BURST is set but CAIRN_RATE_LIMIT_RPS is not; set both, or neither");
    return undefined;
  }
  return { rps, burst: integer(env, "CAIRN_RATE_LIMIT_BURST", Math.max(1, Math.ceil(rps)), 1, 10_000_000) };
}

function tlsConfig(env: Env): TlsConfig | undefined {
  const certFile = env.CAIRN_TLS_CERT || undefined;
  const keyFile = env.CAIRN_TLS_KEY || undefined;
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) {
    throw new ConfigError(`${certFile ? "CAIRN_TLS_KEY" : "CAIRN_TLS_CERT"} is missing: TLS needs both CAIRN_TLS_CERT (PEM certificate chain) and CAIRN_TLS_KEY (PEM private key)`);
  }
  const read = (name: string, file: string): Buffer => {
    try {
      return readFileSync(resolve(file));
    } catch (error) {
      throw new ConfigError(`${name}=${JSON.stringify(file)}: cannot read the file: ${(error as Error).message}`);
    }
  };
  const tls = { certFile: resolve(certFile), keyFile: resolve(keyFile), cert: read("CAIRN_TLS_CERT", certFile), key: read("CAIRN_TLS_KEY", keyFile) };
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (error) {
    throw new ConfigError(`CAIRN_TLS_CERT / CAIRN_TLS_KEY: not a usable PEM certificate and matching private key: ${(error as Error).message}`);
  }
  return tls;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = raw.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(value)) return true;
  if (["false", "0", "no", "off"].includes(value)) return false;
  throw new ConfigError(`${name}=${JSON.stringify(raw)} must be true or false`);
}

function number(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is not a number between ${min} and ${max}`);
  }
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is not an integer between ${min} and ${max}`);
  }
  return value;
}

/**
 * The request body cap. A payload limit above it could never take effect, so by default it is twice the largest
 * payload limit (protobuf binary can spell JSON longer than JSON does) plus the envelope allowance, and an explicit
 * value must leave room for the largest payload.
 */
function requestBytes(env: Env, payloadLimits: Record<string, number>): number {
  const [largestName, largest] = Object.entries(payloadLimits).reduce((a, b) => (b[1] > a[1] ? b : a));
  const floor = largest + requestEnvelopeBytes;
  const value = integer(env, "CAIRN_MAX_REQUEST_BYTES", largest * 2 + requestEnvelopeBytes, 1, 2 ** 32 - 1);
  if (value < floor) {
    throw new ConfigError(
      `CAIRN_MAX_REQUEST_BYTES=${value} is below ${largestName}=${largest} plus ${requestEnvelopeBytes} bytes of request envelope; raise it to at least ${floor}, or leave it unset to derive it`,
    );
  }
  return value;
}

/** A comma-separated list of origins (`https://app.example.com`, `http://localhost:5173`) or `*`. */
function origins(env: Env, name: string): string[] {
  const entries = (env[name] ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  return entries.map((entry) => {
    if (entry === "*") return entry;
    let url: URL | undefined;
    try {
      url = new URL(entry);
    } catch {
      url = undefined;
    }
    const bare = url && url.pathname === "/" && !url.search && !url.hash && !url.username && !url.password;
    if (!url || !bare || url.origin === "null") {
      throw new ConfigError(
        `${name}: ${JSON.stringify(entry)} is not an origin; use scheme://host[:port] without a path (e.g. https://app.example.com), or * for any origin`,
      );
    }
    return url.origin;
  });
}

function duration(env: Env, name: string, fallback: string): number {
  const raw = env[name] || fallback;
  try {
    return parseDuration(raw);
  } catch (error) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: ${(error as Error).message}`);
  }
}

/**
 * CAIRN_RUN_RETENTION (default 30d, or `forever`) and CAIRN_RUN_RETENTION_BY_NAMESPACE, a comma-separated list of
 * `namespace=duration` (e.g. `audit=forever,scratch=1d`).
 */
function runRetention(env: Env): RunRetention {
  const parse = (name: string, raw: string): number | "forever" => {
    if (raw === "forever") return "forever";
    try {
      const ms = parseDuration(raw);
      if (ms <= 0) throw new Error("must be longer than zero (use `forever` to keep ended runs)");
      return ms;
    } catch (error) {
      throw new ConfigError(`${name}=${JSON.stringify(raw)}: ${(error as Error).message}`);
    }
  };
  const byNamespace: Record<string, number | "forever"> = {};
  const name = "CAIRN_RUN_RETENTION_BY_NAMESPACE";
  for (const pair of (env[name] || "").split(",").map((part) => part.trim()).filter(Boolean)) {
    const [namespace, value, ...rest] = pair.split("=");
    if (!namespace || value === undefined || rest.length > 0) {
      throw new ConfigError(`${name}: ${JSON.stringify(pair)} is not namespace=duration (e.g. audit=forever,scratch=1d)`);
    }
    byNamespace[namespace.trim()] = parse(`${name} (${namespace.trim()})`, value.trim());
  }
  return { defaultMs: parse("CAIRN_RUN_RETENTION", env.CAIRN_RUN_RETENTION || "30d"), byNamespace };
}

function oneOf(env: Env, name: string, fallback: string, allowed: readonly string[]): string {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!allowed.includes(raw)) throw new ConfigError(`${name}=${JSON.stringify(raw)} must be one of ${allowed.join(", ")}`);
  return raw;
}
