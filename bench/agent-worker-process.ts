// The agent worker of `npm run bench`, a real process:
//   node --import tsx bench/agent-worker-process.ts URL [HTTP_VERSION]
// Serves agent "bench" (bench/workflows/agent.ts) and answers every turn at
// once, so a turn's round trip is the engine's and the wire's alone. Prints
// one JSON line when it starts ({"event":"ready"}) and one per error; stops
// on SIGTERM (the bench SIGKILLs it if that takes too long).
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAgentWorker } from "../sdk/agent-worker.js";
import { AGENT } from "./workflows/agent.js";

const [url, httpVersion] = process.argv.slice(2);
if (!url) {
  console.error("usage: node --import tsx bench/agent-worker-process.ts URL [1.1|2]");
  process.exit(2);
}
const worker = createAgentWorker({
  transport: createConnectTransport({ baseUrl: url, httpVersion: httpVersion === "1.1" ? "1.1" : "2" }),
  workerId: `bench-${process.pid}`,
  agents: {
    [AGENT]: ({ text, attempt }) => ({ echo: text, attempt }),
  },
  onError: (error) => console.log(JSON.stringify({ event: "error", message: String(error) })),
});
console.log(JSON.stringify({ event: "ready", workerId: worker.workerId, pid: process.pid }));
process.once("SIGTERM", () => void worker.stop().then(() => process.exit(0)));
