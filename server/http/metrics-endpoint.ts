/**
 * `GET /metrics`: the Prometheus text exposition, on the main port. In keys mode it asks for an admin key
 * (X-Api-Key or `Authorization: Bearer`, as Prometheus' `authorization` scrape setting sends it): the
 * metrics count every namespace's runs by workflow, which only an admin may see. `CAIRN_METRICS_PORT`
 * serves the same page on a port of its own without a key, for scrapers on a private network.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Metrics } from "../metrics.js";

import type { NodeHandler } from "./listen.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** Answers whether `key` (as presented) is an active admin key; absent: no key is needed (open mode). */
export type AdminCheck = (presented: string | undefined) => Promise<"ok" | "unauthenticated" | "permission_denied">;

export function withMetrics(next: NodeHandler, metrics: Metrics, checkAdmin?: AdminCheck): NodeHandler {
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) return next(req, res);
    void serveMetrics(req, res, metrics, checkAdmin);
  };
}

export async function serveMetrics(req: Request, res: Response, metrics: Metrics, checkAdmin?: AdminCheck): Promise<void> {
  try {
    if (checkAdmin) {
      const verdict = await checkAdmin(presentedKey(req));
      if (verdict !== "ok") {
        const status = verdict === "unauthenticated" ? 401 : 403;
        const message =
          verdict === "unauthenticated"
            ? "metrics need an admin API key in X-Api-Key or Authorization: Bearer (or scrape CAIRN_METRICS_PORT)\n"
            : "metrics need an API key with role admin\n";
        (res as ServerResponse).writeHead(status, { "content-type": "text/plain; charset=utf-8", ...(status === 401 ? { "www-authenticate": "Bearer" } : {}) });
        res.end(message);
        return;
      }
    }
    const { contentType, body } = await metrics.exposition();
    (res as ServerResponse).writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? "" : body);
  } catch (error) {
    (res as ServerResponse).writeHead(500, { "content-type": "text/plain; charset=utf-8" });
    res.end(`metrics failed: ${(error as Error).message}\n`);
  }
}

function presentedKey(req: Request): string | undefined {
  const apiKey = req.headers["x-api-key"];
  if (typeof apiKey === "string" && apiKey.trim()) return apiKey.trim();
  const authorization = req.headers.authorization?.trim();
  const bearer = authorization ? /^bearer\s+(.+)$/i.exec(authorization) : null;
  return bearer?.[1]?.trim() || undefined;
}
