import type { Failure } from "../api.js";
import { json } from "../api.js";
import { JsonView } from "./json-view.js";

/** An error as recorded: class, message, stack (folded) and any details. */
export function FailureView({ failure }: { failure: Failure }) {
  const details = json(failure.details);
  return (
    <div class="failure">
      <div class="failure-head">
        <strong>{failure.name || "Error"}</strong>: {failure.message}
      </div>
      {failure.stack && (
        <details class="stack">
          <summary>stack</summary>
          <pre>{failure.stack}</pre>
        </details>
      )}
      {details !== undefined && details !== null && <JsonView value={details} open={0} />}
    </div>
  );
}
