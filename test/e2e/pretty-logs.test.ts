/**
 * A server whose stdout is a terminal logs readable lines: started under a real pseudo-terminal (util-linux
 * `script`), with LOG_FORMAT unset, it prints `HH:MM:SS LEVEL message  key=value` in colour, and a failed run
 * shows up as a WARN line with its error.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { afterAll, beforeAll, test } from "vitest";
import { repoRoot } from "../support/processes.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase("pretty");
});
afterAll(async () => {
  await database?.drop();
});

const plain = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "").replace(/\r/g, "");

test("on a terminal the server logs readable lines, and a failed run as a WARN with its error", async () => {
  const env: Record<string, string | undefined> = { ...process.env, PORT: "0", HOST: "127.0.0.1", CAIRN_AUTH: "open", DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/eyes-workflows" };
  delete env.LOG_FORMAT;
  const child = spawn("script", ["-qec", "node --import tsx server/main.ts", "/dev/null"], { cwd: repoRoot, env, stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const until = async (pattern: RegExp, what: string) => {
    for (let i = 0; i < 300; i++) {
      const match = pattern.exec(plain(output));
      if (match) return match;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`no ${what} in:\n${output}`);
  };
  try {
    const [, url] = await until(/INFO  cairn server listening\s+url=(\S+)/, "listening line");
    assert.match(output, /\u001b\[32mINFO/, "coloured on a terminal");
    assert.doesNotMatch(output, /\{"level":/, "no JSON lines");
    const response = await fetch(`${url}/cairn.v1.WorkflowService/CreateRun`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ workflowName: "flaky", input: { failures: 0, fatal: true } }),
    });
    assert.equal(response.status, 200);
    const [line] = await until(/^\d\d:\d\d:\d\d WARN  run failed .*$/m, "run failed line");
    assert.match(line, /workflow=flaky/);
    assert.match(line, /error=\{"name":"TypeError","message":"no way through"/);
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }
});
