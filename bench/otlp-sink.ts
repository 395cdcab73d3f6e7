/**
 * A local OTLP/HTTP trace receiver for measuring the cost of tracing: `tsx bench/otlp-sink.ts` prints its
 * URL, accepts every export (counting spans) until SIGTERM/SIGINT, then prints the count. Point a server at it
 * with OTEL_EXPORTER_OTLP_ENDPOINT=<url>.
 */
import { startOtlpReceiver } from "../test/support/otlp-receiver.js";

const receiver = await startOtlpReceiver();
console.log(receiver.url);
const stop = async () => {
  console.log(`spans received: ${receiver.spans.length} in ${receiver.requests()} exports`);
  await receiver.close();
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("SIGINT", () => void stop());
