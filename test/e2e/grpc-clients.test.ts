// The real WorkflowService over plain gRPC, to clients that share no code with
// the server: @grpc/grpc-js with @grpc/proto-loader reading the .proto files,
// and `buf curl` discovering the schema through server reflection. One
// in-process server on a fresh PostgreSQL database, the repo's example
// workflows.
import { execFile } from "node:child_process";
import { afterAll, beforeAll, test } from "vitest";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { pino } from "pino";
import { type CairnServer, startServer } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

let db: TestDatabase;
let server: CairnServer;
let client: grpc.Client;
let methods: Record<string, grpc.MethodDefinition<object, object>>;

beforeAll(async () => {
  db = await createTestDatabase("grpc_clients");
  server = await startServer(
    loadConfig({ PORT: "0", HOST: "127.0.0.1", DATABASE_URL: db.url, CAIRN_AUTH: "open", WORKFLOW_DIRS: `${repoRoot}workflows`, LOG_LEVEL: "silent" }),
    // GRPC_TEST_LOG_LEVEL=error shows the server's logs when debugging a failure.
    pino({ level: process.env.GRPC_TEST_LOG_LEVEL ?? "silent" }),
  );
  const definition = protoLoader.loadSync("cairn/v1/workflow.proto", {
    includeDirs: [`${repoRoot}proto`],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const service = grpc.loadPackageDefinition(definition).cairn as grpc.GrpcObject;
  const WorkflowServiceClient = (service.v1 as grpc.GrpcObject).WorkflowService as grpc.ServiceClientConstructor;
  methods = WorkflowServiceClient.service as unknown as Record<string, grpc.MethodDefinition<object, object>>;
  client = new WorkflowServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.close();
  await db?.drop();
});

function call<T>(method: string, request: object): Promise<T> {
  const definition = methods[method];
  assert.ok(definition, `no method ${method}`);
  return new Promise<T>((resolve, reject) => {
    client.makeUnaryRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      request,
      { deadline: Date.now() + 10_000 },
      (error, value) => (error ? reject(error) : resolve(value as T)),
    );
  });
}

// google.protobuf.Value as proto-loader objects. protobufjs builds the well-known types in from JSON
// descriptors with camelCase field names, so keepCase does not apply to them; oneofs: true adds `kind`.
type ProtoValue = {
  kind?: string;
  nullValue?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: { fields: Record<string, ProtoValue> };
  listValue?: { values: ProtoValue[] };
};

function toValue(json: unknown): ProtoValue {
  if (json === null) return { nullValue: "NULL_VALUE" };
  if (typeof json === "number") return { numberValue: json };
  if (typeof json === "string") return { stringValue: json };
  if (typeof json === "boolean") return { boolValue: json };
  if (Array.isArray(json)) return { listValue: { values: json.map(toValue) } };
  if (typeof json === "object") {
    return { structValue: { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, toValue(v)])) } };
  }
  throw new TypeError(`not JSON: ${String(json)}`);
}

