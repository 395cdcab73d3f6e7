/**
 * `cairn deploy check`: would the workflow code in these folders break the runs in flight? It loads the
 * workflow files (as a server would), reads every run that has not ended through the API (ListRuns and
 * GetRunHistory, in the key's namespace) and replays each history against the new code without running a
 * step or writing anything (server/testing/replay-history.ts). A run whose recorded entries the new code does
 * not produce in order would pause with a DeterminismError after the deploy; a run whose workflow the new
 * code no longer has would never be claimed. Both are listed; exit code 1 when any run is.
 */
import { delimiter, resolve } from "node:path";
import { pino } from "pino";
import type { HistoryEntryInfo, RunInfo } from "../../sdk/index.js";
import type { Handler } from "../../server/core/activation.js";
import { replayHistory, type ExportedHistory } from "../../server/testing/replay-history.js";
import { loadWorkflows } from "../../server/workflows/loader.js";
import { validateInput } from "../../server/workflows/registry.js";
import { type Command, ExitCode, jsonDocument, stringValue } from "../command.js";

/**
 * Each run costs a GetRunHistory round trip, so the check is bound by latency, not CPU: this many histories are
 * read (and replayed) at once. Bounded, so a namespace with a million runs in flight is not a million requests.
 */
const historiesInFlight = 16;
/** ListRuns' page: the server's cap (CAIRN_MAX_LIST_RUNS_PAGE_SIZE's default); a smaller cap pages the same. */
const listPageSize = 1000;

interface Divergence {
  runId: string;
  workflowName: string;
  status: string;
  /** What diverges: the first recorded entry the new code does not produce, or the missing workflow. */
  problem: string;
}

export const deployCheck: Command = {
  name: "deploy check",
  summary: "replay every run in flight against new workflow code; list those that would diverge",
  usage: "[--workflow-dirs A:B]",
  description:
    "Loads the workflow files of --workflow-dirs (default $WORKFLOW_DIRS, else ./workflows), reads\n" +
    "every queued, running, waiting or paused run of the key's namespace from the server and replays\n" +
    "its history against that code. Nothing runs and nothing is written. Prints each run that would\n" +
    "diverge with its first mismatching entry, then a summary; exits 1 when any run diverges.\n" +
    "With --json: {checked, diverging: [{runId, workflowName, status, problem}]}.",
  optionHelp: [["--workflow-dirs A:B", "the folders of the code to be deployed"]],
  options: { "workflow-dirs": { type: "string" } },
  positionals: [],
  async run(context, values) {
    const dirs = (stringValue(values, "workflow-dirs") ?? context.env.WORKFLOW_DIRS ?? "./workflows")
      .split(delimiter)
      .filter((dir) => dir.length > 0)
      .map((dir) => resolve(dir));
    const registry = await loadWorkflows(dirs, pino({ level: "silent" }));
    const client = context.client();
    // Listed in ListRuns' order (newest first), whatever order the concurrent checks finish in.
    const found: (Divergence | undefined)[] = [];
    let checked = 0;
    let failure: { error: unknown } | undefined;
    const inFlight = new Set<Promise<void>>();
    for await (const run of client.listRuns({ statuses: ["queued", "running", "waiting", "paused"], pageSize: listPageSize })) {
      if (failure) break;
      const index = checked++;
      const check = divergenceOf(run, registry.find(run.workflowName), async () => {
        const entries: HistoryEntryInfo[] = [];
        for await (const entry of client.getRunHistory(run.runId)) entries.push(entry);
        return entries;
      }).then(
        (problem) => {
          if (problem) found[index] = { runId: run.runId, workflowName: run.workflowName, status: run.status, problem };
        },
        (error: unknown) => {
          failure ??= { error };
        },
      );
      const tracked = check.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
      if (inFlight.size >= historiesInFlight) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure) throw failure.error;
    const diverging = found.filter((d): d is Divergence => d !== undefined);
    if (context.json) {
      context.io.out(jsonDocument({ checked, diverging }));
    } else {
      for (const d of diverging) context.io.out(`run ${d.runId} (${d.workflowName}, ${d.status}): ${d.problem}`);
      context.io.out(
        diverging.length === 0
          ? `all ${checked} runs in flight replay on this code`
          : `${diverging.length} of ${checked} runs in flight would diverge on this code (workflows from ${dirs.join(delimiter)})`,
      );
    }
    return diverging.length === 0 ? ExitCode.ok : ExitCode.checkFailed;
  },
};

/** Why `run` would not replay on `workflow`; undefined when it would. */
async function divergenceOf(
  run: RunInfo,
  workflow: { name: string; handler: Handler; input?: unknown } | undefined,
  history: () => Promise<HistoryEntryInfo[]>,
): Promise<string | undefined> {
  if (!workflow) return `workflow ${run.workflowName} is not in the new code: no server would claim this run`;
  let input: unknown;
  try {
    input = await validateInput(workflow as Parameters<typeof validateInput>[0], run.input ?? {});
  } catch (error) {
    return `its input no longer matches the workflow's schema: ${(error as Error).message}`;
  }
  const exported: ExportedHistory = {
    run: { runId: run.runId, workflowName: run.workflowName, input: input as ExportedHistory["run"]["input"], createdAt: run.createdAt.toISOString() },
    entries: (await history()).map((entry) => ({
      sequence: entry.sequence,
      kind: entry.kind,
      name: entry.name,
      ...(entry.result === undefined ? {} : { result: entry.result }),
      ...(entry.error ? { error: entry.error } : {}),
      attempt: entry.attempt,
      ...(entry.startedAt ? { startedAt: entry.startedAt.toISOString() } : {}),
      ...(entry.createdAt ? { createdAt: entry.createdAt.toISOString() } : {}),
    })),
  };
  const report = await replayHistory(exported, workflow.handler, workflow.name);
  return report.ok ? undefined : report.error.message;
}
