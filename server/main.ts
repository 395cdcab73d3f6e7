/** `npm start`: run a Cairn server configured from the environment until SIGTERM/SIGINT. */
import { startServer } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { PortInUseError } from "./http/port-check.js";
import { logFormat } from "./log-pretty.js";
import { createLogger } from "./logger.js";
import { DataDirInUseError } from "./runs/runtime.js";
import { WorkflowLoadError } from "./workflows/loader.js";

async function main(): Promise<void> {
  let config;
  let format;
  try {
    config = loadConfig();
    format = logFormat(process.env.LOG_FORMAT, Boolean(process.stdout.isTTY));
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("LOG_FORMAT")) {
      console.error(`cairn: configuration error: ${error.message}`);
      process.exit(2);
    }
    if (error instanceof ConfigError) {
      console.error(`cairn: configuration error: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel, format);
  let server;
  try {
    server = await startServer(config, logger);
  } catch (error) {
    // Causes with a known fix get their message alone (it names the fix); anything else, the stack.
    if (error instanceof WorkflowLoadError || error instanceof PortInUseError || error instanceof DataDirInUseError) {
      logger.fatal(`cairn server failed to start: ${error.message}`);
    } else {
      logger.fatal({ err: error }, "cairn server failed to start");
    }
    process.exit(1);
  }
  const stop = (signal: string) => {
    logger.info({ signal }, "shutting down");
    // A second signal skips the grace period.
    process.once(signal, () => process.exit(130));
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

await main();
