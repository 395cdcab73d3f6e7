/**
 * With CORS off (no CAIRN_CORS_ORIGINS) a browser page on another origin only sees "Failed to
 * fetch". Its preflight does reach the server, so this says in the log what to set, once per
 * origin, and hands the request on unchanged.
 */
import type { Logger } from "../logger.js";
import type { NodeHandler } from "./listen.js";

/** At most this many origins are remembered, so a scan of origins cannot grow the set without bound. */
const rememberedOrigins = 100;

export function withCorsHint(next: NodeHandler, logger: Logger): NodeHandler {
  const hinted = new Set<string>();
  return (req, res) => {
    const origin = req.headers.origin;
    if (req.method === "OPTIONS" && typeof origin === "string" && req.headers["access-control-request-method"] && !hinted.has(origin)) {
      if (hinted.size < rememberedOrigins) hinted.add(origin);
      logger.warn(
        { origin, path: req.url },
        `a browser page at ${origin} sent a CORS preflight, but CORS is off: set CAIRN_CORS_ORIGINS=${origin} to let it call this server`,
      );
    }
    next(req, res);
  };
}
