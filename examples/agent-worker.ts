// An agent worker process for the "summarize" agent used by workflows/nightly-report.ts.
//   CAIRN_API_URL=http://127.0.0.1:8080 npx tsx examples/agent-worker.ts
// With API keys on, give it a worker key (CAIRN_API_KEY); against a TLS server with a private or
// self-signed certificate, the certificate to trust (CAIRN_CA_FILE).
// A real worker would call a model here; this one writes a canned summary.
import { readFileSync } from "node:fs";
import { createConnectTransport } from "@connectrpc/connect-node";
import { apiKeyInterceptor, createAgentWorker } from "@cairnjs/sdk";

const baseUrl = process.env.CAIRN_API_URL ?? "http://127.0.0.1:8080";
const apiKey = process.env.CAIRN_API_KEY;
const caFile = process.env.CAIRN_CA_FILE;
const worker = createAgentWorker({
  transport: createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    interceptors: apiKey ? [apiKeyInterceptor(apiKey)] : [],
    ...(caFile ? { nodeOptions: { ca: readFileSync(caFile) } } : {}),
  }),
  workerId: `example-${process.pid}`,
  agents: {
    summarize: async ({ text, params, attempt }) => {
      console.log(`summarize (attempt ${attempt}): ${text}`);
      return { summary: `${text.replace(/^Write a short report about /, "Report: ")} is looking good.`, channel: params.channel ?? null };
    },
  },
  onError: (error) => console.error("agent worker:", error),
});
console.log(`agent worker ${worker.workerId} serving "summarize" at ${baseUrl}`);
process.once("SIGINT", () => void worker.stop());
process.once("SIGTERM", () => void worker.stop());
await worker.done;
