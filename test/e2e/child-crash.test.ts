// A parent's process dies between creating a child run and journaling that it
// did: the journal table is held locked so the parent's write cannot land,
// the child row is seen to exist, the process is SIGKILLed, and a second
// process resumes the parent. Exactly one child exists and the parent completes.
import assert from "node:assert/strict";
import { afterAll, test } from "vitest";
import pg from "pg";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { createWorkflowClient, fastLeaseEnv, startServerProcess, stopAllServerProcesses, waitFor, waitForRun } from "../support/server-process.js";

afterAll(() => stopAllServerProcesses());

test("crash between child creation and the parent's journal write: one child, parent completes", async () => {
  const database = await createTestDatabase("child_crash");
  const workflowDirs = "test/fixtures/child-workflows";
  try {
    const first = await startServerProcess({ databaseUrl: database.url, workflowDirs, env: fastLeaseEnv, name: "first" });
    const blocker = new pg.Client({ connectionString: database.url });
    await blocker.connect();
    await blocker.query("begin");
    // Inserts into the journal wait for this lock; creating the child run does not.
    await blocker.query("lock table journal_entries in share mode");
    let parentRunId = "";
    try {
      const { run } = await createWorkflowClient(first.url).createRun({ workflowName: "fan_out", input: valueFromJson({ count: 1 }), eagerStart: true });
      parentRunId = run?.runId ?? "";
      await waitFor(
        () => withClient(database.url, async (c) => ((await c.query("select 1 from runs where parent_run_id = $1", [parentRunId])).rowCount ? true : undefined)),
        10_000,
        () => "the child run to be created",
      );
      first.kill("SIGKILL");
      await first.exited;
      // The dead process's journal INSERT is still queued on the lock in its server backend, and would commit
      // once the lock goes: end those backends too, as a crashed machine would.
      await withClient(database.url, (c) =>
        c.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"),
      );
    } finally {
      await blocker.query("rollback");
      await blocker.end();
    }
    const journaled = await withClient(database.url, async (c) => (await c.query("select count(*)::int as n from journal_entries where run_id = $1", [parentRunId])).rows[0].n as number);
    assert.equal(journaled, 0, "the parent never journaled the child's creation");

    const second = await startServerProcess({ databaseUrl: database.url, workflowDirs, env: fastLeaseEnv, name: "second" });
    const parent = await waitForRun(createWorkflowClient(second.url), parentRunId, [RunStatus.COMPLETED, RunStatus.FAILED], 20_000);
    assert.equal(parent.status, RunStatus.COMPLETED);
    assert.deepEqual(valueToJson(parent.output ?? valueFromJson(null)), { sum: 0 });
    const children = await withClient(database.url, async (c) => (await c.query("select id, status from runs where parent_run_id = $1", [parentRunId])).rows);
    assert.equal(children.length, 1, "exactly one child");
    assert.equal(children[0]?.status, "completed");
  } finally {
    await stopAllServerProcesses();
    await database.drop();
  }
});
