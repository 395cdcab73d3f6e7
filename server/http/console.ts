/**
 * Serves the console (console/, built into console/dist and committed) at `/` on the API's own port:
 *
 *   GET /, /runs, /runs/{id}, /workflows   → index.html (client routes; the page routes itself)
 *   GET /assets/{name}-{hash}.{js,css,…}   → the file, cached for a year (the name changes with the content)
 *
 * Everything else, including every Connect, gRPC and REST route, goes to `next`. The files are read
 * once at start and gzipped once, so a request costs a map lookup. The page may load only its own
 * scripts, styles and images and talk only to this origin (Content-Security-Policy): no inline
 * script, no third-party anything.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { NodeHandler } from "./listen.js";

export const consoleDistDir = fileURLToPath(new URL("../../console/dist/", import.meta.url));

/** Paths the console routes on the client: a reload or a shared link lands on index.html. */
const clientRoutes = /^\/(?:runs(?:\/[^/]+)?|workflows)?\/?$/;

export const consoleContentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

interface Asset {
  body: Buffer;
  gzip: Buffer | undefined;
  type: string;
  immutable: boolean;
}

function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  const walk = (folder: string): void => {
    for (const name of readdirSync(folder)) {
      const file = join(folder, name);
      if (statSync(file).isDirectory()) {
        walk(file);
        continue;
      }
      const path = `/${relative(dir, file).split(sep).join("/")}`;
      const body = readFileSync(file);
      const type = types[extname(file)] ?? "application/octet-stream";
      // Images are already compressed; text shrinks to a quarter.
      const gzip = type.startsWith("text/") || type === "application/json" || type === "image/svg+xml" ? gzipSync(body, { level: 9 }) : undefined;
      assets.set(path, { body, gzip, type, immutable: path.startsWith("/assets/") });
    }
  };
  walk(dir);
  return assets;
}

/** Answers the console's paths and hands every other request to `next`. */
export function withConsole(next: NodeHandler, dir = consoleDistDir): NodeHandler {
  const assets = loadAssets(dir);
  const index = assets.get("/index.html");
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return next(req, res);
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const asset = clientRoutes.test(path) ? index : assets.get(path);
    if (!asset) {
      if (path === "/" || path.startsWith("/assets/")) {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
        res.end(index ? `not found: ${path}\n` : "the console is not built: run `npm run build:console`\n");
        return;
      }
      return next(req, res);
    }
    const gzip = asset.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? "")) ? asset.gzip : undefined;
    const body = gzip ?? asset.body;
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": body.length,
      "cache-control": asset.immutable ? "public, max-age=31536000, immutable" : "no-cache",
      "content-security-policy": consoleContentSecurityPolicy,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      vary: "accept-encoding",
      ...(gzip ? { "content-encoding": "gzip" } : {}),
    });
    if (req.method === "HEAD") res.end();
    else res.end(body);
  };
}
