/** Structured JSON logs (pino) on stdout, or readable lines on a terminal; one root logger, children carry context. */
import { pino, type Logger } from "pino";
import type { WorkflowLogger } from "../sdk/workflow.js";
import { type LogFormat, prettyDestination } from "./log-pretty.js";

export type { Logger };

export function createLogger(level: string, format: LogFormat = "json"): Logger {
  const options = { level, base: { service: "cairn", pid: process.pid } };
  return format === "pretty" ? pino(options, prettyDestination()) : pino(options);
}

/** Adapts pino to the `ctx.log` shape: message first, fields second. */
export function toWorkflowLogger(logger: Logger): WorkflowLogger {
  return {
    debug: (message, fields) => logger.debug(fields ?? {}, message),
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    error: (message, fields) => logger.error(fields ?? {}, message),
  };
}
