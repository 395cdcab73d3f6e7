// The `cairn` CLI end to end: a real server process on a fresh database, and the CLI run
// as a child process exactly as an operator runs it (`node cli/cairn.mjs ...`, pointed at
// the server by CAIRN_API_URL). Covers every command's human and --json output and the
// exit codes: 0 completed, 1 failed, 2 cancelled, 3 usage / unreachable, 4 server error.
// The tests are independent and run concurrently to keep the file quick.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, test } from "vitest";
import { createCairnClient, type CairnClient, type RunInfo } from "../../sdk/index.js";
import { sideTablesSql } from "../fixtures/retry-fork-workflows/retry-fork.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { repoRoot, type ServerProcess, startServerProcess, stopAllServerProcesses, waitFor } from "../support/server-process.js";

let database: TestDatabase;
let server: ServerProcess;
let sdk: CairnClient;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  database = await createTestDatabase("cli");
  // retry-fork-workflows count step executions in side tables of the server's own database.
  await withClient(database.url, (db) => db.query(sideTablesSql));
  server = await startServerProcess({
    databaseUrl: database.url,
    workflowDirs: ["test/fixtures/service-workflows", "workflows", "test/fixtures/retry-fork-workflows"],
    name: "cli-server",
  });
  sdk = createCairnClient({ baseUrl: server.url });
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await stopAllServerProcesses();
  await database?.drop();
});

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliProcess {
  readonly result: Promise<CliResult>;
  /** Resolves once stdout matches `pattern`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/** Runs `node cli/cairn.mjs ...args` against the test server (or `url`); killed after 60 s at the latest. */
function spawnCairn(args: readonly string[], options: { url?: string } = {}): CliProcess {
  const env: Record<string, string | undefined> = { ...process.env, CAIRN_API_URL: options.url ?? server.url };
  delete env.NODE_TEST_CONTEXT;
  delete env.CAIRN_API_KEY;
  const child = spawn(process.execPath, ["cli/cairn.mjs", ...args], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const result = new Promise<CliResult>((resolve) => {
    child.once("close", (code) => {
      clearTimeout(killer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
  return {
    result,
    waitForOutput: (pattern, timeoutMs = 30_000) =>
      waitFor(
        () => (pattern.test(stdout) ? true : undefined),
        timeoutMs,
        () => `cairn ${args.join(" ")} never printed ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`,
      ).then(() => undefined),
  };
}

function cairn(...args: string[]): Promise<CliResult> {
  return spawnCairn(args).result;
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line.length > 0);
}

/** Asserts the exit code, showing the output when it is not the expected one. */
function expectExit(result: CliResult, code: number): void {
  assert.equal(result.code, code, `exit code ${result.code}, expected ${code}; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An expense_approval run parked on its event (deadline 1 h away), created through the SDK. */
async function waitingExpense(): Promise<{ runId: string; expenseId: string }> {
  const expenseId = `exp-${randomUUID()}`;
  const { runId } = await sdk.createRun("expense_approval", { expenseId, amountCents: 1200, decideWithin: "1h" }, { eagerStart: true });
  await waitFor(
    async () => ((await sdk.getRun(runId)).status === "waiting" ? true : undefined),
    10_000,
    () => `run ${runId} never reached waiting`,
  );
  return { runId, expenseId };
}

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

describe.concurrent("cairn CLI", () => {
  test("--help lists the commands and exit codes; an unknown command prints usage and exits 3", async () => {
    const [help, unknown, missingArg, badFlag] = await Promise.all([
      cairn("--help"),
      cairn("frobnicate"),
      cairn("runs", "get"),
      cairn("runs", "list", "--frob"),
    ]);
    expectExit(help, 0);
    for (const command of ["serve", "workflows list", "runs create", "runs watch", "events send"]) assert.match(help.stdout, new RegExp(command));
    assert.match(help.stdout, /2 {2}the run was cancelled/);

    expectExit(unknown, 3);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assert.match(unknown.stderr, /usage: cairn <command>/);
    assert.equal(unknown.stdout, "");

    expectExit(missingArg, 3);
    assert.match(missingArg.stderr, /missing <run-id>/);
    expectExit(badFlag, 3);
    assert.match(badFlag.stderr, /Unknown option '--frob'/);
  });

  test("workflows list: an aligned table, and --json", async () => {
    const [human, json] = await Promise.all([cairn("workflows", "list"), cairn("workflows", "list", "--json")]);
    expectExit(human, 0);
    const [header, ...rows] = lines(human.stdout);
    assert.match(header ?? "", /^NAME +INPUT SCHEMA +SOURCE$/);
    const sourceColumn = (header ?? "").indexOf("SOURCE");
    const names = rows.map((row) => row.split(/\s+/)[0]);
    for (const name of ["echo", "failing", "expense_approval", "order_fulfillment"]) assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
    for (const row of rows) assert.match(row.slice(sourceColumn), /^\/.*\.ts$/, `source column aligned in ${JSON.stringify(row)}`);

    expectExit(json, 0);
    const workflows = JSON.parse(json.stdout) as { name: string; hasInputSchema: boolean }[];
    assert.ok(workflows.some((w) => w.name === "expense_approval" && w.hasInputSchema));
  });

  test("runs create --eager prints the run id; runs get shows it COMPLETED", async () => {
    const created = await cairn("runs", "create", "echo", "--input", '{"value":42}', "--eager");
    expectExit(created, 0);
    const runId = created.stdout.trim();
    assert.match(runId, uuid);
    await sdk.waitForResult(runId, { timeoutMs: 10_000 });

    const [human, json] = await Promise.all([cairn("runs", "get", runId), cairn("runs", "get", runId, "--json")]);
    expectExit(human, 0);
    assert.match(human.stdout, /^status +completed$/m);
    assert.match(human.stdout, /^workflow +echo$/m);
    assert.match(human.stdout, /^output +\{"echoed":42\}$/m);
    expectExit(json, 0);
    const run = JSON.parse(json.stdout) as RunInfo;
    assert.equal(run.runId, runId);
    assert.equal(run.status, "completed");
    assert.deepEqual(run.output, { echoed: 42 });
  });

  test("runs create --wait follows the run and prints its result last", async () => {
    const result = await cairn("runs", "create", "echo", "--input", '{"value":"hi"}', "--wait");
    expectExit(result, 0);
    const out = lines(result.stdout);
    assert.match(out[0] ?? "", /^run [0-9a-f-]{36} · echo · /);
    assert.ok(out.some((line) => /^ {2}✓ step echo completed {2}\d+ ms$/.test(line)), result.stdout);
    assert.match(out.at(-2) ?? "", /^completed in /);
    assert.deepEqual(JSON.parse(out.at(-1) ?? ""), { echoed: "hi" });

    const json = await cairn("runs", "create", "echo", "--input", '{"value":1}', "--json");
    expectExit(json, 0);
    const created = JSON.parse(json.stdout) as { run: RunInfo; deduplicated: boolean };
    assert.match(created.run.runId, uuid);
    assert.equal(created.deduplicated, false);
  });

  test("runs watch of a completing run prints a line per step and the result, exit 0", async () => {
    const { runId } = await sdk.createRun("order_fulfillment", { orderId: "o-cli", items: [{ sku: "a", quantity: 2 }], amountCents: 500 });
    const result = await cairn("runs", "watch", runId);
    expectExit(result, 0);
    const out = lines(result.stdout);
    assert.match(out[0] ?? "", new RegExp(`^run ${runId} · order_fulfillment · `));
    const steps = out.filter((line) => line.startsWith("  ✓ step "));
    assert.deepEqual(
      steps.map((line) => line.replace(/ {2}\d+ ms$/, "")),
      ["  ✓ step reserve-inventory completed", "  ✓ step charge-payment completed", "  ✓ step create-shipment completed"],
    );
    assert.match(out.at(-2) ?? "", /^completed in /);
    const output = JSON.parse(out.at(-1) ?? "") as { status: string; orderId: string };
    assert.equal(output.status, "fulfilled");
    assert.equal(output.orderId, "o-cli");
  });

  test("runs watch of a failing run prints the error, exit 1; --json is one object per line", async () => {
    const { runId } = await sdk.createRun("failing", { reason: "disk full" });
    const [human, json] = await Promise.all([cairn("runs", "watch", runId), cairn("runs", "watch", runId, "--json")]);
    expectExit(human, 1);
    assert.match(human.stdout, /^ {2}✓ step prepare/m);
    assert.match(human.stdout, /^ {2}✗ step explode failed: ExplosionError: disk full$/m);
    assert.match(lines(human.stdout).at(-1) ?? "", /^failed after .+: ExplosionError: disk full$/);

    expectExit(json, 1);
    const updates = lines(json.stdout).map((line) => JSON.parse(line) as { type: string; entry?: { kind: string; name: string } });
    assert.ok(updates.some((u) => u.type === "entry" && u.entry?.kind === "step_failed" && u.entry.name === "explode"));
    const last = updates.at(-1) as { type: string; runId: string; status: string; error?: { name: string; message: string } } | undefined;
    assert.equal(last?.type, "result");
    assert.equal(last.runId, runId);
    assert.equal(last.status, "failed");
    assert.equal(last.error?.name, "ExplosionError");
    assert.equal(last.error.message, "disk full");
  });

  test("runs list filters by workflow and status, limits, and prints --json", async () => {
    const failed = await sdk.createRun("failing", { reason: "for the list" }, { eagerStart: true });
    await assert.rejects(sdk.waitForResult(failed, { timeoutMs: 10_000 }));
    const [human, json, limited, badStatus] = await Promise.all([
      cairn("runs", "list", "--workflow", "failing", "--status", "failed"),
      cairn("runs", "list", "--workflow", "failing", "--status", "FAILED,cancelled", "--json"),
      cairn("runs", "list", "--limit", "1"),
      cairn("runs", "list", "--status", "done"),
    ]);
    expectExit(human, 0);
    const [header, ...rows] = lines(human.stdout);
    assert.match(header ?? "", /^RUN ID +WORKFLOW +STATUS +CREATED +DURATION +DETAIL$/);
    assert.ok(rows.some((row) => row.startsWith(failed.runId)), human.stdout);
    for (const row of rows) assert.match(row, /^\S{36} {2}failing +failed +/);
    assert.ok(rows.find((row) => row.startsWith(failed.runId))?.endsWith("ExplosionError: for the list"));

    expectExit(json, 0);
    const runs = JSON.parse(json.stdout) as RunInfo[];
    assert.ok(runs.length >= 1 && runs.every((run) => run.workflowName === "failing" && run.status === "failed"));
    assert.ok(runs.some((run) => run.runId === failed.runId));

    expectExit(limited, 0);
    assert.equal(lines(limited.stdout).length, 2, "header and one run");
    assert.match(limited.stderr, /showing the newest 1 runs/);

    expectExit(badStatus, 3);
    assert.match(badStatus.stderr, /unknown status "done"/);
  });

  test("runs list --meta KEY=VALUE (every pair) and --created-/--ended- ranges; bad values are usage errors", async () => {
    const tag = randomUUID();
    const started = new Date();
    const mine = await sdk.createRun("failing", { reason: "tagged" }, { eagerStart: true, metadata: { tag, side: "a" } });
    const other = await sdk.createRun("failing", { reason: "tagged" }, { eagerStart: true, metadata: { tag, side: "b" } });
    await assert.rejects(sdk.waitForResult(mine, { timeoutMs: 10_000 }));
    await assert.rejects(sdk.waitForResult(other, { timeoutMs: 10_000 }));
    const ids = (result: CliResult) => (JSON.parse(result.stdout) as RunInfo[]).map((run) => run.runId).sort();
    const [both, sideA, ended, endedBefore, badMeta, badInstant] = await Promise.all([
      cairn("runs", "list", "--meta", `tag=${tag}`, "--json"),
      cairn("runs", "list", "--meta", `tag=${tag}`, "--meta", "side=a", "--json"),
      cairn("runs", "list", "--meta", `tag=${tag}`, "--ended-after", started.toISOString(), "--created-after", started.toISOString(), "--json"),
      cairn("runs", "list", "--meta", `tag=${tag}`, "--ended-before", started.toISOString(), "--json"),
      cairn("runs", "list", "--meta", "tag"),
      cairn("runs", "list", "--ended-after", "yesterday"),
    ]);
    expectExit(both, 0);
    assert.deepEqual(ids(both), [mine.runId, other.runId].sort());
    expectExit(sideA, 0);
    assert.deepEqual(ids(sideA), [mine.runId]);
    expectExit(ended, 0);
    assert.deepEqual(ids(ended), [mine.runId, other.runId].sort());
    expectExit(endedBefore, 0);
    assert.deepEqual(ids(endedBefore), []);
    expectExit(badMeta, 3);
    assert.match(badMeta.stderr, /--meta takes KEY=VALUE, got "tag"/);
    expectExit(badInstant, 3);
    assert.match(badInstant.stderr, /--ended-after must be an instant/);
  });

  test("runs pause and runs resume: a waiting run paused (listed with --status paused), resumed, refused twice", async () => {
    const { runId } = await waitingExpense();
    const paused = await cairn("runs", "pause", runId, "--reason", "audit");
    expectExit(paused, 0);
    assert.equal(paused.stdout.trim(), `paused run ${runId}`);
    const listed = await cairn("runs", "list", "--status", "paused", "--json");
    expectExit(listed, 0);
    assert.ok((JSON.parse(listed.stdout) as RunInfo[]).some((run) => run.runId === runId && run.status === "paused"));
    const resumed = await cairn("runs", "resume", runId, "--json");
    expectExit(resumed, 0);
    assert.equal((JSON.parse(resumed.stdout) as RunInfo).status, "queued");
    const again = await cairn("runs", "resume", runId);
    expectExit(again, 4);
    assert.match(again.stderr, /failed_precondition|FailedPrecondition|failed precondition/i);
    assert.match(again.stderr, /only a paused run can be resumed/);
    await sdk.cancelRun(runId);
  });

  test("runs history: one line per entry, run-level ones included; --json gives the run and every entry", async () => {
    const { runId } = await waitingExpense();
    await sdk.pauseRun(runId, "audit");
    await sdk.resumeRun(runId);
    await sdk.cancelRun(runId, "done looking");
    await waitFor(async () => ((await sdk.getRun(runId)).status === "cancelled" ? true : undefined), 10_000, () => `run ${runId} never cancelled`);
    const [human, json, after, missing] = await Promise.all([
      cairn("runs", "history", runId),
      cairn("runs", "history", runId, "--json"),
      cairn("runs", "history", runId, "--after", "1"),
      cairn("runs", "history", randomUUID()),
    ]);
    expectExit(human, 0);
    const out = lines(human.stdout);
    assert.match(out.at(-1) ?? "", new RegExp(`^run ${runId} \\(expense_approval\\) is cancelled$`));
    assert.ok(out.some((line) => /^ +\d+ {2}\d{4}-\d\d-\d\d .* paused/.test(line)), human.stdout);
    assert.ok(out.some((line) => /resumed/.test(line)), human.stdout);
    assert.ok(out.some((line) => /cancel/.test(line)), human.stdout);
    expectExit(json, 0);
    const document = JSON.parse(json.stdout) as { run: RunInfo; entries: { sequence: number; kind: string }[] };
    assert.equal(document.run.runId, runId);
    const kinds = document.entries.map((entry) => entry.kind);
    assert.deepEqual(kinds.slice(-3), ["run_paused", "run_resumed", "run_cancelled"]);
    assert.deepEqual(
      document.entries.map((entry) => entry.sequence),
      [...document.entries.map((entry) => entry.sequence)].sort((a, b) => a - b),
    );
    expectExit(after, 0);
    assert.equal(lines(after.stdout).length, document.entries.filter((entry) => entry.sequence > 1).length + 1);
    expectExit(missing, 4);
    assert.match(missing.stderr, /not_found/);
  });

  test("runs retry and runs fork: a failed run retried to completion, a fork from an operation, refusals", async () => {
    const key = `cli-${randomUUID()}`;
    const { runId } = await sdk.createRun("flagged_charge", { key }, { eagerStart: true });
    await waitFor(async () => ((await sdk.getRun(runId)).status === "failed" ? true : undefined), 10_000, () => `run ${runId} never failed`);

    const forked = await cairn("runs", "fork", runId, "--from", "charge", "--input", JSON.stringify({ key: `${key}-fork` }), "--json");
    expectExit(forked, 0);
    const fork = JSON.parse(forked.stdout) as RunInfo;
    assert.equal(fork.forkedFromRunId, runId);
    assert.deepEqual(fork.input, { key: `${key}-fork` });
    const shown = await cairn("runs", "get", fork.runId);
    expectExit(shown, 0);
    assert.match(shown.stdout, new RegExp(`forked from +${runId}`));

    await withClient(database.url, (db) => db.query("insert into retry_flags (key) values ($1)", [key]));
    const retried = await cairn("runs", "retry", runId, "--reason", "flag set", "--wait");
    expectExit(retried, 0);
    assert.match(retried.stdout, /run retried: flag set/);
    assert.equal((await sdk.getRun(runId)).status, "completed");

    const [again, noFrom, unreached] = await Promise.all([
      cairn("runs", "retry", runId),
      cairn("runs", "fork", runId),
      cairn("runs", "fork", runId, "--from", "nowhere"),
    ]);
    expectExit(again, 4);
    assert.match(again.stderr, /is COMPLETED; only a FAILED run can be retried/);
    expectExit(noFrom, 3);
    assert.match(noFrom.stderr, /--from OPERATION is required/);
    expectExit(unreached, 4);
    assert.match(unreached.stderr, /never reached operation "nowhere"/);
  });

  test("runs why: the wait, a near-miss event with its reason, and who loaded the workflow; --json is the SDK's explanation", async () => {
    const { runId, expenseId } = await waitingExpense();
    const other = await sdk.sendEvent({ eventType: "expense.decided", correlationId: `${expenseId}-other`, payload: {} });
    const why = await cairn("runs", "why", runId);
    expectExit(why, 0);
    assert.match(why.stdout, new RegExp(`^run ${runId} \\(expense_approval\\) is WAITING$`, "m"));
    assert.match(why.stdout, new RegExp(`event expense\\.decided \\(correlation ${expenseId}\\)`));
    assert.match(why.stdout, new RegExp(`event ${other.eventId} \\(correlation ${expenseId}-other, .*another correlation id than ${expenseId}`));
    assert.match(why.stdout, /workflow expense_approval is loaded by 1 live process\(es\)/);
    const json = await cairn("runs", "why", runId, "--json");
    expectExit(json, 0);
    const parsed = JSON.parse(json.stdout) as { waits: { wait: { kind: string }; nearMisses: { eventId: string; reason: string }[] }[]; lines: string[] };
    const eventWait = parsed.waits.find((wait) => wait.wait.kind === "event");
    assert.deepEqual(eventWait?.nearMisses.map((m) => [m.eventId, m.reason]), [[other.eventId, "other_correlation_id"]], json.stdout);
    assert.deepEqual(parsed.lines, why.stdout.trimEnd().split("\n"));
    await sdk.cancelRun(runId);
  });

  test("runs create --timeout: the run fails with RunTimeoutError; a bad duration is refused", async () => {
    const created = await cairn("runs", "create", "expense_approval", "--input", JSON.stringify({ expenseId: `exp-${randomUUID()}`, amountCents: 1, decideWithin: "1h" }), "--timeout", "1s", "--json");
    expectExit(created, 0);
    const { run } = JSON.parse(created.stdout) as { run: RunInfo & { timeoutAt: string } };
    assert.equal(Date.parse(run.timeoutAt) - Date.parse(run.createdAt as unknown as string), 1000);
    await waitFor(async () => ((await sdk.getRun(run.runId)).status === "failed" ? true : undefined), 10_000, () => `run ${run.runId} did not time out`);
    assert.equal((await sdk.getRun(run.runId)).error?.name, "RunTimeoutError");
    const bad = await cairn("runs", "create", "expense_approval", "--timeout", "soon");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /invalid_argument: timeout: "soon" is not a duration/);
  });

  test("runs cancel of a waiting run: CANCELLED, and its watcher exits 2", async () => {
    const { runId } = await waitingExpense();
    const watcher = spawnCairn(["runs", "watch", runId]);
    await watcher.waitForOutput(/· waiting on event expense\.decided/);
    const cancelled = await cairn("runs", "cancel", runId, "--reason", "changed my mind");
    expectExit(cancelled, 0);
    assert.equal(cancelled.stdout.trim(), `cancelled run ${runId}`);

    const watched = await watcher.result;
    expectExit(watched, 2);
    assert.match(lines(watched.stdout).at(-1) ?? "", /^cancelled after .+: changed my mind$/);
    assert.equal((await sdk.getRun(runId)).status, "cancelled");

    const completed = await sdk.createRun("echo", { value: 1 }, { eagerStart: true });
    await sdk.waitForResult(completed, { timeoutMs: 10_000 });
    const [get, again, ended] = await Promise.all([cairn("runs", "get", runId), cairn("runs", "cancel", runId), cairn("runs", "cancel", completed.runId)]);
    assert.match(get.stdout, /^status +cancelled$/m);
    assert.match(get.stdout, /^reason +changed my mind$/m);
    expectExit(again, 0); // a repeated cancel is answered like the first
    expectExit(ended, 4);
    assert.match(ended.stderr, /^cairn: failed_precondition: .*already ended \(COMPLETED\)/m);
  });

  test("events send wakes a waiting run and prints the event id and matched runs", async () => {
    const { runId, expenseId } = await waitingExpense();
    const watcher = spawnCairn(["runs", "watch", runId]);
    await watcher.waitForOutput(/· waiting on event expense\.decided/);
    const sent = await cairn("events", "send", "expense.decided", expenseId, "--payload", '{"approved":true,"by":"cli"}');
    expectExit(sent, 0);
    const out = lines(sent.stdout);
    assert.match(out[0] ?? "", /^event [0-9a-f-]{36}$/);
    assert.equal(out[1], "matched 1 run:");
    assert.equal(out[2]?.trim(), runId);

    const watched = await watcher.result;
    expectExit(watched, 0);
    assert.match(watched.stdout, /^ {2}✓ event received decision/m);
    assert.match(watched.stdout, /^ {2}✓ step pay-out/m);
    assert.deepEqual(JSON.parse(lines(watched.stdout).at(-1) ?? ""), { expenseId, outcome: "approved", by: "cli" });

    const unmatched = await cairn("events", "send", "expense.decided", `nobody-${randomUUID()}`, "--json");
    expectExit(unmatched, 0);
    const result = JSON.parse(unmatched.stdout) as { eventId: string; matchedRunIds: string[]; deduplicated: boolean };
    assert.match(result.eventId, uuid);
    assert.deepEqual(result.matchedRunIds, []);
  });

  test("server errors print the Connect code and exit 4; an unreachable server exits 3", async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const [notFound, unknownWorkflow, unreachable, unreachableJson] = await Promise.all([
      cairn("runs", "get", randomUUID()),
      cairn("runs", "create", "no_such_workflow"),
      spawnCairn(["workflows", "list"], { url }).result,
      spawnCairn(["runs", "list", "--json"], { url }).result,
    ]);
    expectExit(notFound, 4);
    assert.match(notFound.stderr, /^cairn: not_found: run ".+" not found/m);
    expectExit(unknownWorkflow, 4);
    assert.match(unknownWorkflow.stderr, /not_found: unknown workflow "no_such_workflow"/);

    expectExit(unreachable, 3);
    assert.match(unreachable.stderr, new RegExp(`^cairn: cannot reach Cairn at ${url}: .*ECONNREFUSED`, "m"));
    expectExit(unreachableJson, 3);
    const error = JSON.parse(unreachableJson.stderr) as { error: { code: string; message: string } };
    assert.equal(error.error.code, "unavailable");
    assert.match(error.error.message, /^cannot reach Cairn at /);
  });
});
