/** `cairn runs history`: a run's whole history, for people (one line per entry) or as JSON to keep or replay. */
import type { HistoryEntryInfo } from "../../sdk/index.js";
import { positiveInteger } from "../args.js";
import { type Command, ExitCode, jsonDocument, stringValue } from "../command.js";
import { historyLine, statusText } from "../format.js";

export const runsHistory: Command = {
  name: "runs history",
  summary: "print a run's history, oldest first (--json: the run and every entry, to keep or replay)",
  usage: "<run-id> [--after SEQUENCE]",
  description:
    "Prints one line per history entry: its sequence, time, what happened and how long it took,\n" +
    "including the run-level entries (paused, resumed, retried, cancelled, failed). With --json it\n" +
    'prints {"run": ..., "entries": [...]}, the run as `runs get --json` shows it and every entry.',
  optionHelp: [["--after SEQUENCE", "only entries after this sequence number"]],
  options: { after: { type: "string" } },
  positionals: ["run-id"],
  async run(context, values, [runId = ""]) {
    const after = stringValue(values, "after");
    const client = context.client();
    // The run first: a run that does not exist is NOT_FOUND before any paging starts.
    const run = await client.getRun(runId);
    const entries: HistoryEntryInfo[] = [];
    for await (const entry of client.getRunHistory(runId, after === undefined ? {} : { afterSequence: positiveInteger(after, "--after") })) {
      if (context.json) entries.push(entry);
      else context.io.out(historyLine(entry));
    }
    if (context.json) context.io.out(jsonDocument({ run, entries }));
    else context.io.out(`run ${run.runId} (${run.workflowName}) is ${statusText(run)}`);
    return ExitCode.ok;
  },
};
