/**
 * Logs an operator needs: failed step attempts, failed steps and failed runs at warn level with their
 * errors, from a real server on PostgreSQL; and the readable format for a terminal (LOG_FORMAT=pretty).
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, test } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { type CairnServer, startServer } from "../../server/app.js";
import { logFormat, prettyDestination } from "../../server/log-pretty.js";
import { valueFromJson } from "../../server/rpc/convert.js";
import { testConfig, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

let database: TestDatabase;
let server: CairnServer;
let client: WorkflowClient;
const records: Record<string, unknown>[] = [];

beforeAll(async () => {
  database = await createTestDatabase("logs");
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: "info" }, sink);
  // With a workflow thread, as the server runs by default: a run's last entry can then ride on its end (its log too).
  server = await startServer(testConfig({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/eyes-workflows", CAIRN_WORKFLOW_THREADS: "1" }), logger);
  client = createClient(WorkflowService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
});

afterAll(async () => {
  await server?.close();
  await database?.drop();
});

const WARN = 40;
const warnings = (runId: string) => records.filter((r) => r.runId === runId && r.level === WARN);

describe("warn-level logs", () => {
  test("a failed attempt, a failed step and the failed run each log a warning with the error", async () => {
    const { run } = await client.createRun({ workflowName: "flaky", input: valueFromJson({ failures: 1, fatal: true }) });
    const ended = await waitForEnd(client, run!.runId);
    assert.equal(ended.status, RunStatus.FAILED);
    const seen = warnings(run!.runId);
    const attempt = seen.find((r) => r.msg === "step attempt failed; will retry");
    assert.ok(attempt, `no attempt warning in ${JSON.stringify(seen)}`);
    assert.equal(attempt.step, "wobbly");
    assert.equal(attempt.attempt, 1);
    assert.equal((attempt.error as { message: string }).message, "wobble 1");
    const step = seen.find((r) => r.msg === "step failed");
    assert.equal(step?.step, "doomed");
    assert.equal((step?.error as { name: string }).name, "TypeError");
    const failed = seen.find((r) => r.msg === "run failed");
    assert.equal(failed?.workflow, "flaky");
    assert.equal((failed?.error as { message: string }).message, "no way through");
  });

  test("a run that completes after a retry logs its attempt, and its end at info", async () => {
    const { run } = await client.createRun({ workflowName: "flaky", input: valueFromJson({ failures: 2 }) });
    assert.equal((await waitForEnd(client, run!.runId)).status, RunStatus.COMPLETED);
    assert.deepEqual(warnings(run!.runId).map((r) => r.attempt), [1, 2]);
    assert.equal(records.find((r) => r.runId === run!.runId && r.msg === "run finished")?.level, 30);
  });
});

describe("readable logs", () => {
  test("LOG_FORMAT picks the format; unset, a terminal gets pretty and a pipe JSON", () => {
    assert.equal(logFormat("pretty", false), "pretty");
    assert.equal(logFormat(undefined, true), "pretty");
    assert.equal(logFormat(undefined, false), "json");
    assert.equal(logFormat("json", true), "json");
    assert.throws(() => logFormat("xml", true), /LOG_FORMAT must be json or pretty/);
  });

  test("a failed run's warning becomes one readable line with its fields, the stack below", () => {
    let out = "";
    const sink = Object.assign(new Writable({ write: (chunk: Buffer, _e, done) => ((out += chunk.toString()), done()) }), { isTTY: false });
    const logger = pino({ level: "info", base: { service: "cairn", pid: 1 } }, prettyDestination(sink));
    logger.warn({ runId: "r-1", workflow: "flaky", err: new Error("no way through") }, "run failed");
    const [line, ...rest] = out.trimEnd().split("\n");
    assert.match(line!, /^\d\d:\d\d:\d\d WARN {2}run failed {2}runId=r-1 workflow=flaky$/);
    assert.match(rest[0]!, /^ {4}Error: no way through$/);
    assert.doesNotMatch(out, /\u001b\[/, "no colour when not a terminal");
  });
});
