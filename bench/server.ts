/** Starts a Cairn server in this process on a free port, serving bench/workflows. */
import { fileURLToPath } from "node:url";
import { startServer, type CairnServer } from "../server/app.js";
import { type Config, loadConfig } from "../server/config.js";
import { createLogger } from "../server/logger.js";

const workflowDir = fileURLToPath(new URL("./workflows", import.meta.url));

export interface BenchServer {
  server: CairnServer;
  config: Config;
}

export async function startBenchServer(databaseUrl: string, concurrency: number): Promise<BenchServer> {
  // Other Cairn variables (DATABASE_POOL_SIZE, CAIRN_LEASE_MS, ...) pass through from the environment.
  const config = loadConfig({
    ...process.env,
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_URL: databaseUrl,
    WORKFLOW_DIRS: workflowDir,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL || "warn",
    CAIRN_MAX_CONCURRENT_RUNS: String(Math.max(concurrency, Number(process.env.CAIRN_MAX_CONCURRENT_RUNS) || 0)),
  });
  const server = await startServer(config, createLogger(config.logLevel));
  return { server, config };
}
