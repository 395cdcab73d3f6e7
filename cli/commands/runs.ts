/** `cairn runs create | get | list | cancel | pause | resume | retry | fork | why | watch` (cancel, pause, resume, retry with filter flags: a batch; `runs history`: run-history.ts). */
import type { JsonObject, ListRunsFilter, RunInfo } from "../../sdk/index.js";
import { isJsonObject, jsonOption, positiveInteger, UsageError } from "../args.js";
import { batchFlagsHelp, batchOptions, runBatch } from "./batches.js";
import { runFilterFrom, runFilterHelp, runFilterOptions, runFilterUsage } from "./run-filter.js";
import { type Command, ExitCode, flag, jsonDocument, stringValue } from "../command.js";
import { runDetail, runDetails, runDuration, table, timestamp, truncate } from "../format.js";
import { watchRun } from "../watch.js";

export const runsCreate: Command = {
  name: "runs create",
  summary: "start a run and print its id",
  usage: "<workflow> [--input JSON | --input-file FILE] [--eager] [--idempotency-key KEY] [--timeout DURATION] [--priority N] [--wait]",
  description:
    "Starts a run of <workflow> and prints its id. With --wait it then follows the run like\n" +
    "`cairn runs watch` and exits with the run's outcome (0 completed, 1 failed, 2 cancelled).",
  optionHelp: [
    ["--input JSON", "the run's input, a JSON object (default {})"],
    ["--input-file FILE", "read the input from FILE (- for standard input)"],
    ["--eager", "start the run in the receiving server process at once instead of queueing it"],
    ["--idempotency-key KEY", "a retry with the same key returns the first run instead of starting another"],
    ["--timeout DURATION", "fail the run (RunTimeoutError) if it has not ended this long after creation, e.g. 30s, 5m, 1h"],
    ["--priority N", "claim order over the workflow's default, -1000 to 1000: higher is claimed first"],
    ["--wait", "follow the run until it ends and print its result"],
  ],
  options: {
    priority: { type: "string" },
    input: { type: "string" },
    "input-file": { type: "string" },
    eager: { type: "boolean" },
    "idempotency-key": { type: "string" },
    timeout: { type: "string" },
    wait: { type: "boolean" },
  },
  positionals: ["workflow"],
  async run(context, values, [workflow = ""]) {
    const input = await inputOption(values);
    const idempotencyKey = stringValue(values, "idempotency-key");
    const timeout = stringValue(values, "timeout");
    const priorityText = stringValue(values, "priority");
    const priority = priorityText === undefined ? undefined : Number(priorityText);
    if (priority !== undefined && !(Number.isInteger(priority) && priority >= -1000 && priority <= 1000)) {
      throw new UsageError(`--priority must be an integer from -1000 to 1000, got ${JSON.stringify(priorityText)}`);
    }
    const created = await context.client().createRun(workflow, input ?? {}, {
      eagerStart: flag(values, "eager"),
      ...(idempotencyKey ? { idempotencyKey } : {}),
      ...(timeout !== undefined ? { timeout } : {}),
      ...(priority !== undefined ? { priority } : {}),
    });
    if (created.deduplicated && !context.json) context.io.err(`cairn: the idempotency key matched run ${created.runId}; no new run was started`);
    if (flag(values, "wait")) return watchRun(context, created.runId);
    context.io.out(context.json ? jsonDocument({ run: created.run, deduplicated: created.deduplicated }) : created.runId);
    return ExitCode.ok;
  },
};

/** --input JSON or --input-file FILE: a run's input, which must be a JSON object; undefined when neither is given. */
async function inputOption(values: Parameters<Command["run"]>[1]): Promise<JsonObject | undefined> {
  const input = await jsonOption(stringValue(values, "input"), stringValue(values, "input-file"), "input");
  if (input !== undefined && !isJsonObject(input)) throw new UsageError("the input must be a JSON object, e.g. --input '{\"orderId\":\"o-1\"}'");
  return input;
}

export const runsGet: Command = {
  name: "runs get",
  summary: "show a run: status, input, output or error, what it waits on",
  usage: "<run-id>",
  options: {},
  positionals: ["run-id"],
  async run(context, _values, [runId = ""]) {
    const run = await context.client().getRun(runId);
    context.io.out(context.json ? jsonDocument(run) : runDetails(run));
    return ExitCode.ok;
  },
};

