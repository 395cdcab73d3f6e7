// A child run's end is its own transaction (it wakes the parent), so the entries drawn after its last write (and, from
// a workflow thread, its last step when that came with the end) are journaled first, in a statement of their own.
// Found by the long chaos run: when that statement failed with a store error (a connection cut), the end still
// committed: the run completed with a step executed whose completion the journal never saw, and a gap in the
// sequence. What must hold: the run does not end while those entries are not journaled; it resumes after its lease
// lapses and ends with every entry, in sequence 1..n without a gap. Both where workflow code runs: on the main
// thread, and on a workflow thread (which writes its own journal on PostgreSQL and hands its trailing entries back).
import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import type { CairnServer } from "../../server/app.js";
import { childRunId } from "../../server/core/activation.js";
import { valueFromJson, valueToJson } from "../../server/rpc/convert.js";
import { startTestServer, until, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

describe.each([
  ["on the main thread", "0"],
  ["on a workflow thread", "1"],
])("workflow code %s", (_where, threads) => {
  let server: CairnServer;
  let client: WorkflowClient;
  let url: string;
  let dropDatabase: () => Promise<void>;

  beforeAll(async () => {
    const database = await createTestDatabase(`child_end_store_error_${threads}`);
    url = database.url;
    dropDatabase = database.drop;
    ({ server, client } = await startTestServer({
      DATABASE_URL: database.url,
      WORKFLOW_DIRS: "test/fixtures/child-end-workflows",
      CAIRN_WORKFLOW_THREADS: threads,
      CAIRN_LEASE_MS: "1000",
      CAIRN_POLL_INTERVAL_MS: "100",
    }));
  });

  afterAll(async () => {
    await server.close();
    await dropDatabase();
  });

  const sql = <R>(text: string, values: unknown[] = []) => withClient(url, async (c) => (await c.query(text, values)).rows as R[]);

  test("a child whose pre-end entries fail to journal does not end; it ends later with every entry and no gap", async () => {
    // A real store error, not a fence refusal: a trigger that fails every ctx.now() entry while it stands. The sequence
    // counts the attempts (sequences are not rolled back with the failed statement).
    await sql("create sequence doomed_attempts");
    await sql(`create function fail_now_recorded() returns trigger language plpgsql as $$
      begin
        if new.kind = 'now_recorded' then
          perform nextval('doomed_attempts');
          raise exception 'injected store error for %', new.run_id;
        end if;
        return new;
      end $$`);
    await sql("create trigger fail_now_recorded before insert on journal_entries for each row execute function fail_now_recorded()");

    const { run } = await client.createRun({ workflowName: "stamped_parent", input: valueFromJson({}), eagerStart: true });
    const parent = run?.runId ?? "";
    const child = childRunId(parent, "stamped");
    const attempts = async () => Number((await sql<{ n: string }>("select coalesce((select last_value from doomed_attempts where is_called), 0) as n"))[0]?.n);
    await until(async () => (await attempts()) >= 1, "the child never tried to journal its ctx.now() entry");
    // Give a wrongly committed end the time it would take.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const during = await client.getRun({ runId: child });
    assert.notEqual(during.run?.status, RunStatus.COMPLETED, "the child completed although its pre-end entries were not journaled");
    const ended = await sql("select 1 from journal_entries where run_id = $1 and kind = 'run_completed'", [child]);
    assert.equal(ended.length, 0, "the child's end was journaled without the entries before it");

    await sql("drop trigger fail_now_recorded on journal_entries");
    const finished = await waitForEnd(client, child, 20_000);
    assert.equal(finished.status, RunStatus.COMPLETED, `the child ended ${RunStatus[finished.status]}: ${JSON.stringify(finished.error)}; journal ${JSON.stringify(await sql("select sequence, kind, name, error from journal_entries where run_id = $1 order by sequence", [child]))}`);
    const entries = await sql<{ sequence: number; kind: string }>("select sequence, kind from journal_entries where run_id = $1 order by sequence", [child]);
    assert.deepEqual(entries.map((e) => e.sequence), entries.map((_, i) => i + 1), `a gap in the child's journal: ${JSON.stringify(entries)}`);
    assert.ok(entries.some((e) => e.kind === "step_completed"), `no step in the child's journal: ${JSON.stringify(entries)}`);
    assert.ok(entries.some((e) => e.kind === "now_recorded"), `no ctx.now() entry in the child's journal: ${JSON.stringify(entries)}`);
    assert.equal(entries.at(-1)?.kind, "run_completed");
    const parentRun = await waitForEnd(client, parent, 20_000);
    assert.equal(parentRun.status, RunStatus.COMPLETED);
    assert.equal((valueToJson(parentRun.output as never) as { doubled: number }).doubled, 42);
  }, 60_000);
});
