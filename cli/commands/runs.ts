/** `cairn runs create | get | list | cancel | pause | resume | why | watch`. */
import type { ListRunsFilter, RunInfo } from "../../sdk/index.js";
import { instant, isJsonObject, jsonOption, keyValuePairs, parseStatuses, positiveInteger, UsageError } from "../args.js";
import { type Command, ExitCode, flag, jsonDocument, stringValue } from "../command.js";
import { runDetail, runDetails, runDuration, table, timestamp, truncate } from "../format.js";
import { watchRun } from "../watch.js";

export const runsCreate: Command = {
  name: "runs create",
  summary: "start a run and print its id",
  usage: "<workflow> [--input JSON | --input-file FILE] [--eager] [--idempotency-key KEY] [--timeout DURATION] [--wait]",
  description:
    "Starts a run of <workflow> and prints its id. With --wait it then follows the run like\n" +
    "`cairn runs watch` and exits with the run's outcome (0 completed, 1 failed, 2 cancelled).",
  optionHelp: [
    ["--input JSON", "the run's input, a JSON object (default {})"],
    ["--input-file FILE", "read the input from FILE (- for standard input)"],
    ["--eager", "start the run in the receiving server process at once instead of queueing it"],
    ["--idempotency-key KEY", "a retry with the same key returns the first run instead of starting another"],
    ["--timeout DURATION", "fail the run (RunTimeoutError) if it has not ended this long after creation, e.g. 30s, 5m, 1h"],
    ["--wait", "follow the run until it ends and print its result"],
  ],
  options: {
    input: { type: "string" },
    "input-file": { type: "string" },
    eager: { type: "boolean" },
    "idempotency-key": { type: "string" },
    timeout: { type: "string" },
    wait: { type: "boolean" },
  },
  positionals: ["workflow"],
  async run(context, values, [workflow = ""]) {
    const input = await jsonOption(stringValue(values, "input"), stringValue(values, "input-file"), "input");
    if (input !== undefined && !isJsonObject(input)) throw new UsageError("the input must be a JSON object, e.g. --input '{\"orderId\":\"o-1\"}'");
    const idempotencyKey = stringValue(values, "idempotency-key");
    const timeout = stringValue(values, "timeout");
    const created = await context.client().createRun(workflow, input ?? {}, {
      eagerStart: flag(values, "eager"),
      ...(idempotencyKey ? { idempotencyKey } : {}),
      ...(timeout !== undefined ? { timeout } : {}),
    });
    if (created.deduplicated && !context.json) context.io.err(`cairn: the idempotency key matched run ${created.runId}; no new run was started`);
    if (flag(values, "wait")) return watchRun(context, created.runId);
    context.io.out(context.json ? jsonDocument({ run: created.run, deduplicated: created.deduplicated }) : created.runId);
    return ExitCode.ok;
  },
};

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
  usage:
    "[--workflow NAME] [--status S,...] [--parent RUN-ID] [--meta KEY=VALUE]... [--created-after T] [--created-before T]\n" +
    "      [--ended-after T] [--ended-before T] [--limit N]",
  optionHelp: [
    ["--workflow NAME", "only runs of this workflow"],
    ["--status S,...", "only runs in these states: queued, running, waiting, paused, completed, failed, cancelled"],
    ["--parent RUN-ID", "only child runs of this run"],
    ["--meta KEY=VALUE", "only runs whose metadata has KEY equal to VALUE (repeat: every pair must match)"],
    ["--created-after T", "only runs created at or after instant T (e.g. 2026-01-31T12:00:00Z)"],
    ["--created-before T", "only runs created before T"],
    ["--ended-after T", "only runs that ended (completed, failed, cancelled) at or after T"],
    ["--ended-before T", "only runs that ended before T"],
    ["--limit N", "at most N runs (default 50)"],
  ],
  options: {
    workflow: { type: "string" },
    status: { type: "string" },
    parent: { type: "string" },
    meta: { type: "string", multiple: true },
    "created-after": { type: "string" },
    "created-before": { type: "string" },
    "ended-after": { type: "string" },
    "ended-before": { type: "string" },
    limit: { type: "string" },
  },
  positionals: [],
  async run(context, values) {
    const limitText = stringValue(values, "limit");
    const limit = limitText === undefined ? 50 : positiveInteger(limitText, "--limit");
    const workflow = stringValue(values, "workflow");
    const statusText = stringValue(values, "status");
    const parent = stringValue(values, "parent");
    const filter: ListRunsFilter = {
      ...(workflow ? { workflow } : {}),
      ...(statusText ? { statuses: parseStatuses(statusText) } : {}),
      ...(parent ? { parentRunId: parent } : {}),
      ...(Array.isArray(values.meta) ? { metadata: keyValuePairs(values.meta as string[], "--meta") } : {}),
      ...instants(values, { createdAfter: "created-after", createdBefore: "created-before", endedAfter: "ended-after", endedBefore: "ended-before" }),
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

function instants<K extends string>(values: Parameters<Command["run"]>[1], flags: Record<K, string>): Partial<Record<K, Date>> {
  const out: Partial<Record<K, Date>> = {};
  for (const [key, name] of Object.entries(flags) as [K, string][]) {
    const raw = stringValue(values, name);
    if (raw !== undefined) out[key] = instant(raw, `--${name}`);
  }
  return out;
}

export const runsCancel: Command = {
  name: "runs cancel",
  summary: "cancel a queued, running or waiting run",
  usage: "<run-id> [--reason TEXT]",
  description: "A waiting or queued run is cancelled at once; a running one at its next durable operation.",
  optionHelp: [["--reason TEXT", "recorded as the run's error message"]],
  options: { reason: { type: "string" } },
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
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
  usage: "<run-id> [--reason TEXT]",
  description: "Nothing claims a paused run: an event sent meanwhile and a timer that comes due wait for the resume.",
  optionHelp: [["--reason TEXT", "recorded in the run's history"]],
  options: { reason: { type: "string" } },
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    const run = await context.client().pauseRun(runId, stringValue(values, "reason"));
    context.io.out(context.json ? jsonDocument(run) : `paused run ${run.runId}`);
    return ExitCode.ok;
  },
};

export const runsResume: Command = {
  name: "runs resume",
  summary: "resume a paused run",
  usage: "<run-id> [--reason TEXT]",
  optionHelp: [["--reason TEXT", "recorded in the run's history"]],
  options: { reason: { type: "string" } },
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    const run = await context.client().resumeRun(runId, stringValue(values, "reason"));
    context.io.out(context.json ? jsonDocument(run) : `resumed run ${run.runId}: ${run.status}`);
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
