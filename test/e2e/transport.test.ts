// End-to-end check of the transport layer: one plaintext port must serve Connect (HTTP/1.1 and
// HTTP/2), gRPC, gRPC-Web, gRPC health checking and server reflection (v1 and v1alpha) to real
// clients (fetch, connect-node, grpc-js, buf curl), and close() must drain and stop accepting.
// The WorkflowService registered here is a fixed test fixture, not the real implementation.

import { execFile } from "node:child_process";
import net from "node:net";
import { afterAll, beforeAll, test } from "vitest";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ListWorkflowsResponseSchema, WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import * as reflectionV1 from "../../sdk/gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../../sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { listen, type Listening } from "../../server/http/listen.js";
import { createHealthService, Health, ServingStatus } from "../../server/rpc/health.js";
import { createReflectionServices } from "../../server/rpc/reflection.js";

// Test fixture: a WorkflowService that only knows ListWorkflows and answers with a fixed list.
const FIXTURE_WORKFLOWS = [{ name: "fixture-greet", sourceFile: "fixtures/greet.ts", hasInputSchema: false }];
const fixtureWorkflowService: Partial<ServiceImpl<typeof WorkflowService>> = {
  listWorkflows: () => create(ListWorkflowsResponseSchema, { workflows: FIXTURE_WORKFLOWS }),
};

const health = createHealthService({ services: [WorkflowService.typeName] });
const reflection = createReflectionServices([Health, WorkflowService]);
let srv: Listening;
let baseUrl: string;

beforeAll(async () => {
  const routes = (router: ConnectRouter): void => {
    router.service(Health, health.impl);
    reflection.register(router);
    router.service(WorkflowService, fixtureWorkflowService);
  };
  srv = await listen(connectNodeAdapter({ routes }), { host: "127.0.0.1", port: 0 });
  baseUrl = `http://127.0.0.1:${srv.port}`;
});

afterAll(async () => {
  await srv.close();
});

function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("node_modules/.bin/buf", ["curl", ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test("port 0 resolves to a real port", () => {
  assert.ok(srv.port > 0);
  assert.equal(srv.host, "127.0.0.1");
});

test("Connect JSON over HTTP/1.1 with fetch", async () => {
  const res = await fetch(`${baseUrl}/grpc.health.v1.Health/Check`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "SERVING" });

  const unknown = await fetch(`${baseUrl}/grpc.health.v1.Health/Check`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ service: "no.such.Service" }),
  });
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as { code: string }).code, "not_found");
});

test("Health.Check over Connect/HTTP2, gRPC and gRPC-Web/HTTP1.1", async () => {
  const transports = {
    connectH2: createConnectTransport({ httpVersion: "2", baseUrl }),
    connectH1: createConnectTransport({ httpVersion: "1.1", baseUrl }),
    grpc: createGrpcTransport({ baseUrl }),
    grpcWeb: createGrpcWebTransport({ httpVersion: "1.1", baseUrl }),
  };
  for (const [name, transport] of Object.entries(transports)) {
    const client = createClient(Health, transport);
    const res = await client.check({ service: "" });
    assert.equal(res.status, ServingStatus.SERVING, name);
    const named = await client.check({ service: WorkflowService.typeName });
    assert.equal(named.status, ServingStatus.SERVING, name);
    await assert.rejects(client.check({ service: "nope" }), (err: unknown) => {
      assert.ok(err instanceof ConnectError, name);
      assert.equal(err.code, Code.NotFound, name);
      return true;
    });
  }
});

test("Health.Watch streams the current status and every change", async () => {
  const client = createClient(Health, createGrpcTransport({ baseUrl }));
  const abort = new AbortController();
  const stream = client.watch({ service: "cairn.v1.Temp" }, { signal: abort.signal })[Symbol.asyncIterator]();
  const next = async (): Promise<ServingStatus> => {
    const r = await stream.next();
    assert.equal(r.done, false);
    return r.value.status;
  };
  assert.equal(await next(), ServingStatus.SERVICE_UNKNOWN);
  health.setStatus("cairn.v1.Temp", ServingStatus.SERVING);
  assert.equal(await next(), ServingStatus.SERVING);
  health.setStatus("cairn.v1.Temp", ServingStatus.NOT_SERVING);
  assert.equal(await next(), ServingStatus.NOT_SERVING);
  abort.abort();
  await assert.rejects(stream.next(), (err: unknown) => ConnectError.from(err).code === Code.Canceled);
});

test("grpc-js client with proto-loader calls Health.Check", async () => {
  const definition = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: ["proto"], enums: String });
  const root = grpc.loadPackageDefinition(definition);
  let node: grpc.GrpcObject[string] | undefined = root;
  for (const part of ["grpc", "health", "v1", "Health"]) {
    assert.ok(node && typeof node === "object" && !("format" in node), `no ${part}`);
    node = node[part];
  }
  assert.equal(typeof node, "function");
  const HealthClient = node as grpc.ServiceClientConstructor;
  const check = HealthClient.service["Check"];
  assert.ok(check);
  const client = new HealthClient(`127.0.0.1:${srv.port}`, grpc.credentials.createInsecure());
  try {
    const res = await new Promise<unknown>((resolve, reject) => {
      client.makeUnaryRequest(
        check.path,
        check.requestSerialize,
        check.responseDeserialize,
        { service: "" },
        (err, value) => (err ? reject(err) : resolve(value)),
      );
    });
    assert.deepEqual(res, { status: "SERVING" });
  } finally {
    client.close();
  }
});

