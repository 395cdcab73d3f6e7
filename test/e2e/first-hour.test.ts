// What a new user meets first: a port in use fails before the store is opened, with the fix; a
// browser preflight with CORS off gets a hint in the log (once per origin); readable log lines.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { Writable } from "node:stream";
import { afterAll as after, beforeAll as before, test } from "vitest";
import { pino } from "pino";
import { prettyDestination, logFormat } from "../../server/log-pretty.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

let database: TestDatabase;
before(async () => {
  database = await createTestDatabase("first-hour");
});
after(async () => {
  await stopAllServerProcesses();
  await database?.drop();
});

test("a port in use stops start-up before the store is opened, naming the port and the fix", async () => {
  const blocker: Server = createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    await assert.rejects(
      startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/service-workflows", env: { PORT: String(port) }, name: "busy-port" }),
      (error: Error) => {
        assert.match(error.message, /exited before listening \(exit code 1\)/);
        assert.match(error.message, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use .*set PORT \\(or --port\\) to a free port`));
        assert.doesNotMatch(error.message, /store ready|loaded workflow/);
        // One line, no stack.
        assert.doesNotMatch(error.message, /\\n\s+at /);
        return true;
      },
    );
  } finally {
    blocker.close();
  }
});

test("a CORS preflight with CORS off logs a hint naming CAIRN_CORS_ORIGINS, once per origin", async () => {
  const server = await startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/service-workflows", name: "cors-hint" });
  const preflight = () =>
    fetch(`${server.url}/cairn.v1.WorkflowService/ListWorkflows`, {
      method: "OPTIONS",
      headers: { origin: "http://localhost:5173", "access-control-request-method": "POST" },
    });
  await preflight();
  await preflight();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const hints = server.logRecords().filter((record) => record.origin === "http://localhost:5173");
  assert.equal(hints.length, 1);
  assert.equal(hints[0]?.level, 40);
  assert.match(String(hints[0]?.msg), /CAIRN_CORS_ORIGINS=http:\/\/localhost:5173/);
});

test("LOG_FORMAT=pretty writes one readable line per record, with an error's stack below it", () => {
  let text = "";
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  const logger = pino({ level: "info", base: { service: "cairn", pid: 1 } }, prettyDestination(out));
  logger.info({ url: "http://127.0.0.1:8080", workflows: ["a"] }, "cairn server listening");
  logger.error({ err: new Error("boom") }, "it failed");
  const [first, second, third] = text.split("\n");
  assert.match(first ?? "", /^\d\d:\d\d:\d\d INFO  cairn server listening {2}url=http:\/\/127\.0\.0\.1:8080 workflows=\["a"\]$/);
  assert.match(second ?? "", /^\d\d:\d\d:\d\d ERROR it failed$/);
  assert.match(third ?? "", /^ {4}Error: boom$/);
  assert.equal(logFormat(undefined, true), "pretty");
  assert.equal(logFormat(undefined, false), "json");
  assert.throws(() => logFormat("yaml", true), /LOG_FORMAT must be json or pretty/);
});
