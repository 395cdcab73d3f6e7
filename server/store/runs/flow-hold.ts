/**
 * Where a run held back by flow control stands: its gate, key and place in line. Counted over the held runs ahead
 * of it in release order (priority, then age) through runs_held_idx / runs_namespace_held_idx, so it costs the
 * length of the line ahead, not a scan of the table. Read only for GetRun and ExplainRun of a held run.
 */
import { type Db, rawQuery } from "../database.js";
import type { FlowGate, RunRow } from "../schema.js";

export interface FlowHold {
  gate: FlowGate;
  key: string;
  /** 1: released next; 0 for the rate limit, which waits for a time instead (availableAt). */
  position: number;
  availableAt: Date | null;
}

export async function flowHoldOf(db: Db, run: RunRow): Promise<FlowHold | undefined> {
  // A waiting run woken (its timer or event) and held at its claim stays WAITING, held like a queued one.
  if (!run.heldBy || (run.status !== "queued" && run.status !== "waiting")) return undefined;
  if (run.heldBy === "rate") return { gate: "rate", key: run.rateKey ?? "", position: 0, availableAt: run.availableAt };
  if (run.availableAt !== null) return undefined; // released already, waiting for its claim
  const [row] =
    run.heldBy === "concurrency"
      ? await rawQuery<{ ahead: string }>(
          db,
          `select count(*) as ahead from runs
           where held_by = 'concurrency' and available_at is null
             and namespace = $1 and workflow_name = $2 and concurrency_key = $3
             and (priority > $4 or (priority = $4 and created_at < $5))`,
          [run.namespace, run.workflowName, run.concurrencyKey, run.priority, run.createdAt],
          "cairn_flow_hold_concurrency",
        )
      : await rawQuery<{ ahead: string }>(
          db,
          `select count(*) as ahead from runs
           where held_by = 'namespace' and available_at is null and namespace = $1
             and (priority > $2 or (priority = $2 and created_at < $3))`,
          [run.namespace, run.priority, run.createdAt],
          "cairn_flow_hold_namespace",
        );
  const key = run.heldBy === "concurrency" ? (run.concurrencyKey ?? "") : run.namespace;
  return { gate: run.heldBy, key, position: Number(row?.ahead ?? 0) + 1, availableAt: null };
}