export const runsList: Command = {
  name: "runs list",
  summary: "list runs, newest first",
  usage: `${runFilterUsage} [--limit N]`,
  optionHelp: [...runFilterHelp, ["--limit N", "at most N runs (default 50)"]],
  options: { ...runFilterOptions, limit: { type: "string" } },
  positionals: [],
  async run(context, values) {
    const limitText = stringValue(values, "limit");
    const limit = limitText === undefined ? 50 : positiveInteger(limitText, "--limit");
    const filter: ListRunsFilter = {
      ...runFilterFrom(values),
      // One more than shown, to tell whether there are more.
      pageSize: Math.min(limit + 1, 1000),
    };
    const runs: RunInfo[] = [];
    let more = false;
    for await (const run of context.client().listRuns(filter)) {
      if (runs.length === limit) {
        more = true;
        break;
      }
      runs.push(run);
    }
    if (context.json) {
      context.io.out(jsonDocument(runs));
      return ExitCode.ok;
    }
    if (runs.length === 0) {
      context.io.out("no matching runs");
      return ExitCode.ok;
    }
    const now = new Date();
    context.io.out(
      table(
        ["RUN ID", "WORKFLOW", "STATUS", "CREATED", "DURATION", "DETAIL"],
        runs.map((run) => [
          run.runId,
          run.workflowName,
          run.status,
          timestamp(run.createdAt),
          run.status === "queued" ? "-" : runDuration(run, now),
          truncate(runDetail(run), 72),
        ]),
      ),
    );
    if (more) context.io.err(`cairn: showing the newest ${limit} runs; there are more (raise --limit or narrow the filters)`);
    return ExitCode.ok;
  },
};

export const runsCancel: Command = {
  name: "runs cancel",
  summary: "cancel a queued, running or waiting run",
  usage: `<run-id> [--reason TEXT]\n   or: cairn runs cancel ${runFilterUsage} [--reason TEXT] [--dry-run] [--no-wait]`,
  description: "A waiting or queued run is cancelled at once; a running one at its next durable operation.\n" +
    "With filter flags and no <run-id>: a batch over every matching run (see `cairn batches get`).",
  optionHelp: [["--reason TEXT", "recorded as the run's error message"], ...runFilterHelp, ...batchFlagsHelp],
  options: { reason: { type: "string" }, ...runFilterOptions, ...batchOptions },
  positionalsOptional: true,
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    if (!runId) return runBatch(context, "cancel", values);
    singleRunOnly(values);
    const run = await context.client().cancelRun(runId, stringValue(values, "reason"));
    if (context.json) context.io.out(jsonDocument(run));
    else if (run.status === "cancelled") context.io.out(`cancelled run ${run.runId}`);
    else context.io.out(`cancellation requested: run ${run.runId} is ${run.status} and stops at its next durable operation`);
    return ExitCode.ok;
  },
};

export const runsPause: Command = {
  name: "runs pause",
  summary: "pause a queued or waiting run until `runs resume`",
  usage: `<run-id> [--reason TEXT]\n   or: cairn runs pause ${runFilterUsage} [--reason TEXT] [--dry-run] [--no-wait]`,
  description: "Nothing claims a paused run: an event sent meanwhile and a timer that comes due wait for the resume.\n" +
    "With filter flags and no <run-id>: a batch over every matching run (see `cairn batches get`).",
  optionHelp: [["--reason TEXT", "recorded in the run's history"], ...runFilterHelp, ...batchFlagsHelp],
  options: { reason: { type: "string" }, ...runFilterOptions, ...batchOptions },
  positionalsOptional: true,
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    if (!runId) return runBatch(context, "pause", values);
    singleRunOnly(values);
    const run = await context.client().pauseRun(runId, stringValue(values, "reason"));
    context.io.out(context.json ? jsonDocument(run) : `paused run ${run.runId}`);
    return ExitCode.ok;
  },
};

export const runsResume: Command = {
  name: "runs resume",
  summary: "resume a paused run",
  description: "With filter flags and no <run-id>: a batch over every matching run (see `cairn batches get`).",
  usage: `<run-id> [--reason TEXT]\n   or: cairn runs resume ${runFilterUsage} [--reason TEXT] [--dry-run] [--no-wait]`,
  optionHelp: [["--reason TEXT", "recorded in the run's history"], ...runFilterHelp, ...batchFlagsHelp],
  options: { reason: { type: "string" }, ...runFilterOptions, ...batchOptions },
  positionalsOptional: true,
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    if (!runId) return runBatch(context, "resume", values);
    singleRunOnly(values);
    const run = await context.client().resumeRun(runId, stringValue(values, "reason"));
    context.io.out(context.json ? jsonDocument(run) : `resumed run ${run.runId}: ${run.status}`);
    return ExitCode.ok;
  },
};

