/** A run executing in this process: its fence, its row as claimed, and how to stop it. */
import type { Fence } from "../store/runs/lease.js";
import type { RunRow } from "../store/schema.js";

export interface ActiveRun {
  fence: Fence;
  /** The run's row as claimed. */
  run: RunRow;
  controller: AbortController;
  done: Promise<void>;
  /** The lease is certainly ours until then (epoch ms): the claim or last renewal was sent before it began. */
  validUntil: number;
}
