/** Structured JSON logs (pino) on stdout; one root logger, children carry context. */
import { pino, type Logger } from "pino";
import type { WorkflowLogger } from "../sdk/workflow.js";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "cairn", pid: process.pid } });
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
