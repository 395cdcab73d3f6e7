/**
 * Traces through a real OTLP/HTTP receiver: a CreateRun that carries the caller's `traceparent` gives one
 * trace holding the RPC span, the run's activations, its step attempts and its child run's activations and
 * steps, each under the right parent. Without an OTLP endpoint, tracing is off and nothing is sent.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, test } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { AgentService, type AgentTurn } from "../../sdk/gen/cairn/v1/agent_pb.js";
import type { CairnServer } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { startTestServer, waitForEnd } from "../support/in-process-server.js";
import { startOtlpReceiver, type ReceivedSpan } from "../support/otlp-receiver.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

let database: TestDatabase;
let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
const dirs = "test/fixtures/eyes-workflows";

beforeAll(async () => {
  database = await createTestDatabase("traces");
  receiver = await startOtlpReceiver();
});

afterAll(async () => {
  await receiver?.close();
  await database?.drop();
});

describe("OpenTelemetry traces", () => {
  test("off unless an OTLP endpoint is set", () => {
    assert.equal(loadConfig({}).tracing, undefined);
    assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_SDK_DISABLED: "true" }).tracing, undefined);
    assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_TRACES_EXPORTER: "none" }).tracing, undefined);
    assert.deepEqual(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318/" }).tracing, { url: "http://x:4318/v1/traces", serviceName: "cairn" });
    assert.deepEqual(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://y/t", OTEL_SERVICE_NAME: "eng" }).tracing, { url: "http://y/t", serviceName: "eng" });
  });

  test("one trace links the caller, CreateRun, the run's activations and steps, and its child run", async () => {
    // Workflow code on threads, as in a server process: the step spans are made on the main thread from the thread's messages.
    const { server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: dirs, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: "50", CAIRN_WORKFLOW_THREADS: "2" });
    let closed = false;
    try {
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const callerSpanId = "00f067aa0ba902b7";
      const client = createClient(
        WorkflowService,
        createConnectTransport({
          baseUrl: server.url,
          httpVersion: "1.1",
          interceptors: [(next) => (request) => (request.header.set("traceparent", `00-${traceId}-${callerSpanId}-01`), next(request))],
        }),
      );
      const { run } = await client.createRun({ workflowName: "parent", input: valueFromJson({ n: 2 }) });
      assert.equal((await waitForEnd(client, run!.runId)).status, RunStatus.COMPLETED);
      await server.close(); // flushes the batch
      closed = true;

      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      const parentOf = (span: ReceivedSpan) => (span.parentSpanId ? byId.get(span.parentSpanId) : undefined);
      const named = (name: string) => spans.filter((s) => s.name === name);

      const [createRun] = named("cairn.v1.WorkflowService/CreateRun");
      assert.ok(createRun, `no CreateRun span in ${spans.map((s) => s.name).join(", ")}`);
      assert.equal(createRun.parentSpanId, callerSpanId, "CreateRun continues the caller's span");
      assert.equal(createRun.serviceName, "cairn");

      const parentActivations = named("activation parent");
      assert.ok(parentActivations.length >= 1, "the parent's activations (one, or more when it parked on its child)");
      for (const activation of parentActivations) {
        assert.equal(activation.parentSpanId, createRun.spanId);
        assert.equal(activation.attributes["cairn.run_id"], run!.runId);
      }
      const [double] = named("step double");
      assert.ok(parentActivations.some((a) => a.spanId === double?.parentSpanId), "the step is a child of an activation");
      assert.equal(double?.attributes["cairn.step.outcome"], "completed");

      const [childActivation] = named("activation flaky");
      assert.ok(childActivation, "the child run's activation is in the same trace");
      assert.ok(parentActivations.some((a) => a.spanId === childActivation.parentSpanId), "under the parent's activation that started it");
      const [wobbly] = named("step wobbly");
      assert.equal(parentOf(wobbly!)?.spanId, childActivation.spanId);
      assert.notEqual(childActivation.attributes["cairn.run_id"], run!.runId);
    } finally {
      if (!closed) await server.close();
    }
  });

  test("an agent turn carries the trace to the worker", async () => {
    const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: dirs, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    try {
      const agents = createClient(AgentService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      const { run } = await client.createRun({ workflowName: "asker", input: valueFromJson({ question: "why?" }) });
      let turns: AgentTurn[] = [];
      for (let i = 0; i < 50 && turns.length === 0; i++) turns = (await agents.pollTurns({ agents: ["oracle"], workerId: "w", maxTurns: 1, waitSeconds: 1 })).turns;
      const [turn] = turns;
      assert.ok(turn, "a turn was offered");
      await agents.completeTurn({ turnId: turn.turnId, leaseToken: turn.leaseToken, result: valueFromJson("because") });
      assert.equal((await waitForEnd(client, run!.runId)).status, RunStatus.COMPLETED);
      await server.close();
      const [, traceId, parentSpanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(turn.traceparent) ?? [];
      assert.ok(traceId, `traceparent ${JSON.stringify(turn.traceparent)}`);
      const activation = receiver.spans.find((s) => s.spanId === parentSpanId);
      assert.equal(activation?.name, "activation asker");
      assert.equal(activation?.traceId, traceId);
      assert.equal(activation?.attributes["cairn.run_id"], run!.runId);
    } finally {
      await server.close();
    }
  });

  test("failed attempts are error spans; a run created without traceparent starts its own trace", async () => {
    const before = receiver.spans.length;
    const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: dirs, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces` });
    const { run } = await client.createRun({ workflowName: "flaky", input: valueFromJson({ failures: 1 }) });
    await waitForEnd(client, run!.runId);
    await server.close();
    const spans = receiver.spans.slice(before);
    const createRun = spans.find((s) => s.name === "cairn.v1.WorkflowService/CreateRun");
    assert.ok(createRun && !createRun.parentSpanId, "a root span");
    const attempts = spans.filter((s) => s.name === "step wobbly").sort((a, b) => Number(a.attributes["cairn.step.attempt"]) - Number(b.attributes["cairn.step.attempt"]));
    assert.deepEqual(attempts.map((s) => [s.attributes["cairn.step.outcome"], s.statusCode, s.traceId]), [
      ["retrying", 2, createRun.traceId],
      ["completed", 0, createRun.traceId],
    ]);
  });

  test("tracing off: nothing is sent", async () => {
    const requests = receiver.requests();
    const { server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: dirs });
    assert.equal((server as CairnServer & { tracing?: unknown }).tracing, undefined);
    const { run } = await client.createRun({ workflowName: "flaky", input: valueFromJson({ failures: 0 }) });
    await waitForEnd(client, run!.runId);
    await server.close();
    assert.equal(receiver.requests(), requests);
  });
});
