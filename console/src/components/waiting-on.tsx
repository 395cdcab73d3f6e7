/** What a waiting run waits on, in a sentence: the answer to "why is it stuck?". */
import type { WaitingOn } from "../api.js";
import { date } from "../api.js";
import { duration, shortId, time } from "../format.js";

export function WaitingOnText({ waiting, now = Date.now() }: { waiting: WaitingOn; now?: number }) {
  const target = waiting.target;
  const until = (at: Date | undefined) =>
    at === undefined ? null : at.getTime() > now ? (
      <span class="muted"> (in {duration(at.getTime() - now)}, at {time(at)})</span>
    ) : (
      <span class="muted"> (due since {time(at)})</span>
    );
  switch (target.case) {
    case "timer":
      return <span>timer <b>{waiting.name}</b>{until(date(target.value.fireAt))}</span>;
    case "event":
      return (
        <span>
          event <b>{target.value.eventType}</b>
          {target.value.correlationId && <> · {target.value.correlationId}</>}
          {target.value.timeoutAt && <span class="muted"> times out{until(date(target.value.timeoutAt))}</span>}
        </span>
      );
    case "child":
      return (
        <span>
          child <a href={`/runs/${target.value.runId}`}>{target.value.workflowName} {shortId(target.value.runId)}</a>
        </span>
      );
    case "agent":
      return <span>agent <b>{target.value.agent}</b> turn {shortId(target.value.turnId)}</span>;
    case "retry":
      return <span>retry of <b>{target.value.stepName}</b> (attempt {target.value.nextAttempt}){until(date(target.value.retryAt))}</span>;
    default:
      return <span>{waiting.name}</span>;
  }
}
