/**
 * Open mode (no API keys, every call is admin) is meant for one developer's machine. The port is on
 * loopback, but a web page the developer visits can still reach it: by a cross-site request from the
 * browser (its Origin names the page), or by DNS rebinding (a name of the attacker's that now resolves to
 * 127.0.0.1, so the Host header names it). This guard, in front of everything, refuses both:
 *
 * - Host (HTTP/2 :authority) must be a loopback name or address: localhost, 127.0.0.0/8, [::1]. Skipped
 *   when the server was deliberately opened on another address (CAIRN_ALLOW_OPEN=true with a non-loopback
 *   HOST): then clients use whatever name reaches it.
 * - Origin, when a browser sends one, must be a loopback origin (the console, a dev server on localhost)
 *   or one of CAIRN_CORS_ORIGINS.
 *
 * Refused requests get 403 with a Connect error body naming the header and the way out.
 */
import { isLoopback } from "../config.js";
import type { NodeHandler } from "./listen.js";
import { connectRequestUrl } from "./require-authority.js";

export function withOpenModeGuard(next: NodeHandler, options: { checkHost: boolean; corsOrigins: readonly string[] }): NodeHandler {
  const allowedOrigins = new Set(options.corsOrigins.map((origin) => origin.toLowerCase()));
  const anyOrigin = allowedOrigins.has("*");
  return (req, res) => {
    const authority = "authority" in req && req.authority ? req.authority : req.headers.host;
    // No usable authority at all (HTTP/1.0 without Host, `Host: a b`): withValidAuthority answers 400 for those.
    const usable = authority !== undefined && connectRequestUrl(req) !== undefined;
    if (options.checkHost && usable && !isLoopback(hostOf(authority))) {
      refuse(res, `Host ${JSON.stringify(authority)} is not a loopback name; in open mode this server answers only requests addressed to localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding). Use CAIRN_AUTH=keys to serve other names`);
      return;
    }
    const origin = req.headers.origin;
    if (typeof origin === "string" && !anyOrigin && !allowedOrigins.has(origin.toLowerCase()) && !isLoopbackOrigin(origin)) {
      refuse(res, `Origin ${JSON.stringify(origin)} may not call this server: in open mode only pages on loopback origins may (a guard against cross-site requests). List the origin in CAIRN_CORS_ORIGINS, or use CAIRN_AUTH=keys`);
      return;
    }
    next(req, res);
  };
}

/** "127.0.0.1:8080" → "127.0.0.1", "[::1]:8080" → "::1", "localhost" → "localhost". */
function hostOf(authority: string): string {
  if (authority.startsWith("[")) return authority.slice(1, authority.indexOf("]") === -1 ? undefined : authority.indexOf("]"));
  const colon = authority.lastIndexOf(":");
  return colon === -1 ? authority : authority.slice(0, colon);
}

function isLoopbackOrigin(origin: string): boolean {
  try {
    const url = new URL(origin);
    return (url.protocol === "http:" || url.protocol === "https:") && isLoopback(url.hostname);
  } catch {
    // "null" (sandboxed frames, file: pages) and anything that is not an origin.
    return false;
  }
}

function refuse(res: Parameters<NodeHandler>[1], message: string): void {
  const body = JSON.stringify({ code: "permission_denied", message });
  res.writeHead(403, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
