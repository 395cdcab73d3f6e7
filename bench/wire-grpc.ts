/**
 * The wire comparison's gRPC client: @grpc/grpc-js with @grpc/proto-loader
 * reading proto/ at start-up, sharing no code with the server or the SDK (the
 * way a team in another language would call Cairn). One channel (one h2c
 * connection) per client; streams and long polls multiplex on it.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { finalStatuses, type Observation, statusName, type WireClient } from "./wire.js";

const protoDir = fileURLToPath(new URL("../proto", import.meta.url));

type Method = grpc.MethodDefinition<object, object>;
/** google.protobuf.Value as proto-loader builds it (well-known types keep their camelCase names). */
type ProtoValue = { nullValue?: string; numberValue?: number; stringValue?: string; boolValue?: boolean; structValue?: { fields: Record<string, ProtoValue> }; listValue?: { values: ProtoValue[] } };
type ProtoRun = { run_id: string; status: string };

let loaded: { Client: grpc.ServiceClientConstructor; methods: Record<string, Method> } | undefined;

function service(): { Client: grpc.ServiceClientConstructor; methods: Record<string, Method> } {
  if (!loaded) {
    const definition = protoLoader.loadSync("cairn/v1/workflow.proto", { includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    const cairn = grpc.loadPackageDefinition(definition).cairn as grpc.GrpcObject;
    const Client = (cairn.v1 as grpc.GrpcObject).WorkflowService as grpc.ServiceClientConstructor;
    loaded = { Client, methods: Client.service as unknown as Record<string, Method> };
  }
  return loaded;
}

function toValue(json: unknown): ProtoValue {
  if (json === null) return { nullValue: "NULL_VALUE" };
  if (typeof json === "number") return { numberValue: json };
  if (typeof json === "string") return { stringValue: json };
  if (typeof json === "boolean") return { boolValue: json };
  if (Array.isArray(json)) return { listValue: { values: json.map(toValue) } };
  if (typeof json === "object") return { structValue: { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, toValue(v)])) } };
  throw new TypeError(`not JSON: ${String(json)}`);
}

/** One AwaitRun waits at most this long; the client calls it again until the run ends. */
const awaitSliceSeconds = 30;

export function grpcWire(baseUrl: string): WireClient {
  const { Client, methods } = service();
  const client = new Client(new URL(baseUrl).host, grpc.credentials.createInsecure());
  const method = (name: string): Method => {
    const found = methods[name];
    if (!found) throw new Error(`proto/ has no WorkflowService.${name}`);
    return found;
  };
  const unary = <T>(name: string, request: object, deadlineMs = 30_000): Promise<T> => {
    const m = method(name);
    return new Promise<T>((resolve, reject) => {
      client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, request, { deadline: Date.now() + deadlineMs }, (error, value) =>
        error ? reject(error) : resolve(value as T),
      );
    });
  };
  // The run's end is known at its final message, but the call is left to the server's own end of the stream (it
  // follows at once) rather than cancelled: every cancel is an RST_STREAM, and Node's HTTP/2 server (nghttp2's
  // rapid-reset defence, CVE-2023-44487) closes a connection with INTERNAL_ERROR after 1,000 of them in a burst,
  // then 33 a second, taking its other calls with it. A gRPC client that reads its stream to the end never meets it.
  const watchEnd = (runId: string, signal: AbortSignal): Promise<string> => {
    const m = method("WatchRun");
    return new Promise<string>((resolve, reject) => {
      const call = client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, { run_id: runId, after_sequence: "0" });
      let settled = false;
      let lingering: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(lingering);
        signal.removeEventListener("abort", abort);
      };
      const settle = (error: Error | undefined, status?: string) => {
        if (settled) return;
        settled = true;
        if (error) {
          finish();
          call.cancel();
          reject(error);
          return;
        }
        resolve(status as string);
        // A server that does not end the stream soon after the final status is a defect the bench should not hide.
        lingering = setTimeout(() => {
          finish();
          call.cancel();
        }, 5_000);
      };
      const abort = () => settle(new Error(`run ${runId}: interrupted`));
      signal.addEventListener("abort", abort);
      call.on("data", (message: { run?: ProtoRun | null }) => {
        const status = message.run ? statusName(message.run.status) : undefined;
        if (status && finalStatuses.includes(status)) settle(undefined, status);
      });
      call.on("error", (error: Error) => {
        if (settled) finish();
        settle(error);
      });
      call.on("end", () => {
        if (settled) finish();
        settle(new Error(`run ${runId}: the watch stream ended before the run did`));
      });
    });
  };
  return {
    wire: "grpc-js",
    createRun: async (workflowName, input) => (await unary<{ run: ProtoRun }>("CreateRun", { workflow_name: workflowName, input: toValue(input), eager_start: true })).run.run_id,
    status: async (runId) => statusName((await unary<{ run: ProtoRun }>("GetRun", { run_id: runId })).run.status),
    sendEvent: async (eventType, correlationId, payload) =>
      (await unary<{ matched_run_ids: string[] }>("SendEvent", { event_type: eventType, correlation_id: correlationId, payload: toValue(payload) })).matched_run_ids,
    async observeEnd(runId: string, how: Observation, signal: AbortSignal): Promise<string> {
      if (how === "watch") return watchEnd(runId, signal);
      for (;;) {
        if (signal.aborted) throw new Error(`run ${runId}: interrupted`);
        const { run } = await unary<{ run: ProtoRun }>("AwaitRun", { run_id: runId, timeout: { seconds: String(awaitSliceSeconds), nanos: 0 } }, (awaitSliceSeconds + 5) * 1000);
        const status = statusName(run.status);
        if (finalStatuses.includes(status)) return status;
      }
    },
    close: () => client.close(),
  };
}

/**
 * WatchRun streams through grpc-js for the crowd of watch streams (bench/crowd.ts): `watch` reports each message's
 * run status and `updated_at` (ms), and settles when the server ends the stream. Its own channel: grpc-js shares a
 * connection among clients of the same target and options, and the crowd wants one per `perConnection` streams.
 */
export function grpcRunWatcher(baseUrl: string): {
  watch(runId: string, signal: AbortSignal, onRun: (status: string, updatedAtMs: number | undefined) => void): Promise<void>;
  close(): void;
} {
  const { Client, methods } = service();
  const client = new Client(new URL(baseUrl).host, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  const m = methods.WatchRun;
  if (!m) throw new Error("proto/ has no WorkflowService.WatchRun");
  type Timestamp = { seconds: string; nanos: number } | null;
  return {
    watch: (runId, signal, onRun) =>
      new Promise<void>((resolve, reject) => {
        const call = client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, { run_id: runId, after_sequence: "0" });
        const abort = () => call.cancel();
        signal.addEventListener("abort", abort, { once: true });
        const done = (error?: Error) => {
          signal.removeEventListener("abort", abort);
          if (error) reject(error);
          else resolve();
        };
        call.on("data", (message: { run?: (ProtoRun & { updated_at?: Timestamp }) | null }) => {
          const at = message.run?.updated_at;
          if (message.run) onRun(statusName(message.run.status), at ? Number(at.seconds) * 1000 + Math.floor(at.nanos / 1e6) : undefined);
        });
        call.on("error", (error: Error) => done(error));
        call.on("end", () => done());
      }),
    close: () => client.close(),
  };
}
