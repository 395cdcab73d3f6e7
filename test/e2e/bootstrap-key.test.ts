// A keys-mode server on the embedded store with no key yet writes an admin key to a 0600 file in
// its data folder and logs where, so the first key needs no stop of the server; a restart with a
// key in the store writes none.
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll as after, test } from "vitest";
import { CairnError, Code, createCairnClient } from "../../sdk/index.js";
import { startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

const dataDir = mkdtempSync(join(tmpdir(), "cairn-bootstrap-"));
chmodSync(dataDir, 0o755);

after(async () => {
  await stopAllServerProcesses();
  rmSync(dataDir, { recursive: true, force: true });
});

function start(name: string) {
  return startServerProcess({
    databaseUrl: "",
    workflowDirs: "test/fixtures/service-workflows",
    env: { CAIRN_AUTH: "keys", CAIRN_DATA_DIR: dataDir },
    name,
    startTimeoutMs: 120_000,
  });
}

test("the first admin key of an embedded keys-mode server is in a 0600 file, and it works", async () => {
  const server = await start("bootstrap");
  const file = join(dataDir, "bootstrap-admin-key");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const key = readFileSync(file, "utf8").trim();
  const notice = server.logRecords().find((record) => record.file === file);
  assert.equal(notice?.level, 40);

  const workflows = await createCairnClient({ baseUrl: server.url, apiKey: key, retry: false }).listWorkflows();
  assert.ok(workflows.some((workflow) => workflow.name === "echo"));
  await assert.rejects(createCairnClient({ baseUrl: server.url, retry: false }).listWorkflows(), (error: unknown) => {
    assert.ok(error instanceof CairnError);
    assert.equal(error.code, Code.Unauthenticated);
    return true;
  });

  // A key exists now: a restart writes no new file.
  server.kill("SIGTERM");
  await server.exited;
  rmSync(file);
  const again = await start("restart");
  assert.equal(existsSync(file), false);
  assert.ok(!again.logRecords().some((record) => record.file === file));
});
