/**
 * CORS for browsers calling the Connect, gRPC-Web and REST routes from another origin
 * (`CAIRN_CORS_ORIGINS`). Off when no origin is configured: no Access-Control-* headers at all,
 * and OPTIONS requests reach the Connect handler like any other request.
 *
 * On: preflights (OPTIONS with Access-Control-Request-Method) are answered here with 204 for every
 * path; other requests from an allowed origin get Access-Control-Allow-Origin and the exposed
 * headers set before the inner handler writes its response. Every response carries `Vary: Origin`
 * because what it says depends on the Origin header.
 */
import { cors } from "@connectrpc/connect";
import type { NodeHandler } from "./listen.js";

export interface CorsOptions {
  /** Exact origins (`https://app.example.com`) or `*` for any. Empty: CORS off. */
  origins: readonly string[];
  /** How long browsers may cache a preflight answer, in seconds. Default 7200. */
  maxAgeSeconds?: number;
}

/** Headers browsers may send: the Connect and gRPC-Web protocol headers plus Cairn's credentials. */
export const corsAllowedHeaders: readonly string[] = [...cors.allowedHeaders, "X-Api-Key", "Authorization"];
export const corsAllowedMethods: readonly string[] = [...cors.allowedMethods];
/** Connect's protocol headers plus the rate limit's retry hints. */
export const corsExposedHeaders: readonly string[] = [...cors.exposedHeaders, "Retry-After", "Retry-After-Ms"];

export function withCors(next: NodeHandler, options: CorsOptions): NodeHandler {
  if (options.origins.length === 0) return next;
  const anyOrigin = options.origins.includes("*");
  const allowed = new Set(options.origins.map((origin) => origin.toLowerCase()));
  const maxAge = String(options.maxAgeSeconds ?? 7200);
  const allowOrigin = (origin: string | undefined): string | undefined => {
    if (!origin) return undefined;
    if (anyOrigin) return "*";
    return allowed.has(origin.toLowerCase()) ? origin : undefined;
  };

  return (req, res) => {
    const origin = single(req.headers.origin);
    const requestedMethod = single(req.headers["access-control-request-method"]);
    res.setHeader("vary", "Origin");
    const granted = allowOrigin(origin);

    if (req.method === "OPTIONS" && origin && requestedMethod) {
      res.setHeader("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
      if (!granted) {
        const body = JSON.stringify({
          code: "permission_denied",
          message: `origin ${origin} is not allowed; add it to CAIRN_CORS_ORIGINS`,
        });
        res.statusCode = 403;
        res.setHeader("content-type", "application/json");
        res.end(body);
        return;
      }
      res.statusCode = 204;
      res.setHeader("access-control-allow-origin", granted);
      res.setHeader("access-control-allow-methods", corsAllowedMethods.join(", "));
      res.setHeader("access-control-allow-headers", corsAllowedHeaders.join(", "));
      res.setHeader("access-control-max-age", maxAge);
      res.end();
      return;
    }

    if (granted) {
      res.setHeader("access-control-allow-origin", granted);
      res.setHeader("access-control-expose-headers", corsExposedHeaders.join(", "));
    }
    next(req, res);
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
