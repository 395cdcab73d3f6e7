// WorkflowService on real PostgreSQL through a router transport (no socket): every working RPC and its bad
// inputs. Malformed JSON over plain HTTP is in test/e2e/protocol-errors.test.ts.
import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, test } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { EntryKind, RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";
import { type RouterServices, startRouterServices } from "../support/router-services.js";

let services: RouterServices;
let client: WorkflowClient;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase("service");
  dropDatabase = database.drop;
  ({ client } = services = await startRouterServices({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: ["workflows", "test/fixtures/service-workflows"].join(":"),
    CAIRN_MAX_INPUT_BYTES: "2048",
  }));
});

afterAll(async () => {
  await services.close();
  await dropDatabase();
});

async function rejects(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code], error.message);
    assert.match(error.rawMessage, message);
    return true;
  });
}

const order = { orderId: "o-1", items: [{ sku: "tea", quantity: 3 }], amountCents: 1200 };

describe("running workflows", () => {
  test("ListWorkflows names every loaded workflow with its file and schema", async () => {
    const { workflows } = await client.listWorkflows({});
    assert.deepEqual(
      workflows.map((w) => w.name),
      ["document_ingest", "duplicate_step", "echo", "expense_approval", "failing", "nightly_report", "order_fulfillment"],
    );
    const orderWorkflow = workflows.find((w) => w.name === "order_fulfillment");
    assert.match(orderWorkflow?.sourceFile ?? "", /workflows\/order-fulfillment\.ts$/);
    assert.equal(orderWorkflow?.hasInputSchema, true);
    assert.equal(orderWorkflow?.inputSchemaVendor, "zod");
  });

  test("an eager run completes and GetRun and GetRunHistory show what happened", async () => {
    const { run: created } = await client.createRun({ workflowName: "order_fulfillment", input: valueFromJson(order), eagerStart: true });
    assert.ok(created);
    assert.equal(created.status, RunStatus.RUNNING);
    const run = await waitForEnd(client, created.runId);
    assert.equal(run.status, RunStatus.COMPLETED);
    const output = valueToJson(run.output ?? valueFromJson(null)) as Record<string, unknown>;
    assert.equal(output.status, "fulfilled");
    assert.deepEqual(output.shipment, { trackingNumber: "TRK-O-1", carrier: "parcel" });
    assert.ok(run.completedAt && run.startedAt && run.createdAt);
    assert.equal(run.activationCount, 1);

    const { entries, hasMore } = await client.getRunHistory({ runId: run.runId });
    assert.equal(hasMore, false);
    assert.deepEqual(
      entries.map((e) => [Number(e.sequence), EntryKind[e.kind], e.name]),
      [
        [1, "STEP_COMPLETED", "reserve-inventory"],
        [2, "STEP_COMPLETED", "charge-payment"],
        [3, "STEP_COMPLETED", "create-shipment"],
        [4, "RUN_COMPLETED", ""],
      ],
    );
    const page = await client.getRunHistory({ runId: run.runId, afterSequence: 1n, pageSize: 2 });
    assert.deepEqual(page.entries.map((e) => Number(e.sequence)), [2, 3]);
    assert.equal(page.hasMore, true);
  });

  test("a queued run (no eager start) is picked up by the scheduler", async () => {
    const { run } = await client.createRun({ workflowName: "echo", input: valueFromJson({ value: [1, "two"] }) });
    assert.equal(run?.status, RunStatus.QUEUED);
    const finished = await waitForEnd(client, run?.runId ?? "");
    assert.equal(finished.status, RunStatus.COMPLETED);
    assert.deepEqual(valueToJson(finished.output ?? valueFromJson(null)), { echoed: [1, "two"] });
  });

  test("parallel steps all complete and are journaled once each", async () => {
    const { run } = await client.createRun({ workflowName: "document_ingest", input: valueFromJson({ url: "https://example.com/x.pdf" }), eagerStart: true });
    const finished = await waitForEnd(client, run?.runId ?? "");
    assert.equal(finished.status, RunStatus.COMPLETED);
    const { entries } = await client.getRunHistory({ runId: finished.runId });
    const names = entries.map((e) => e.name).filter(Boolean);
    assert.deepEqual([...names].sort(), ["detect-language", "extract-text", "fetch", "index", "render-thumbnail"]);
    assert.deepEqual(entries.map((e) => Number(e.sequence)), [1, 2, 3, 4, 5, 6]);
    // The schema's default (pages: 3) reached the handler.
    assert.equal((valueToJson(finished.output ?? valueFromJson(null)) as { pages: number }).pages, 3);
  });

  test("a failing step fails the run with the step's error, recorded in history", async () => {
    const { run } = await client.createRun({ workflowName: "failing", input: valueFromJson({ reason: "disk full" }), eagerStart: true });
    const finished = await waitForEnd(client, run?.runId ?? "");
    assert.equal(finished.status, RunStatus.FAILED);
    assert.equal(finished.error?.name, "ExplosionError");
    assert.equal(finished.error?.message, "disk full");
    const { entries } = await client.getRunHistory({ runId: finished.runId });
    assert.deepEqual(entries.map((e) => EntryKind[e.kind]), ["STEP_COMPLETED", "STEP_FAILED", "RUN_FAILED"]);
  });

  test("a duplicate step name fails the run with a determinism error naming the step", async () => {
    const { run } = await client.createRun({ workflowName: "duplicate_step", eagerStart: true });
    const finished = await waitForEnd(client, run?.runId ?? "");
    assert.equal(finished.status, RunStatus.FAILED);
    assert.equal(finished.error?.name, "DeterminismError");
    assert.match(finished.error?.message ?? "", /"same" is used twice in workflow "duplicate_step"/);
  });

  test("the same idempotency key returns the first run; a different request with it is refused", async () => {
    const request = { workflowName: "echo", input: valueFromJson({ value: 1, other: { a: 1, b: 2 } }), idempotencyKey: "key-1" };
    const first = await client.createRun(request);
    // Same request with keys in another order: still the same request.
    const second = await client.createRun({ ...request, input: valueFromJson({ other: { b: 2, a: 1 }, value: 1 }) });
    assert.equal(first.deduplicated, false);
    assert.equal(second.deduplicated, true);
    assert.equal(second.run?.runId, first.run?.runId);
    await rejects(client.createRun({ ...request, input: valueFromJson({ value: 2 }) }), Code.AlreadyExists, /key-1.*already used by run/);
    const { runs } = await client.listRuns({ workflowName: "echo", pageSize: 1000 });
    assert.equal(runs.filter((r) => r.idempotencyKey === "key-1").length, 1);
  });
});

