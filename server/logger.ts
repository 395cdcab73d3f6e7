/**
 * Structured logs (pino) on stdout; one root logger, children carry context. JSON lines for machines,
 * or a readable line per record for a person (`pretty`: log-pretty.ts), the default when stdout is a terminal.
 */
import { pino, type Logger } from "pino";
import type { WorkflowLogger } from "../sdk/workflow.js";
import { prettyDestination } from "./log-pretty.js";

export type { Logger };

export type LogFormat = "json" | "pretty";

/** `LOG_FORMAT` when set, else pretty on a terminal and JSON otherwise (a pipe, a file, a log collector). */
export function resolveLogFormat(format: LogFormat | undefined, isTTY = process.stdout.isTTY === true): LogFormat {
  return format ?? (isTTY ? "pretty" : "json");
}

export function createLogger(level: string, format?: LogFormat): Logger {
  const options = { level, base: { service: "cairn", pid: process.pid } };
  return resolveLogFormat(format) === "pretty" ? pino(options, prettyDestination()) : pino(options);
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
