/**
 * `runs watch` (and `runs create --wait`): follow a run over WatchRun until it ends.
 * Human output is a header, one line per history entry and status change, and a final
 * line with the outcome; `--json` prints every update as one JSON object per line and
 * ends with a `{"type":"result", ...}` line. The exit code says how the run ended.
 */
import type { RunInfo } from "../sdk/index.js";
import { type CommandContext, ExitCode } from "./command.js";
import { entryLine, failure, isFinished, json, runDuration, statusText } from "./format.js";

/** The watch stream closed while the run had not ended (it reconnects on its own first). */
export class WatchEndedError extends Error {
  override readonly name = "WatchEndedError";
}

/** Clean ends of the stream before the run ended that are resumed before giving up. */
const maxResumes = 3;

export async function watchRun(context: CommandContext, runId: string): Promise<number> {
  const { io } = context;
  const client = context.client();
  // A plain GetRun first: an unknown run or an unreachable server fails at once (with the
  // SDK's retries) instead of going through the stream's reconnect back-off.
  let run = await client.getRun(runId);
  // The header carries the status at the start, so the history that follows (which led
  // there) is not preceded by a status line out of order.
  let shown = statusKey(run);
  if (!context.json) io.out(`run ${run.runId} · ${run.workflowName} · ${statusText(run)}`);

  let afterSequence = 0;
  for (let resumes = 0; ; resumes++) {
    for await (const update of client.watchRun(runId, { afterSequence })) {
      if (update.type === "entry") afterSequence = update.entry.sequence;
      else run = update.run;
      if (context.json) {
        io.out(JSON.stringify(update));
        continue;
      }
      if (update.type === "entry") {
        const line = entryLine(update.entry);
        if (line !== undefined) io.out(line);
        continue;
      }
      // The final status is reported once the stream ends (its entry and snapshot come in either order).
      if (isFinished(run)) continue;
      const key = statusKey(run);
      if (key !== shown) io.out(`  ▸ ${statusText(run)}`);
      shown = key;
    }
    if (isFinished(run)) break;
    // The stream ended cleanly with the run still going: the server shut down (a broken
    // stream is resumed by the SDK itself). Another replica may answer: resume after the
    // last entry seen; when none does, GetRun reports that Cairn cannot be reached.
    // (Even when GetRun says it has ended now, the resumed stream still brings its last entries.)
    const now = await client.getRun(runId);
    if (resumes >= maxResumes && isFinished(now)) {
      run = now;
      break;
    }
    if (resumes >= maxResumes) throw new WatchEndedError(`the watch of run ${runId} kept ending before the run did (it is ${now.status}); watch it again to follow it`);
  }
  report(context, run);
  return outcomeExitCode(run);
}

function statusKey(run: RunInfo): string {
  return `${run.status} ${JSON.stringify(run.waitingOn ?? null)}`;
}

function report(context: CommandContext, run: RunInfo): void {
  if (context.json) {
    context.io.out(
      JSON.stringify({
        type: "result",
        runId: run.runId,
        status: run.status,
        ...(run.status === "completed" ? { output: run.output ?? null } : {}),
        ...(run.error ? { error: run.error } : {}),
      }),
    );
    return;
  }
  const took = runDuration(run);
  if (run.status === "completed") {
    context.io.out(`completed in ${took}`);
    context.io.out(json(run.output));
  } else if (run.status === "failed") {
    context.io.out(`failed after ${took}: ${failure(run.error)}`);
  } else {
    context.io.out(`cancelled after ${took}${run.error?.message ? `: ${run.error.message}` : ""}`);
  }
}

function outcomeExitCode(run: RunInfo): number {
  if (run.status === "failed") return ExitCode.runFailed;
  if (run.status === "cancelled") return ExitCode.runCancelled;
  return ExitCode.ok;
}
