/** `npm start`: run a Cairn server configured from the environment until SIGTERM/SIGINT. */
import { startServer } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`cairn: configuration error: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel, config.logFormat);
  let server;
  try {
    server = await startServer(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, "cairn server failed to start");
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
