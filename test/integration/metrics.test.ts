/**
 * GET /metrics on a real server over PostgreSQL, read with a Prometheus text-format parser: counters move as
 * runs run (creates, ends, step attempts, activations, children, events, RPCs by method and code), step
 * durations fall in buckets from 1 ms to 1 h, no label carries a run id, and keys mode asks for an admin key
 * on the main port but not on CAIRN_METRICS_PORT.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, test } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { insertApiKey } from "../../server/runs/api-keys.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { freePort } from "../support/postgres.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { scrape, valueOf } from "../support/prometheus-text.js";

let database: TestDatabase;
let server: CairnServer;
let client: WorkflowClient;
const dirs = "test/fixtures/eyes-workflows";

beforeAll(async () => {
  database = await createTestDatabase("metrics");
  // Workflow code on threads, as in a server process: step attempts are counted from the thread's messages.
  ({ server, client } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: dirs, CAIRN_WORKFLOW_THREADS: "2" }));
});

afterAll(async () => {
  await server?.close();
  await database?.drop();
});

describe("GET /metrics", () => {
  test("counters move as runs run", async () => {
    const before = await scrape(`${server.url}/metrics`);
    // (The text parser cannot read a labelled histogram's count: read the instrument itself.)
    const timed = async (outcome: string) =>
      (await server.metrics.stepDuration.get()).values.find((v) => v.metricName === "cairn_step_attempt_duration_seconds_count" && v.labels.workflow === "flaky" && v.labels.outcome === outcome)?.value ?? 0;
    const timedBefore = { retrying: await timed("retrying"), completed: await timed("completed") };
    const created = (workflow: string, origin = "api") => ({ workflow, origin });

    const ok = await client.createRun({ workflowName: "flaky", input: valueFromJson({ failures: 2 }) });
    const bad = await client.createRun({ workflowName: "flaky", input: valueFromJson({ failures: 0, fatal: true }) });
    const family = await client.createRun({ workflowName: "parent", input: valueFromJson({ n: 4 }) });
    for (const { run } of [ok, bad, family]) await waitForEnd(client, run!.runId);
    assert.equal((await client.getRun({ runId: bad.run!.runId })).run?.status, RunStatus.FAILED);
    await assert.rejects(client.getRun({ runId: "00000000-0000-4000-8000-000000000000" }), (e) => ConnectError.from(e).code === Code.NotFound);
    await client.sendEvent({ eventType: "nobody", correlationId: "waits", payload: valueFromJson({}) });

    const after = await scrape(`${server.url}/metrics`);
    const moved = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    assert.equal(moved("cairn_runs_created_total", created("flaky")), 2);
    assert.equal(moved("cairn_runs_created_total", created("parent")), 1);
    assert.equal(moved("cairn_runs_created_total", created("flaky", "child")), 1);
    assert.equal(moved("cairn_runs_ended_total", { workflow: "flaky", status: "completed" }), 2);
    assert.equal(moved("cairn_runs_ended_total", { workflow: "flaky", status: "failed" }), 1);
    assert.equal(moved("cairn_runs_ended_total", { workflow: "parent", status: "completed" }), 1);
    // ok: 2 retried attempts and 1 that completed; bad: wobbly completes, doomed fails; the child: 1 completed.
    assert.equal(moved("cairn_step_attempts_total", { workflow: "flaky", outcome: "retrying" }), 2);
    assert.equal(moved("cairn_step_attempts_total", { workflow: "flaky", outcome: "completed" }), 3);
    assert.equal(moved("cairn_step_attempts_total", { workflow: "flaky", outcome: "failed" }), 1);
    // Each timed too (the threads tally ended attempts, with their durations, for the main thread to count).
    assert.equal((await timed("retrying")) - timedBefore.retrying, 2);
    assert.equal((await timed("completed")) - timedBefore.completed, 3);
    // The parent may park on its child (when the child is not done at its quiet point), then completes once.
    assert.equal(moved("cairn_activations_total", { workflow: "parent", outcome: "completed" }), 1);
    assert.equal(moved("cairn_activations_total", { workflow: "flaky", outcome: "failed" }), 1);
    assert.ok(moved("cairn_claim_latency_seconds") >= 3, "queued runs were claimed");
    assert.equal(moved("cairn_events_sent_total"), 1);
    assert.equal(moved("cairn_rpc_requests_total", { method: "cairn.v1.WorkflowService/CreateRun", code: "ok" }), 3);
    assert.equal(moved("cairn_rpc_requests_total", { method: "cairn.v1.WorkflowService/GetRun", code: "not_found" }), 1);
    assert.ok(valueOf(after, "cairn_db_pool_connections", { state: "total" }) >= 1);
    assert.ok(after.has("nodejs_eventloop_lag_seconds"), "event-loop health");
    assert.equal(after.get("cairn_runs_queued")?.type, "GAUGE");
  });

  test("step duration buckets span 1 ms to 1 h; no label holds a run id", async () => {
    const metrics = await scrape(`${server.url}/metrics`);
    const histogram = metrics.get("cairn_step_attempt_duration_seconds");
    assert.equal(histogram?.type, "HISTOGRAM");
    const bounds = Object.keys(histogram!.metrics[0]!.buckets!).filter((b) => b !== "+Inf").map(Number);
    assert.equal(Math.min(...bounds), 0.001);
    assert.equal(Math.max(...bounds), 3600);
    // The steps above took well under a second: counted in the low buckets, not only in +Inf.
    assert.ok(Number(histogram!.metrics[0]!.buckets!["1"]) > 0);
    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-/;
    for (const family of metrics.values()) {
      for (const sample of family.metrics) {
        for (const [label, value] of Object.entries(sample.labels ?? {})) assert.doesNotMatch(value, uuid, `${family.name}{${label}}`);
      }
    }
  });

  test("the queue gauges read the database", async () => {
    // A run of a workflow no process loaded stays queued and due: the oldest due run ages.
    await server.database.db.execute(
      sql`insert into runs (id, namespace, workflow_name, status, input, metadata, available_at, created_at, updated_at)
          values (gen_random_uuid(), 'default', 'nobody_loads_this', 'queued', '{}', '{}', now() - interval '5 seconds', now(), now())`,
    );
    const metrics = await scrape(`${server.url}/metrics`);
    assert.ok(valueOf(metrics, "cairn_runs_queued") >= 1);
    assert.ok(valueOf(metrics, "cairn_queue_oldest_due_seconds") >= 5);
  });
});

describe("keys mode", () => {
  let keyed: CairnServer;
  let metricsPort: number;
  beforeAll(async () => {
    metricsPort = await freePort();
    ({ server: keyed } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: dirs, CAIRN_AUTH: "keys", CAIRN_METRICS_PORT: String(metricsPort) }));
  });
  afterAll(async () => {
    await keyed?.close();
  });

  async function newKey(role: "admin" | "client"): Promise<string> {
    const generated = generateApiKey();
    await insertApiKey(keyed.database.db, { id: generated.id, namespace: "default", role, secretHash: generated.secretHash, name: `metrics ${role}` });
    return generated.key;
  }

  test("the main port wants an admin key; CAIRN_METRICS_PORT wants none", async () => {
    const url = `${keyed.url}/metrics`;
    const missing = await fetch(url);
    assert.equal(missing.status, 401);
    assert.match(await missing.text(), /admin API key/);
    assert.equal((await fetch(url, { headers: { authorization: "Bearer cairn_nope_nope" } })).status, 401);
    assert.equal((await fetch(url, { headers: { "x-api-key": await newKey("client") } })).status, 403);
    const admin = await scrape(url, { authorization: `Bearer ${await newKey("admin")}` });
    assert.ok(admin.has("cairn_runs_created_total"));
    assert.equal(keyed.metricsUrl, `http://127.0.0.1:${metricsPort}/metrics`);
    assert.ok((await scrape(keyed.metricsUrl!)).has("cairn_rpc_requests_total"));
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/`)).status, 404);
  });
});
