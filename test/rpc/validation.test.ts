// Request validation (buf.validate rules checked by protovalidate), size limits and page-size caps: what the
// services decide, called through a router transport (no socket) on PostgreSQL. Protocol-level client errors
// and call deadlines, which need HTTP, are in test/e2e/protocol-errors.test.ts.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, test } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate as packageValidateFile } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { file_buf_validate_validate as vendoredValidateFile, ViolationsSchema } from "../../sdk/gen/buf/validate/validate_pb.js";
import type { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { RunStatus, type WaitKind } from "../../sdk/gen/cairn/v1/types_pb.js";
import { ConfigError, loadConfig } from "../../server/config.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { testLimits } from "../support/limits.js";
import { createTestDatabase } from "../support/postgres.js";
import { type RouterServices, startRouterServices } from "../support/router-services.js";

let services: RouterServices;
let client: WorkflowClient;
let agents: Client<typeof AgentService>;
let dropDatabase: () => Promise<void>;

const limits = testLimits;

beforeAll(async () => {
  const database = await createTestDatabase("validation");
  dropDatabase = database.drop;
  services = await startRouterServices({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: ["test/fixtures/service-workflows", "test/fixtures/limit-workflows"].join(":"),
    ...limits,
  });
  ({ client, agents } = services);
});

afterAll(async () => {
  await services?.close();
  await dropDatabase?.();
});

async function rejects(call: Promise<unknown>, code: Code, message: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code], error.message);
    assert.match(error.rawMessage, message);
    caught = error;
    return true;
  });
  return caught as ConnectError;
}

const uuid = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

describe("proto rules (protovalidate)", () => {
  test("the vendored validate.proto is the version @bufbuild/protovalidate embeds", () => {
    assert.deepEqual(vendoredValidateFile.proto, packageValidateFile.proto);
    assert.match(readFileSync("proto/buf/validate/validate.proto", "utf8"), /^\/\/ Copyright \d{4}-\d{4} Buf Technologies, Inc\.\n\/\/\n\/\/ Licensed under the Apache License/);
  });

  test("every violation is listed with its field path and rule, and attached as buf.validate.Violations", async () => {
    const error = await rejects(
      client.createRun({ workflowName: "", idempotencyKey: "k".repeat(300), metadata: { "": "v" } }),
      Code.InvalidArgument,
      /^invalid cairn\.v1\.CreateRunRequest: workflow_name: value is required \[required\]; idempotency_key: must be at most 256 characters \[string\.max_len\]; metadata\[""\]: must be at least 1 characters \[string\.min_len\]$/,
    );
    const [violations] = error.findDetails(ViolationsSchema);
    assert.deepEqual(
      violations?.violations.map((v) => v.ruleId),
      ["required", "string.max_len", "string.min_len"],
    );
    assert.deepEqual(
      violations?.violations.map((v) => v.field?.elements.map((e) => e.fieldName).join(".")),
      ["workflow_name", "idempotency_key", "metadata"],
    );
  });

  test("ids, event keys, enums, ranges and timestamps", async () => {
    await rejects(client.getRun({ runId: "42" }), Code.InvalidArgument, /run_id: must be a valid UUID, got "42" \[string\.uuid\]/);
    await rejects(client.sendEvent({ eventType: "  " }), Code.InvalidArgument, /event_type: must contain a non-whitespace character .*\[event_type\.not_blank\]/);
    await rejects(client.sendEvent({ eventType: "e", correlationId: "c".repeat(513) }), Code.InvalidArgument, /correlation_id: must be at most 512 characters/);
    await rejects(client.sendEvent({ eventType: "e", runId: "nope" }), Code.InvalidArgument, /run_id: must be a valid UUID, got "nope"/);
    await rejects(
      client.listRuns({ statuses: [RunStatus.UNSPECIFIED, 42 as RunStatus], pageSize: -1, waitingFor: 9 as WaitKind }),
      Code.InvalidArgument,
      /statuses\[0\]: must be a run status such as RUN_STATUS_WAITING, not RUN_STATUS_UNSPECIFIED \[statuses\.specified\]; statuses\[1\]: value must be one of the defined enum values \[enum\.defined_only\]; page_size: must be greater than or equal to 0, got -1 \[int32\.gte\]; waiting_for: .*got 9 \[enum\.defined_only\]/,
    );
    await rejects(
      client.listRuns({ createdAfter: { seconds: 999_999_999_999n, nanos: 0 } }),
      Code.InvalidArgument,
      /created_after: must be greater than or equal to 0001-01-01T00:00:00Z and less than or equal to 9999-12-31T23:59:59Z/,
    );
    await rejects(client.getRunHistory({ runId: uuid, afterSequence: -1n }), Code.InvalidArgument, /after_sequence: must be greater than or equal to 0, got -1/);
    await rejects(agents.pollTurns({ agents: [] }), Code.InvalidArgument, /agents: must contain at least 1 item\(s\) \[repeated\.min_items\]/);
    await rejects(agents.pollTurns({ agents: [""] }), Code.InvalidArgument, /agents\[0\]: must be at least 1 characters/);
  });

  test("a lease token that is not a UUID is INVALID_ARGUMENT (it used to reach PostgreSQL and be INTERNAL)", async () => {
    await rejects(agents.heartbeatTurn({ turnId: uuid, leaseToken: "stale" }), Code.InvalidArgument, /lease_token: must be a valid UUID, got "stale"/);
    await rejects(agents.completeTurn({ turnId: uuid, leaseToken: "" }), Code.InvalidArgument, /lease_token: value is empty/);
    await rejects(agents.failTurn({ turnId: uuid, leaseToken: "x" }), Code.InvalidArgument, /lease_token/);
  });

  test("a CompleteTurn result that carries no JSON is INVALID_ARGUMENT (it used to be INTERNAL)", async () => {
    await rejects(agents.completeTurn({ turnId: uuid, leaseToken: uuid, result: create(ValueSchema, {}) }), Code.InvalidArgument, /result is not a JSON value/);
  });

  test("an after_sequence beyond any sequence is an empty page, not a database error (fuzz finding: INTERNAL)", async () => {
    const { run } = await client.createRun({ workflowName: "echo", input: valueFromJson({ value: 1 }), eagerStart: true });
    await waitForEnd(client, run?.runId ?? "");
    const history = await client.getRunHistory({ runId: run?.runId ?? "", afterSequence: 2n ** 53n });
    assert.deepEqual(history.entries, []);
    assert.equal(history.hasMore, false);
    const updates = [];
    for await (const update of client.watchRun({ runId: run?.runId ?? "", afterSequence: 2n ** 62n })) updates.push(update.update.case);
    assert.deepEqual(updates, ["run"]);
  });

  test("a forged page token with a date out of range is INVALID_ARGUMENT (fuzz finding: INTERNAL)", async () => {
    for (const c of ["0000-01-01T00:00:00Z", "-271821-04-20T00:00:00.000Z", "+275760-09-13T00:00:00.000Z"]) {
      const pageToken = Buffer.from(JSON.stringify({ c, i: uuid })).toString("base64url");
      await rejects(client.listRuns({ pageToken }), Code.InvalidArgument, /page_token is not one this server issued/);
    }
  });

  test("streams are validated too", async () => {
    const watch = client.watchRun({ runId: "x" });
    await rejects((async () => { for await (const _ of watch) break; })(), Code.InvalidArgument, /run_id: must be a valid UUID/);
  });
});

