/**
 * A chaos agent worker process (SDK `createAgentWorker`):
 *   node --import tsx chaos/agent-worker.ts WORKER_ID URL[,URL...]
 * It serves the `chaos_echo` agent with an answer that depends only on the
 * turn's text (chaos/model.ts), after a short random delay. Its transport
 * fails over to the next server when a call cannot reach one, since the
 * chaos run kills servers all the time. One JSON line per event on stdout.
 */
import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAgentWorker } from "../sdk/agent-worker.js";
import type { HeadersInit } from "../sdk/client.js";
import { agentAnswer, agentName } from "./model.js";

const [workerId = "worker", urlList = ""] = process.argv.slice(2);
const urls = urlList.split(",").filter(Boolean);
if (urls.length === 0) throw new Error("usage: chaos/agent-worker.ts WORKER_ID URL[,URL...]");

const say = (event: string, fields: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ at: new Date().toISOString(), event, workerId, ...fields }));

/** Calls go to one server until one fails to reach it; then to the next. */
function failoverTransport(baseUrls: string[]): Transport {
  const transports = baseUrls.map((baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  let current = 0;
  const pick = () => {
    const index = current;
    return { index, transport: transports[index]! };
  };
  const failed = (index: number, error: unknown) => {
    const code = ConnectError.from(error).code;
    if ([Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded].includes(code) && current === index) {
      current = (index + 1) % transports.length;
    }
  };
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ) {
      const { index, transport } = pick();
      try {
        return await transport.unary(method, signal, timeoutMs, header, input, contextValues);
      } catch (error) {
        failed(index, error);
        throw error;
      }
    },
    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ) {
      const { index, transport } = pick();
      try {
        return await transport.stream(method, signal, timeoutMs, header, input, contextValues);
      } catch (error) {
        failed(index, error);
        throw error;
      }
    },
  };
}

const worker = createAgentWorker({
  transport: failoverTransport(urls),
  workerId,
  concurrency: 4,
  heartbeatMs: 400,
  agents: {
    [agentName]: async ({ turnId, attempt, text }) => {
      say("took", { turnId, attempt });
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 300));
      return agentAnswer(text);
    },
  },
  onError: (error) => say("error", { message: error instanceof Error ? error.message : String(error) }),
});
say("ready", { urls });
process.once("SIGTERM", () => void worker.stop().then(() => process.exit(0)));
await worker.done;
