/**
 * Send an event: prefilled with the type and correlation id the run waits for, addressed to this run.
 * Available to any run that has not ended (an event may be sent before the run starts waiting).
 */
import type { JsonValue } from "@bufbuild/protobuf";
import { useState } from "preact/hooks";
import { RunStatus, api, errorText, value } from "../api.js";
import type { Action } from "../registry.js";

const ended = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]);

export const action: Action = {
  scope: "run",
  order: 2,
  available: ({ run }) => run !== undefined && !ended.has(run.status),
  component: function SendEvent({ target, done }) {
    const run = target.run;
    const waiting = run?.waitingOn?.target.case === "event" ? run.waitingOn.target.value : undefined;
    const [open, setOpen] = useState(false);
    const [eventType, setEventType] = useState(waiting?.eventType ?? "");
    const [correlationId, setCorrelationId] = useState(waiting?.correlationId ?? "");
    const [payload, setPayload] = useState("{}");
    if (!run) return null;
    if (!open) {
      return (
        <button
          name="send-event"
          class={waiting ? "primary" : ""}
          onClick={() => {
            setEventType(waiting?.eventType ?? eventType);
            setCorrelationId(waiting?.correlationId ?? correlationId);
            setOpen(true);
          }}
        >
          Send event…
        </button>
      );
    }
    return (
      <form
        class="action inline send-event"
        onSubmit={async (event) => {
          event.preventDefault();
          let body: JsonValue;
          try {
            body = JSON.parse(payload) as JsonValue;
          } catch {
            done(<span class="error">The payload is not valid JSON.</span>);
            return;
          }
          try {
            const response = await api.sendEvent({ eventType, correlationId, payload: value(body), runId: run.runId });
            done(response.matchedRunIds.length > 0 ? "Event delivered: the run wakes up." : "Event stored: the run receives it when it waits for it.");
            setOpen(false);
          } catch (error) {
            done(<span class="error">{errorText(error)}</span>);
          }
        }}
      >
        <label class="field">
          <span class="field-name">event type</span>
          <input name="event-type" required value={eventType} onInput={(e) => setEventType(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span class="field-name">correlation id</span>
          <input name="correlation-id" value={correlationId} onInput={(e) => setCorrelationId(e.currentTarget.value)} />
        </label>
        <label class="field grow">
          <span class="field-name">payload (JSON)</span>
          <textarea name="payload" rows={2} spellcheck={false} value={payload} onInput={(e) => setPayload(e.currentTarget.value)} />
        </label>
        <button type="submit" class="primary" name="confirm-send">
          Send
        </button>
        <button type="button" class="link" onClick={() => setOpen(false)}>
          close
        </button>
      </form>
    );
  },
};