describe("size limits", () => {
  test("a step result over CAIRN_MAX_STEP_RESULT_BYTES fails the step at once, and the handler can catch it", async () => {
    const { run } = await client.createRun({ workflowName: "big_step", input: valueFromJson({ size: 3000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.equal(done.status, RunStatus.COMPLETED);
    assert.deepEqual(valueToJson(done.output ?? create(ValueSchema)), {
      caught: "PayloadTooLargeError",
      message: 'step "produce" result is 3023 bytes, over the limit of 2048 bytes (CAIRN_MAX_STEP_RESULT_BYTES)',
      attempts: 1,
    });
    const small = await client.createRun({ workflowName: "big_step", input: valueFromJson({ size: 100 }), eagerStart: true });
    assert.deepEqual(valueToJson((await waitForEnd(client, small.run?.runId ?? "")).output ?? create(ValueSchema)), { ok: true });
  });

  test("a run output over CAIRN_MAX_STEP_RESULT_BYTES fails the run, naming the limit", async () => {
    const { run } = await client.createRun({ workflowName: "big_output", input: valueFromJson({ size: 3000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.equal(done.status, RunStatus.FAILED);
    assert.equal(done.error?.name, "PayloadTooLargeError");
    assert.match(done.error?.message ?? "", /^the workflow's return value is \d+ bytes, over the limit of 2048 bytes \(CAIRN_MAX_STEP_RESULT_BYTES\)$/);
  });

  test("a child input over CAIRN_MAX_INPUT_BYTES makes startWorkflow reject like CreateRun would", async () => {
    const { run } = await client.createRun({ workflowName: "big_child", input: valueFromJson({ size: 5000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.deepEqual(valueToJson(done.output ?? create(ValueSchema)), {
      caught: "PayloadTooLargeError",
      message: "the child's input is 5011 bytes, over the limit of 4096 bytes (CAIRN_MAX_INPUT_BYTES)",
    });
    const fits = await client.createRun({ workflowName: "big_child", input: valueFromJson({ size: 100 }), eagerStart: true });
    assert.deepEqual(valueToJson((await waitForEnd(client, fits.run?.runId ?? "")).output ?? create(ValueSchema)), { length: 100 });
  });

  test("an agent request over CAIRN_MAX_INPUT_BYTES fails the run, naming the limit", async () => {
    const { run } = await client.createRun({ workflowName: "sized_agent", input: valueFromJson({ size: 5000 }), eagerStart: true });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.equal(done.status, RunStatus.FAILED);
    assert.match(done.error?.message ?? "", /the agent request is \d+ bytes, over the limit of 4096 bytes \(CAIRN_MAX_INPUT_BYTES\)/);
  });

  test("agent results have their own limit, CAIRN_MAX_AGENT_RESULT_BYTES", async () => {
    const { run } = await client.createRun({ workflowName: "sized_agent", input: valueFromJson({ size: 0 }), eagerStart: true });
    const { turns } = await agents.pollTurns({ agents: ["limits"], waitSeconds: 10 });
    const turn = turns[0];
    assert.ok(turn);
    await rejects(
      agents.completeTurn({ turnId: turn.turnId, leaseToken: turn.leaseToken, result: valueFromJson({ text: "y".repeat(9000) }) }),
      Code.InvalidArgument,
      /^result is 9011 bytes, over the limit of 8192 bytes \(CAIRN_MAX_AGENT_RESULT_BYTES\)$/,
    );
    // Larger than the input limit (4096) but within its own: accepted.
    await agents.completeTurn({ turnId: turn.turnId, leaseToken: turn.leaseToken, result: valueFromJson({ text: "y".repeat(6000) }) });
    const done = await waitForEnd(client, run?.runId ?? "");
    assert.deepEqual(valueToJson(done.output ?? create(ValueSchema)), { answerLength: 6011 });
  });

  test("CAIRN_MAX_EVENT_BYTES above the input limit takes effect: the request cap follows the largest limit", async () => {
    const sent = await client.sendEvent({ eventType: "big", correlationId: "k", payload: valueFromJson({ data: "z".repeat(250_000) }) });
    assert.ok(sent.eventId);
    await rejects(
      client.sendEvent({ eventType: "big", payload: valueFromJson({ data: "z".repeat(300_000) }) }),
      Code.InvalidArgument,
      /payload is \d+ bytes, over the limit of 300000 bytes \(CAIRN_MAX_EVENT_BYTES\)/,
    );
  });

  test("CAIRN_MAX_REQUEST_BYTES: derived from the largest payload limit; an explicit value must leave room for it", () => {
    assert.equal(loadConfig({}).maxRequestBytes, 2 * 1024 * 1024 + 64 * 1024);
    assert.equal(loadConfig({ CAIRN_MAX_EVENT_BYTES: String(4 * 1024 * 1024) }).maxRequestBytes, 8 * 1024 * 1024 + 64 * 1024);
    assert.equal(loadConfig({ CAIRN_MAX_REQUEST_BYTES: "5000000" }).maxRequestBytes, 5_000_000);
    assert.throws(
      () => loadConfig({ CAIRN_MAX_EVENT_BYTES: "2000000", CAIRN_MAX_REQUEST_BYTES: "1000000" }),
      (error: unknown) => error instanceof ConfigError && /CAIRN_MAX_REQUEST_BYTES=1000000 is below CAIRN_MAX_EVENT_BYTES=2000000/.test(error.message),
    );
  });
});

describe("page-size caps", () => {
  test("ListRuns and GetRunHistory cap page_size at their settings and page on", async () => {
    for (let i = 0; i < 4; i++) await client.createRun({ workflowName: "echo", input: valueFromJson({ value: i }) });
    const first = await client.listRuns({ workflowName: "echo", pageSize: 100 });
    assert.equal(first.runs.length, 3);
    assert.ok(first.nextPageToken);
    // child_started, child_completed, run_completed: three entries.
    const { run } = await client.createRun({ workflowName: "big_child", input: valueFromJson({ size: 10 }), eagerStart: true });
    await waitForEnd(client, run?.runId ?? "");
    const history = await client.getRunHistory({ runId: run?.runId ?? "", pageSize: 100 });
    assert.equal(history.entries.length, 2);
    assert.equal(history.hasMore, true);
  });
});