test("buf curl lists services via reflection (v1 and v1alpha)", async () => {
  for (const reflectProtocol of ["grpc-v1", "grpc-v1alpha"]) {
    const r = await bufCurl([
      "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", reflectProtocol, "--list-services", baseUrl,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const names = r.stdout.trim().split("\n").sort();
    assert.deepEqual(names, [
      "cairn.v1.WorkflowService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);

    const methods = await bufCurl([
      "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", reflectProtocol, "--list-methods", baseUrl,
    ]);
    assert.equal(methods.code, 0, methods.stderr);
    assert.match(methods.stdout, /^cairn\.v1\.WorkflowService\/ListWorkflows$/m);
    assert.match(methods.stdout, /^grpc\.health\.v1\.Health\/Watch$/m);
  }
});

test("buf curl calls WorkflowService.ListWorkflows via reflection (gRPC and Connect)", async () => {
  for (const [protocol, reflectProtocol] of [["grpc", "grpc-v1"], ["grpc", "grpc-v1alpha"], ["connect", "grpc-v1"]] as const) {
    const r = await bufCurl([
      "--protocol", protocol, "--http2-prior-knowledge", "--reflect-protocol", reflectProtocol,
      "--data", "{}", `${baseUrl}/cairn.v1.WorkflowService/ListWorkflows`,
    ]);
    assert.equal(r.code, 0, `${protocol}/${reflectProtocol}: ${r.stderr}`);
    assert.deepEqual(JSON.parse(r.stdout), {
      workflows: [{ name: "fixture-greet", sourceFile: "fixtures/greet.ts" }],
    });
  }
});

test("buf curl reports an unknown method as not found", async () => {
  const r = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", `${baseUrl}/cairn.v1.NoSuchService/Nope`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /failed to find service/);
});

test("reflection answers lookups in the stream, NOT_FOUND without failing it", async () => {
  const transport = createGrpcTransport({ baseUrl });
  const v1 = createClient(reflectionV1.ServerReflection, transport);
  async function* requests(): AsyncIterable<reflectionV1.ServerReflectionRequest> {
    const ask = (messageRequest: reflectionV1.ServerReflectionRequest["messageRequest"]) =>
      create(reflectionV1.ServerReflectionRequestSchema, { messageRequest });
    yield ask({ case: "fileContainingSymbol", value: "cairn.v1.DoesNotExist" });
    yield ask({ case: "fileContainingSymbol", value: "cairn.v1.WorkflowService.ListWorkflows" });
    yield ask({ case: "fileByFilename", value: "nope.proto" });
    yield ask({ case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" });
    yield ask({ case: "allExtensionNumbersOfType", value: "cairn.v1.Workflow" });
    yield ask({ case: "listServices", value: "" });
  }
  const answers: reflectionV1.ServerReflectionResponse["messageResponse"][] = [];
  for await (const res of v1.serverReflectionInfo(requests())) answers.push(res.messageResponse);
  assert.equal(answers.length, 6);

  const [missing, found, missingFile, nested, extensions, list] = answers;
  assert.equal(missing?.case, "errorResponse");
  assert.equal(missing.value.errorCode, Code.NotFound);
  assert.equal(missingFile?.case, "errorResponse");
  assert.equal(missingFile.value.errorCode, 5);

  const { fromBinary } = await import("@bufbuild/protobuf");
  const { FileDescriptorProtoSchema } = await import("@bufbuild/protobuf/wkt");
  assert.equal(found?.case, "fileDescriptorResponse");
  const fileNames = found.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
  assert.equal(fileNames[0], "cairn/v1/workflow.proto");
  for (const dep of ["cairn/v1/types.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]) {
    assert.ok(fileNames.includes(dep), `missing ${dep} in ${fileNames.join(", ")}`);
  }
  assert.equal(nested?.case, "fileDescriptorResponse");
  assert.equal(fromBinary(FileDescriptorProtoSchema, nested.value.fileDescriptorProto[0] ?? new Uint8Array()).name,
    "grpc/health/v1/health.proto");
  assert.equal(extensions?.case, "allExtensionNumbersResponse");
  assert.deepEqual(extensions.value.extensionNumber, []);
  assert.equal(list?.case, "listServicesResponse");
  assert.ok(list.value.service.some((s) => s.name === "grpc.health.v1.Health"));

  // v1alpha shares the logic.
  const v1alpha = createClient(reflectionV1alpha.ServerReflection, transport);
  async function* one(): AsyncIterable<reflectionV1alpha.ServerReflectionRequest> {
    yield create(reflectionV1alpha.ServerReflectionRequestSchema, {
      messageRequest: { case: "fileContainingSymbol", value: "no.Such" },
    });
  }
  for await (const res of v1alpha.serverReflectionInfo(one())) {
    assert.equal(res.messageResponse.case, "errorResponse");
    assert.equal(res.messageResponse.value.errorCode, 5);
  }
});

test("shutdown: Watch ends after NOT_SERVING, close() drains and the port stops accepting", async () => {
  const client = createClient(Health, createConnectTransport({ httpVersion: "2", baseUrl }));
  const seen: ServingStatus[] = [];
  const watching = (async () => {
    for await (const res of client.watch({ service: "" })) {
      seen.push(res.status);
      if (seen.length === 1) health.shutdown();
    }
  })();
  await watching;
  assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  assert.equal((await client.check({ service: "" })).status, ServingStatus.NOT_SERVING);

  // An idle HTTP/1.1 keep-alive connection must not hold up close().
  const idle = net.connect(srv.port, "127.0.0.1");
  await new Promise<void>((resolve) => idle.once("connect", () => resolve()));
  idle.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  await new Promise<void>((resolve) => idle.once("data", () => resolve()));
  const idleClosed = new Promise<void>((resolve) => idle.once("close", () => resolve()));

  const started = Date.now();
  await srv.close();
  assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms`);
  await idleClosed;

  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const s = net.connect(srv.port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", reject);
    }),
    /ECONNREFUSED/,
  );
});
