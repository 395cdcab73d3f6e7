/** The first start with the embedded store is silent for many seconds otherwise: say why. */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";

export function describeFirstStore(config: Pick<Config, "databaseUrl" | "dataDir">, logger: Logger): void {
  if (config.databaseUrl || existsSync(join(config.dataDir, "PG_VERSION"))) return;
  logger.info(
    { dataDir: resolve(config.dataDir) },
    "creating the embedded PostgreSQL store (PGlite) on first start: this takes 10-30 s, later starts take about a second",
  );
}
