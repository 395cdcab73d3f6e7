/** `cairn events send`. */
import { jsonOption } from "../args.js";
import { type Command, ExitCode, jsonDocument, stringValue } from "../command.js";

export const eventsSend: Command = {
  name: "events send",
  summary: "send an event to the runs waiting for it",
  usage: "<event-type> <correlation-id> [--payload JSON | --payload-file FILE] [--run-id ID] [--idempotency-key KEY]",
  description:
    "Stores the event and wakes every run waiting on this event type and correlation id.\n" +
    "An event nobody waits for yet is kept for waits that start later.",
  optionHelp: [
    ["--payload JSON", "the event's payload, any JSON value"],
    ["--payload-file FILE", "read the payload from FILE (- for standard input)"],
    ["--run-id ID", "deliver to this run only"],
    ["--idempotency-key KEY", "a retry with the same key stores the event once"],
  ],
  options: {
    payload: { type: "string" },
    "payload-file": { type: "string" },
    "run-id": { type: "string" },
    "idempotency-key": { type: "string" },
  },
  positionals: ["event-type", "correlation-id"],
  async run(context, values, [eventType = "", correlationId = ""]) {
    const payload = await jsonOption(stringValue(values, "payload"), stringValue(values, "payload-file"), "payload");
    const runId = stringValue(values, "run-id");
    const idempotencyKey = stringValue(values, "idempotency-key");
    const result = await context.client().sendEvent({
      eventType,
      correlationId,
      ...(payload !== undefined ? { payload } : {}),
      ...(runId ? { runId } : {}),
      ...(idempotencyKey ? { idempotencyKey } : {}),
    });
    if (context.json) {
      context.io.out(jsonDocument(result));
      return ExitCode.ok;
    }
    context.io.out(`event ${result.eventId}${result.deduplicated ? " (already stored under this idempotency key)" : ""}`);
    const count = result.matchedRunIds.length;
    if (count === 0) context.io.out("matched no waiting run; the event is kept for waits that start later");
    else context.io.out(`matched ${count} run${count === 1 ? "" : "s"}:\n${result.matchedRunIds.map((id) => `  ${id}`).join("\n")}`);
    return ExitCode.ok;
  },
};
