/**
 * `node dist/server/healthcheck.js`: the container's HEALTHCHECK and the chart's exec probes.
 * Asks the server on this host (PORT, default 8080; https when CAIRN_TLS_CERT is set) for
 * grpc.health.v1.Health/Check over Connect JSON and exits 0 only on SERVING, so a draining
 * server (NOT_SERVING during a graceful stop) leaves the load balancer first.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

const port = Number(process.env.PORT ?? 8080);
const tls = Boolean(process.env.CAIRN_TLS_CERT);
const body = JSON.stringify({ service: process.argv[2] ?? "" });
const request = (tls ? httpsRequest : httpRequest)(
  {
    host: "127.0.0.1",
    port,
    method: "POST",
    path: "/grpc.health.v1.Health/Check",
    headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    // The certificate names the service, not 127.0.0.1; this only asks this host's own process.
    rejectUnauthorized: false,
    timeout: 3000,
  },
  (response) => {
    let text = "";
    response.setEncoding("utf8");
    response.on("data", (chunk: string) => (text += chunk));
    response.on("end", () => {
      const serving = response.statusCode === 200 && (JSON.parse(text) as { status?: string }).status === "SERVING";
      if (!serving) console.error(`cairn health: HTTP ${response.statusCode} ${text}`);
      process.exit(serving ? 0 : 1);
    });
  },
);
request.on("timeout", () => request.destroy(new Error("no answer within 3 s")));
request.on("error", (error) => {
  console.error(`cairn health: ${error.message}`);
  process.exit(1);
});
request.end(body);
