/**
 * Re-records test/core/histories/*.json: runs each scenario below on a real in-process server (PGlite in a temp
 * folder, the fixture workflows, a real agent worker for agent turns), then saves the run's journal as the store
 * holds it, with its input and how it ended. Run it after a change to the journal's shape or to a fixture
 * workflow:
 *
 *   npx tsx test/core/histories/record.ts            # every scenario
 *   npx tsx test/core/histories/record.ts retries    # the scenarios whose file name contains "retries"
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createAgentWorker } from "../../../sdk/agent-worker.js";
import { RunStatus } from "../../../sdk/gen/cairn/v1/types_pb.js";
import type { JsonValue } from "../../../sdk/workflow.js";
import type { CairnServer } from "../../../server/app.js";
import { valueFromJson, valueToJson } from "../../../server/rpc/convert.js";
import { loadJournal } from "../../../server/store/journal.js";
import { entryToJson, type History, historiesDir } from "../../support/history.js";
import { startTestServer, waitForEnd, type WorkflowClient } from "../../support/in-process-server.js";

interface Scenario {
  file: string;
  about: string;
  dir: string;
  workflow: string;
  input: JsonValue;
  /** What the world does while the run goes on (send an event, cancel it); default: wait for its end. */
  drive?(client: WorkflowClient, runId: string): Promise<void>;
}

const waits = "test/fixtures/wait-workflows";
const children = "test/fixtures/child-workflows";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the run is parked (waiting), so that what the world does next lands after its wait started. */
async function parked(client: WorkflowClient, runId: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { run } = await client.getRun({ runId });
    if (run?.status === RunStatus.WAITING) return;
    await sleep(25);
  }
  throw new Error(`run ${runId} never parked`);
}

const scenarios: Scenario[] = [
  {
    file: "steps-order-fulfillment",
    about: "the example order workflow: sequential and parallel steps",
    dir: "workflows",
    workflow: "order_fulfillment",
    input: { orderId: "h-1", items: [{ sku: "a", quantity: 2 }, { sku: "b", quantity: 1 }], amountCents: 1299 },
  },
  {
    file: "retries-flaky-step",
    about: "a step that fails twice and succeeds on its third attempt after backoffs",
    dir: waits,
    workflow: "flaky",
    input: { failures: 2, backoff: "50ms" },
  },
  {
    file: "timer-sleep",
    about: "a durable sleep, then a step",
    dir: waits,
    workflow: "sleeper",
    input: { ms: 100 },
  },
  {
    file: "event-received",
    about: "a wait for an event sent after the run parked",
    dir: waits,
    workflow: "waiter",
    input: { type: "approval", key: "h-event" },
    async drive(client, runId) {
      await parked(client, runId);
      await client.sendEvent({ eventType: "approval", correlationId: "h-event", payload: valueFromJson({ approved: true, by: "ann" }) });
    },
  },
  {
    file: "event-timed-out",
    about: "an event wait that times out",
    dir: waits,
    workflow: "waiter",
    input: { type: "approval", key: "h-timeout", timeout: "100ms" },
  },
  {
    file: "event-or-deadline",
    about: "the expense example: an event raced against a timer, the event wins",
    dir: "workflows",
    workflow: "expense_approval",
    input: { expenseId: "h-exp", amountCents: 5000, decideWithin: "1h" },
    async drive(client, runId) {
      await parked(client, runId);
      await client.sendEvent({ eventType: "expense.decided", correlationId: "h-exp", payload: valueFromJson({ approved: true, by: "bo" }) });
    },
  },
  {
    file: "children-fan-out",
    about: "a parent that runs three children with Promise.all",
    dir: children,
    workflow: "fan_out",
    input: { count: 3 },
  },
  {
    file: "child-failure-caught",
    about: "a parent that catches its child's failure",
    dir: children,
    workflow: "careful_parent",
    input: {},
  },
  {
    file: "agent-turn",
    about: "one agent turn answered by a worker",
    dir: "test/fixtures/agent-workflows",
    workflow: "ask_agent",
    input: { agent: "summarize", text: "the quick brown fox" },
  },
  {
    file: "failure-step-throws",
    about: "a step that throws fails the run",
    dir: children,
    workflow: "broken",
    input: {},
  },
  {
    file: "cancelled-while-waiting",
    about: "a run cancelled while it waited for an event: replay parks on the same wait",
    dir: waits,
    workflow: "waiter",
    input: { type: "approval", key: "h-cancel" },
    async drive(client, runId) {
      await parked(client, runId);
      await client.cancelRun({ runId, reason: "recorded cancel" });
    },
  },
];

async function record(server: CairnServer, client: WorkflowClient, scenario: Scenario): Promise<History> {
  const { run } = await client.createRun({ workflowName: scenario.workflow, input: valueFromJson(scenario.input), eagerStart: true });
  if (!run) throw new Error(`${scenario.file}: CreateRun returned no run`);
  await scenario.drive?.(client, run.runId);
  const ended = await waitForEnd(client, run.runId, 30_000);
  const journal = (await loadJournal(server.database.db, run.runId)).filter((entry) => entry.name !== "");
  const outcome: History["outcome"] =
    ended.status === RunStatus.COMPLETED
      ? { kind: "completed", output: valueToJson(ended.output ?? valueFromJson(null)) }
      : ended.status === RunStatus.FAILED
        ? { kind: "failed", failure: { name: ended.error?.name ?? "", message: ended.error?.message ?? "" } }
        : { kind: "suspended", waits: [...new Set(journal.filter((e) => e.kind === "event_wait_started" || e.kind === "timer_started").map((e) => e.name))] };
  return {
    about: scenario.about,
    workflow: { dir: scenario.dir, name: scenario.workflow },
    run: { runId: run.runId, input: scenario.input, createdAt: timestampDate(ended.createdAt!).toISOString() },
    journal: journal.map(entryToJson),
    outcome,
  };
}

const only = process.argv[2];
const chosen = scenarios.filter((s) => !only || s.file.includes(only));
const dataDir = mkdtempSync(path.join(tmpdir(), "cairn-histories-"));
const dirs = [...new Set(chosen.map((s) => s.dir))].join(path.delimiter);
const { server, client } = await startTestServer({ CAIRN_DATA_DIR: dataDir, WORKFLOW_DIRS: dirs });
const worker = createAgentWorker({
  transport: createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
  agents: { summarize: (turn) => ({ summary: turn.text.split(" ").slice(0, 2).join(" ") }) },
  workerId: "history-recorder",
});
try {
  for (const scenario of chosen) {
    const history = await record(server, client, scenario);
    writeFileSync(path.join(historiesDir, `${scenario.file}.json`), `${JSON.stringify(history, null, 2)}\n`);
    console.log(`${scenario.file}.json: ${history.journal.length} entries, ${history.outcome.kind}`);
  }
} finally {
  await worker.stop();
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
