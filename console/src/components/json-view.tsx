/** A JSON value as a collapsible tree: objects and arrays fold, the first levels open. */
import type { JsonValue } from "@bufbuild/protobuf";

export function JsonView({ value, open = 1 }: { value: JsonValue | undefined; open?: number }) {
  if (value === undefined) return <span class="muted">none</span>;
  return (
    <div class="json">
      <Node value={value} depth={0} open={open} />
    </div>
  );
}

function Node({ value, depth, open, label }: { value: JsonValue; depth: number; open: number; label?: string }) {
  const key = label === undefined ? null : <span class="json-key">{label}: </span>;
  if (value === null || typeof value !== "object") {
    return (
      <div class="json-line">
        {key}
        <Scalar value={value} />
      </div>
    );
  }
  const entries: [string, JsonValue][] = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  const [start, end] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0) {
    return (
      <div class="json-line">
        {key}
        <span class="json-punct">{start + end}</span>
      </div>
    );
  }
  return (
    <details class="json-node" open={depth < open}>
      <summary>
        {key}
        <span class="json-punct">{start}</span>
        <span class="json-count">
          {entries.length} {Array.isArray(value) ? (entries.length === 1 ? "item" : "items") : entries.length === 1 ? "key" : "keys"}
        </span>
        <span class="json-punct json-close-inline">{end}</span>
      </summary>
      <div class="json-children">
        {entries.map(([k, v]) => (
          <Node key={k} value={v} depth={depth + 1} open={open} label={k} />
        ))}
      </div>
      <span class="json-punct">{end}</span>
    </details>
  );
}

function Scalar({ value }: { value: string | number | boolean | null }) {
  if (value === null) return <span class="json-null">null</span>;
  if (typeof value === "string") return <span class="json-string">{JSON.stringify(value)}</span>;
  if (typeof value === "number") return <span class="json-number">{value}</span>;
  return <span class="json-bool">{String(value)}</span>;
}