describe("listing runs", () => {
  test("filters by workflow and status, pages without gaps or repeats", async () => {
    const created: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { run } = await client.createRun({ workflowName: "echo", input: valueFromJson({ value: i }), metadata: { batch: "paging" } });
      created.push(run?.runId ?? "");
    }
    for (const id of created) await waitForEnd(client, id);
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await client.listRuns({ workflowName: "echo", statuses: [RunStatus.COMPLETED], pageSize: 3, pageToken });
      assert.ok(page.runs.length <= 3);
      for (const run of page.runs) {
        assert.equal(run.workflowName, "echo");
        assert.equal(run.status, RunStatus.COMPLETED);
        seen.push(run.runId);
      }
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    assert.equal(new Set(seen).size, seen.length, "no run appears twice");
    for (const id of created) assert.ok(seen.includes(id), `run ${id} listed`);
    assert.ok(pages >= 3);

    const failed = await client.listRuns({ statuses: [RunStatus.FAILED] });
    assert.ok(failed.runs.length >= 1);
    assert.ok(failed.runs.every((r) => r.status === RunStatus.FAILED));
    const none = await client.listRuns({ workflowName: "echo", createdBefore: { seconds: 1n, nanos: 0 } });
    assert.equal(none.runs.length, 0);
  });

  test("a page token the server did not issue is refused", async () => {
    await rejects(client.listRuns({ pageToken: "garbage" }), Code.InvalidArgument, /page_token is not one this server issued/);
  });
});

describe("bad input gets the right code and an actionable message", () => {
  test("unknown workflow: NOT_FOUND listing known names and WORKFLOW_DIRS", async () => {
    await rejects(
      client.createRun({ workflowName: "nightly_reprot" }),
      Code.NotFound,
      /unknown workflow "nightly_reprot"; known workflows: document_ingest, .*order_fulfillment \(loaded from WORKFLOW_DIRS=.*workflows/,
    );
  });

  test("missing workflow name", async () => {
    await rejects(client.createRun({}), Code.InvalidArgument, /workflow_name: value is required \[required\]/);
  });

  test("schema-invalid input lists every violation", async () => {
    await rejects(
      client.createRun({ workflowName: "order_fulfillment", input: valueFromJson({ orderId: "", items: [{ sku: "x", quantity: -1 }] }) }),
      Code.InvalidArgument,
      /input\.orderId: .*; input\.items\[0\]\.quantity: .*; input\.amountCents: /,
    );
  });

  test("non-object input", async () => {
    await rejects(client.createRun({ workflowName: "echo", input: valueFromJson([1, 2]) }), Code.InvalidArgument, /input must be a JSON object, got an array/);
    await rejects(client.createRun({ workflowName: "echo", input: valueFromJson("text") }), Code.InvalidArgument, /got a string/);
  });

  test("a protobuf Value that carries no JSON is INVALID_ARGUMENT, not INTERNAL", async () => {
    await rejects(client.createRun({ workflowName: "echo", input: create(ValueSchema, {}) }), Code.InvalidArgument, /input is not a JSON value/);
  });

  test("NUL characters, which PostgreSQL text cannot hold, are INVALID_ARGUMENT", async () => {
    await rejects(client.createRun({ workflowName: "echo", input: valueFromJson({ value: "a\u0000b" }) }), Code.InvalidArgument, /cannot contain NUL/);
    await rejects(client.createRun({ workflowName: "echo", idempotencyKey: "k\u0000" }), Code.InvalidArgument, /cannot contain NUL/);
  });

  test("oversized input names the limit and its setting", async () => {
    await rejects(
      client.createRun({ workflowName: "echo", input: valueFromJson({ value: "x".repeat(5000) }) }),
      Code.InvalidArgument,
      /input is \d+ bytes, over the limit of 2048 bytes \(CAIRN_MAX_INPUT_BYTES\)/,
    );
  });

  test("run ids: malformed is INVALID_ARGUMENT, unknown is NOT_FOUND", async () => {
    await rejects(client.getRun({ runId: "not-a-uuid" }), Code.InvalidArgument, /run_id: must be a valid UUID, got "not-a-uuid" \[string\.uuid\]/);
    await rejects(client.getRun({ runId: "" }), Code.InvalidArgument, /run_id: value is empty, which is not a valid UUID/);
    await rejects(client.getRun({ runId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound, /run "00000000-0000-4000-8000-000000000000" not found/);
    await rejects(client.getRunHistory({ runId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound, /not found/);
  });

  test("WatchRun of an unknown run is NOT_FOUND", async () => {
    const stream = client.watchRun({ runId: "00000000-0000-4000-8000-000000000000" });
    await rejects((async () => { for await (const _ of stream) break; })(), Code.NotFound, /not found/);
  });
});
