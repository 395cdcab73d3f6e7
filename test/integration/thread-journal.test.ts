/**
 * On PostgreSQL a workflow thread journals its runs' steps itself, over a pool of its own (thread-journal.ts), under
 * the rules the main thread's writes follow: every entry fenced by the claim, in order, a run's last entries riding
 * on its end; a write refused because the run was cancelled meanwhile ends the run as cancelled (the main thread
 * says why); a failed attempt the thread wrote is logged as the main thread logs its own; entries cross to the main
 * thread only for runs this process tails (a WatchRun), and then each as it commits.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { valueFromJson } from "../../server/rpc/convert.js";
import { pino } from "pino";
import { afterAll, beforeAll, test } from "vitest";
import { RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { type CairnServer, startServer } from "../../server/app.js";
import { testConfig, until, waitForEnd, type WorkflowClient } from "../support/in-process-server.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";

let database: TestDatabase;
let server: CairnServer;
let client: WorkflowClient;
/** The server's warnings and errors, as logged. */
const logged: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase("thread_journal");
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logged.push(String(chunk));
      done();
    },
  });
  server = await startServer(testConfig({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/thread-workflows", CAIRN_WORKFLOW_THREADS: "1" }), pino({ level: "warn" }, sink));
  client = createClient(WorkflowService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
}, 60_000);

afterAll(async () => {
  await server?.close();
  await database?.drop();
});

const input = (value: Record<string, unknown>) => valueFromJson(value as never);

/** Creates a run and answers its id. */
async function createRun(workflowName: string, value: Record<string, unknown>): Promise<string> {
  const { run } = await client.createRun({ workflowName, input: input(value) });
  assert.ok(run);
  return run.runId;
}

const journal = (runId: string) =>
  withClient(database.url, async (db) => (await db.query("select sequence, kind, name, attempt, xmin::text as transaction from journal_entries where run_id = $1 order by sequence", [runId])).rows as { sequence: number; kind: string; name: string; attempt: number | null; transaction: string }[]);

test("the thread writes each step's entry over its own connection, in order, the last with the run's end", async () => {
  // The last step rides on the end when the end follows it before the thread's next statement goes (at once, unless
  // the thread was held up 2 ms in between: a loaded machine): of three runs, at least one shows it.
  let rode = 0;
  for (let run = 0; run < 3; run++) {
    const runId = await createRun("five_steps", {});
    const ended = await waitForEnd(client, runId);
    assert.equal(ended.status, RunStatus.COMPLETED);
    const entries = await journal(runId);
    assert.deepEqual(
      entries.map((e) => [e.sequence, e.kind, e.name]),
      [...[0, 1, 2, 3, 4].map((i) => [i + 1, "step_completed", `step-${i}`]), [6, "run_completed", ""]],
    );
    // Each step committed before the next started: a statement, a transaction (the rows' xmin), of its own.
    const transactions = entries.map((e) => e.transaction);
    assert.equal(new Set(transactions.slice(0, 5)).size, 5, `each step's own commit: ${transactions.join(", ")}`);
    // Riding, it is in the end's statement, the end's transaction.
    if (transactions[4] === transactions[5]) rode++;
  }
  assert.ok(rode >= 1, "the last step never rode on the run's end");
  // Its pool's connections stay open a while after use: the thread is a client of the database in its own name.
  const threads = await withClient(database.url, async (db) => (await db.query("select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name = 'cairn workflow thread'")).rows[0].n as number);
  assert.ok(threads >= 1, "no connection of the workflow thread");
});

test("a write refused because the run was cancelled meanwhile ends the run cancelled, with the reason", async () => {
  const runId = await createRun("slow_steps", { steps: 3, stepMs: 600 });
  await until(async () => (await client.getRun({ runId })).run?.status === RunStatus.RUNNING, "the run never ran");
  // Requested behind the server's back (as another server's CancelRun whose notice got lost would be): the first
  // step's entry is refused by its fence, and only the main thread can read why.
  await withClient(database.url, (db) => db.query("update runs set cancel_requested_at = now(), cancel_reason = 'retired by test' where id = $1", [runId]));
  const run = await waitForEnd(client, runId, 5_000);
  assert.equal(run.status, RunStatus.CANCELLED, `status ${run.status}`);
  assert.match(run.error?.message ?? "", /retired by test/);
  const entries = await journal(runId);
  assert.ok(!entries.some((e) => e.kind === "step_completed"), JSON.stringify(entries));
});

test("a failed attempt the thread journaled is logged by the main thread, and its retry goes on", async () => {
  const runId = await createRun("slow_steps", { steps: 2, failFirst: true });
  const run = await waitForEnd(client, runId);
  assert.equal(run.status, RunStatus.COMPLETED);
  const entries = await journal(runId);
  assert.deepEqual(
    entries.filter((e) => e.kind.startsWith("step")).map((e) => [e.kind, e.name, e.attempt]),
    [
      ["step_attempt_failed", "step-0", 1],
      ["step_completed", "step-0", 2],
      ["step_attempt_failed", "step-1", 1],
      ["step_completed", "step-1", 2],
    ],
  );
  const failures = logged.filter((line) => line.includes(runId) && line.includes("step attempt failed; will retry"));
  assert.equal(failures.length, 2, logged.join(""));
});

test("only the entries of a run tailed here cross to the main thread, from the moment a watcher tails it", async () => {
  // What the threads told the main thread, by run (the run feed's tellings of appended entries).
  const told = new Map<string, number>();
  const publish = server.feed.publishAppended.bind(server.feed);
  server.feed.publishAppended = (runId, entries) => {
    told.set(runId, (told.get(runId) ?? 0) + 1);
    publish(runId, entries);
  };
  try {
    // Nobody watches it here: nothing of it crosses (its end reaches the main thread with the run's outcome).
    const unwatched = await createRun("slow_steps", { steps: 4 });
    assert.equal((await waitForEnd(client, unwatched)).status, RunStatus.COMPLETED);
    assert.equal(told.get(unwatched) ?? 0, 0, "entries of a run nobody tails were told");

    // Tailed once it runs: the steps committed after that are told, and the watcher sees every entry in order.
    const watched = await createRun("slow_steps", { steps: 6, stepMs: 150 });
    await until(async () => (await client.getRun({ runId: watched })).run?.status === RunStatus.RUNNING, "the run never ran");
    const sequences: bigint[] = [];
    for await (const update of client.watchRun({ runId: watched, afterSequence: 0n })) {
      if (update.update.case === "entry") sequences.push(update.update.value.sequence);
    }
    assert.deepEqual(sequences, [1n, 2n, 3n, 4n, 5n, 6n, 7n]);
    assert.ok((told.get(watched) ?? 0) >= 3, `${told.get(watched) ?? 0} entries told of a tailed run's 6 steps`);
  } finally {
    server.feed.publishAppended = publish;
  }
});