/** A run id and filter flags together are ambiguous: refused rather than guessed. */
function singleRunOnly(values: Parameters<Command["run"]>[1]): void {
  if (Object.keys(runFilterFrom(values)).length > 0 || flag(values, "dry-run") || flag(values, "no-wait")) {
    throw new UsageError("give either a <run-id> or filter flags (a batch over every matching run), not both");
  }
}

export const runsRetry: Command = {
  name: "runs retry",
  summary: "queue a failed run again; it continues from where it failed",
  usage: `<run-id> [--reason TEXT] [--wait]\n   or: cairn runs retry ${runFilterUsage} [--reason TEXT] [--dry-run] [--no-wait]`,
  description:
    "Steps that completed are replayed from the run's journal, not run again; the operation that\n" +
    "failed the run runs again with a fresh attempt count. The history keeps every entry and shows\n" +
    "the retry. Only a failed run can be retried.\n" +
    "With filter flags and no <run-id>: a batch over every matching run (see `cairn batches get`).",
  optionHelp: [
    ["--reason TEXT", "recorded in the run's history"],
    ["--wait", "follow the run until it ends (like `cairn runs watch`)"],
    ...runFilterHelp,
    ...batchFlagsHelp,
  ],
  options: { reason: { type: "string" }, wait: { type: "boolean" }, ...runFilterOptions, ...batchOptions },
  positionalsOptional: true,
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    if (!runId) return runBatch(context, "retry", values);
    singleRunOnly(values);
    const reason = stringValue(values, "reason");
    const run = await context.client().retryRun(runId, reason ? { reason } : {});
    if (flag(values, "wait")) return watchRun(context, run.runId);
    context.io.out(context.json ? jsonDocument(run) : `retried run ${run.runId}: ${run.status}`);
    return ExitCode.ok;
  },
};

export const runsFork: Command = {
  name: "runs fork",
  summary: "start a new run that replays a run up to an operation and runs live from there",
  usage: "<run-id> --from OPERATION [--input JSON | --input-file FILE] [--wait]",
  description:
    "Prints the new run's id. Its journal is a copy of the source run's entries before OPERATION\n" +
    "(a step, sleep, wait or child name as `cairn runs watch` shows it): those are replayed, not\n" +
    "run again, and the run goes on live from OPERATION, with the source's input or --input.\n" +
    "The source run may be in any state and is not changed.",
  optionHelp: [
    ["--from OPERATION", "the operation to run live from (required)"],
    ["--input JSON", "the new run's input, a JSON object (default: the source run's input)"],
    ["--input-file FILE", "read the input from FILE (- for standard input)"],
    ["--wait", "follow the new run until it ends (like `cairn runs watch`)"],
  ],
  options: { from: { type: "string" }, input: { type: "string" }, "input-file": { type: "string" }, wait: { type: "boolean" } },
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    const fromOperation = stringValue(values, "from");
    if (!fromOperation) throw new UsageError("--from OPERATION is required: the operation of the source run to run live from, e.g. --from charge");
    const input = await inputOption(values);
    const run = await context.client().forkRun(runId, { fromOperation, ...(input === undefined ? {} : { input }) });
    if (flag(values, "wait")) return watchRun(context, run.runId);
    context.io.out(context.json ? jsonDocument(run) : run.runId);
    return ExitCode.ok;
  },
};

export const runsWhy: Command = {
  name: "runs why",
  summary: "explain why a run is where it is (waits, near-miss events, queue, lease holder)",
  usage: "<run-id>",
  description:
    "Asks the server (ExplainRun) and prints its explanation: what the run waits on and, for an\n" +
    "event wait, the stored events that did not match and why; for a queued run, whether any live\n" +
    "process loaded its workflow and how many runs are ahead of it; for a running run, who holds\n" +
    "it and whether that process is alive; its pause reason and abnormal activations.",
  options: {},
  positionals: ["run-id"],
  async run(context, _values, [runId = ""]) {
    const explanation = await context.client().explainRun(runId);
    context.io.out(context.json ? jsonDocument(explanation) : explanation.lines.join("\n"));
    return ExitCode.ok;
  },
};

export const runsWatch: Command = {
  name: "runs watch",
  summary: "follow a run live until it ends; the exit code is its outcome",
  usage: "<run-id>",
  description:
    "Prints the run's history so far, then every new entry and status change, then the\n" +
    "result (as JSON) or the error. With --json: one JSON object per line, the last one\n" +
    '{"type":"result",...}. Exits 0 when the run completed, 1 when it failed, 2 when it\n' +
    "was cancelled.",
  options: {},
  positionals: ["run-id"],
  async run(context, _values, [runId = ""]) {
    return watchRun(context, runId);
  },
};
