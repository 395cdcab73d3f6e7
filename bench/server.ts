/** Starts a Cairn server in this process on a free port, serving bench/workflows. */
import { fileURLToPath } from "node:url";
import { startServer, type CairnServer } from "../server/app.js";
import { type Config, loadConfig } from "../server/config.js";
import { createLogger } from "../server/logger.js";

const workflowDir = fileURLToPath(new URL("./workflows", import.meta.url));

/** The server default (10) starves 64 runs in flight plus their pollers; the bench uses 20 unless DATABASE_POOL_SIZE says otherwise. */
const benchPoolSize = "20";

export interface BenchServer {
  server: CairnServer;
  config: Config;
}

export async function startBenchServer(databaseUrl: string, concurrency: number): Promise<BenchServer> {
  const config = benchConfig(databaseUrl, concurrency);
  const server = await startServer(config, createLogger(config.logLevel));
  return { server, config };
}

/** The configuration bench servers run with. */
export function benchConfig(databaseUrl: string, concurrency: number): Config {
  // Other Cairn variables (DATABASE_POOL_SIZE, CAIRN_LEASE_MS, ...) pass through from the environment.
  return loadConfig({
    ...process.env,
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: databaseUrl,
    // The bench's clients carry no key; CAIRN_AUTH=keys measures nothing they could pass.
    CAIRN_AUTH: "open",
    WORKFLOW_DIRS: workflowDir,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL || "warn",
    DATABASE_POOL_SIZE: process.env.DATABASE_POOL_SIZE || benchPoolSize,
    CAIRN_MAX_CONCURRENT_RUNS: String(Math.max(concurrency, Number(process.env.CAIRN_MAX_CONCURRENT_RUNS) || 0)),
  });
}
