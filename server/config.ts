/**
 * Configuration from the environment (DESIGN §6). Parsed once at start-up;
 * a bad value stops the server with a message naming the variable.
 */
import { delimiter, resolve } from "node:path";
import { parseDuration } from "./engine/duration.js";

export interface Config {
  port: number;
  host: string;
  /** Absent: the embedded PGlite store in dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  databasePoolSize: number;
  workflowDirs: string[];
  logLevel: string;
  /** Largest accepted run input, as JSON bytes. */
  maxInputBytes: number;
  /** How long a claimed run stays ours without a heartbeat. */
  leaseMs: number;
  /** How often idle schedulers look for queued runs and lapsed leases. */
  pollIntervalMs: number;
  /** Activations one process executes at once. */
  maxConcurrentRuns: number;
  /** Largest accepted event payload, as JSON bytes. */
  maxEventBytes: number;
  /** How long sent events are kept for waits that start later. */
  eventRetentionMs: number;
  /** How long an agent worker holds a turn without a heartbeat before it is delivered again. */
  agentLeaseMs: number;
  /** On SIGTERM, how long running activations may finish before their runs are handed back. */
  shutdownGraceMs: number;
  /** Origins browsers may call from (CORS): exact origins, or "*" for any. Empty: CORS off. */
  corsOrigins: string[];
}

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function loadConfig(env: Env = process.env): Config {
  return {
    port: integer(env, "PORT", 8080, 0, 65535),
    host: env.HOST || "127.0.0.1",
    databaseUrl: env.DATABASE_URL || undefined,
    dataDir: resolve(env.CAIRN_DATA_DIR || "./.cairn"),
    databasePoolSize: integer(env, "DATABASE_POOL_SIZE", 10, 1, 1000),
    workflowDirs: (env.WORKFLOW_DIRS || "./workflows")
      .split(delimiter)
      .filter((dir) => dir.length > 0)
      .map((dir) => resolve(dir)),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["trace", "debug", "info", "warn", "error", "fatal", "silent"]),
    maxInputBytes: integer(env, "CAIRN_MAX_INPUT_BYTES", 1024 * 1024, 1, 512 * 1024 * 1024),
    leaseMs: integer(env, "CAIRN_LEASE_MS", 15_000, 500, 3_600_000),
    pollIntervalMs: integer(env, "CAIRN_POLL_INTERVAL_MS", 1000, 10, 60_000),
    maxConcurrentRuns: integer(env, "CAIRN_MAX_CONCURRENT_RUNS", 100, 1, 100_000),
    maxEventBytes: integer(env, "CAIRN_MAX_EVENT_BYTES", 256 * 1024, 1, 512 * 1024 * 1024),
    eventRetentionMs: duration(env, "CAIRN_EVENT_RETENTION", "7d"),
    agentLeaseMs: integer(env, "CAIRN_AGENT_LEASE_MS", 30_000, 100, 3_600_000),
    shutdownGraceMs: integer(env, "CAIRN_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    corsOrigins: origins(env, "CAIRN_CORS_ORIGINS"),
  };
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

function oneOf(env: Env, name: string, fallback: string, allowed: readonly string[]): string {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!allowed.includes(raw)) throw new ConfigError(`${name}=${JSON.stringify(raw)} must be one of ${allowed.join(", ")}`);
  return raw;
}
