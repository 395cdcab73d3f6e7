// Recorded histories (test/core/histories/*.json, written by record.ts there from runs on a real server)
// replayed against the core: the same workflow code must reach the same end from the same journal, with no
// determinism error and without doing anything the journal already holds.
import assert from "node:assert/strict";
import { pino } from "pino";
import { describe, test } from "vitest";
import type { JsonValue } from "../../sdk/workflow.js";
import { loadWorkflows } from "../../server/workflows/loader.js";
import { validateInput } from "../../server/workflows/registry.js";
import { executeActivation } from "../support/execute.js";
import { entryFromJson, readHistories } from "../support/history.js";
import { memoryHost } from "../support/memory-host.js";

const histories = readHistories();

describe("recorded histories replay to the same end", () => {
  test("there are histories to replay", () => {
    assert.ok(histories.length >= 8, `only ${histories.length} histories in test/core/histories`);
  });

  test.each(histories.map(({ file, history }) => [file, history] as const))("%s", async (_file, history) => {
    const registry = await loadWorkflows([history.workflow.dir], pino({ level: "silent" }));
    const workflow = registry.get(history.workflow.name);
    const journal = history.journal.map(entryFromJson);
    const host = memoryHost([...journal]);
    host.clock = new Date(journal.at(-1)?.createdAt ?? history.run.createdAt);
    const input = (await validateInput(workflow, history.run.input)) as JsonValue;
    const identity = { runId: history.run.runId, workflowName: workflow.name, input, createdAt: new Date(history.run.createdAt) };
    const outcome = await executeActivation(identity, journal, host, workflow.handler);

    switch (history.outcome.kind) {
      case "completed":
        assert.deepEqual(outcome, { kind: "completed", output: history.outcome.output }, history.about);
        break;
      case "failed":
        assert.equal(outcome.kind, "failed", `${history.about}: ${JSON.stringify(outcome)}`);
        assert.ok(outcome.kind === "failed");
        assert.deepEqual({ name: outcome.failure.name, message: outcome.failure.message }, history.outcome.failure);
        break;
      case "suspended":
        assert.equal(outcome.kind, "suspended", `${history.about}: ${JSON.stringify(outcome)}`);
        assert.ok(outcome.kind === "suspended");
        assert.deepEqual(outcome.waits.map((w) => w.name).sort(), [...history.outcome.waits].sort());
        break;
    }
    assert.deepEqual(host.journal.slice(journal.length), [], "the replay wrote no entry the history lacks");
    assert.deepEqual(host.childRequests, [], "the replay started no child");
    assert.equal(host.turns.size, 0, "the replay started no agent turn");
  });
});