function fromValue(value: ProtoValue | null | undefined): unknown {
  assert.ok(value, "value present");
  switch (value.kind) {
    case "nullValue":
      return null;
    case "numberValue":
      return value.numberValue;
    case "stringValue":
      return value.stringValue;
    case "boolValue":
      return value.boolValue;
    case "listValue":
      return (value.listValue?.values ?? []).map(fromValue);
    case "structValue":
      return Object.fromEntries(Object.entries(value.structValue?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
    default:
      throw new Error(`Value without a kind: ${JSON.stringify(value)}`);
  }
}

interface ProtoRun {
  run_id: string;
  workflow_name: string;
  status: string;
  input: ProtoValue | null;
  output: ProtoValue | null;
  error: { name: string; message: string } | null;
  activation_count: number;
  completed_at: { seconds: string; nanos: number } | null;
}

function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(`${repoRoot}node_modules/.bin/buf`, ["curl", ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const order = { orderId: "o-42", items: [{ sku: "mug", quantity: 2 }, { sku: "tea", quantity: 1 }], amountCents: 1999 };
let completedRunId: string | undefined;

test("grpc-js: ListWorkflows lists the example workflows", async () => {
  const res = await call<{ workflows: { name: string; has_input_schema: boolean; input_schema_vendor: string }[] }>("ListWorkflows", {});
  assert.deepEqual(
    res.workflows.map((w) => [w.name, w.has_input_schema, w.input_schema_vendor]),
    [
      ["document_ingest", true, "zod"],
      ["expense_approval", true, "zod"],
      ["nightly_report", true, "zod"],
      ["order_fulfillment", true, "zod"],
    ],
  );
});

test("grpc-js: CreateRun order_fulfillment with eager_start, GetRun until COMPLETED, check the output", async () => {
  const created = await call<{ run: ProtoRun; deduplicated: boolean }>("CreateRun", {
    workflow_name: "order_fulfillment",
    input: toValue(order),
    eager_start: true,
    metadata: { source: "grpc-js" },
  });
  assert.equal(created.deduplicated, false);
  assert.match(created.run.run_id, /^[0-9a-f-]{36}$/);
  assert.equal(created.run.workflow_name, "order_fulfillment");
  assert.ok(["RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"].includes(created.run.status), created.run.status);
  assert.deepEqual(fromValue(created.run.input), order);

  const runId = created.run.run_id;
  const deadline = Date.now() + 10_000;
  let run: ProtoRun;
  for (;;) {
    run = (await call<{ run: ProtoRun }>("GetRun", { run_id: runId })).run;
    if (!["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING"].includes(run.status) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(run.status, "RUN_STATUS_COMPLETED", `run ended as ${run.status}: ${run.error?.message}`);
  assert.equal(run.error, null);
  assert.ok(run.completed_at && Number(run.completed_at.seconds) > 0);
  assert.equal(run.activation_count, 1);
  assert.deepEqual(fromValue(run.output), {
    orderId: "o-42",
    reservation: { reservationId: "res_o-42", units: 3 },
    // The step's idempotency key is "<run id>:charge-payment".
    charge: { chargeId: `ch_${runId.slice(0, 8)}`, amountCents: 1999 },
    shipment: { trackingNumber: "TRK-O-42", carrier: "parcel" },
    status: "fulfilled",
  });
  completedRunId = runId;
});

test("grpc-js: errors arrive as gRPC status codes with a clear message", async () => {
  await assert.rejects(call("CreateRun", { workflow_name: "no_such_workflow", input: toValue({}) }), (error: grpc.ServiceError) => {
    assert.equal(error.code, grpc.status.NOT_FOUND);
    assert.match(error.details, /no_such_workflow/);
    assert.match(error.details, /order_fulfillment/, "names the known workflows");
    return true;
  });
  await assert.rejects(
    call("CreateRun", { workflow_name: "order_fulfillment", input: toValue({ orderId: "", items: [], amountCents: -1 }) }),
    (error: grpc.ServiceError) => {
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.match(error.details, /orderId|amountCents|items/);
      return true;
    },
  );
  await assert.rejects(call("GetRun", { run_id: "00000000-0000-4000-8000-000000000000" }), (error: grpc.ServiceError) => {
    assert.equal(error.code, grpc.status.NOT_FOUND);
    return true;
  });
});

test("buf curl: reflection lists cairn.v1.WorkflowService and GetRun returns the completed run as JSON", async () => {
  assert.ok(completedRunId, "needs the run created by the CreateRun test");
  const list = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "--reflect", "--list-services", server.url]);
  assert.equal(list.code, 0, list.stderr);
  const services = list.stdout.trim().split("\n");
  assert.ok(services.includes("cairn.v1.WorkflowService"), services.join(", "));
  assert.ok(services.includes("cairn.v1.AgentService"), services.join(", "));
  assert.ok(services.includes("grpc.health.v1.Health"), services.join(", "));

  const got = await bufCurl([
    "--protocol", "grpc", "--http2-prior-knowledge", "--reflect",
    "--data", JSON.stringify({ run_id: completedRunId }),
    `${server.url}/cairn.v1.WorkflowService/GetRun`,
  ]);
  assert.equal(got.code, 0, got.stderr);
  const { run } = JSON.parse(got.stdout) as { run: Record<string, unknown> };
  assert.equal(run.runId, completedRunId);
  assert.equal(run.workflowName, "order_fulfillment");
  assert.equal(run.status, "RUN_STATUS_COMPLETED");
  assert.deepEqual(run.input, order);
  assert.equal((run.output as { status?: unknown }).status, "fulfilled");
  assert.deepEqual(run.metadata, { source: "grpc-js" });

  const missing = await bufCurl([
    "--protocol", "grpc", "--http2-prior-knowledge", "--reflect",
    "--data", JSON.stringify({ run_id: "00000000-0000-4000-8000-000000000000" }),
    `${server.url}/cairn.v1.WorkflowService/GetRun`,
  ]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /not_found|NotFound|not found/i);
});
