import { RunStatus } from "../api.js";
import { statusName } from "../format.js";

export function StatusBadge({ status }: { status: RunStatus }) {
  const name = statusName(status);
  return <span class={`badge status-${name}`} data-status={name}>{name}</span>;
}
