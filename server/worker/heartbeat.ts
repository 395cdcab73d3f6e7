/**
 * The lease heartbeat: one statement renews the leases of every run this
 * process executes. A run whose lease moved on (or whose cancel was requested)
 * is aborted at once; past the lease without a renewal, everything is aborted
 * rather than running steps nobody can journal. Any process also returns runs
 * whose lease lapsed to the queue (a holder died).
 */
import { LeaseLostError, RunCancelRequestedError } from "../core/errors.js";
import type { Logger } from "../logger.js";
import type { Db } from "../store/database.js";
import { renewLeases, requeueExpiredLeases } from "../store/runs/lease.js";
import type { ActiveRun } from "./active-run.js";

export interface HeartbeatInput {
  db: Db;
  owner: string;
  leaseMs: number;
  /** CAIRN_MAX_ABNORMAL_ACTIVATIONS: a run whose lease lapses this many activations in a row is paused, not requeued. */
  maxAbnormalActivations: number;
  logger: Logger;
  active: ReadonlyMap<string, ActiveRun>;
  /** When the leases were last renewed (epoch ms). */
  lastRenewal: number;
  /** Lapsed runs went back to the queue: look for claimable runs. */
  onRequeued: () => void;
}

/** Renews the held leases; true when the renewal reached the store. */
export async function renewHeldLeases(input: HeartbeatInput): Promise<boolean> {
  const { db, owner, leaseMs, logger, active } = input;
  let renewedAt: number | undefined;
  try {
    const held = new Map([...active].map(([id, run]) => [id, run.fence.epoch]));
    const sentAt = Date.now();
    const renewed = await renewLeases(db, owner, leaseMs, [...held.keys()]);
    renewedAt = Date.now();
    const renewedEpochs = new Map(renewed.map((lease) => [lease.runId, lease]));
    for (const [id, epoch] of held) {
      const lease = renewedEpochs.get(id);
      const run = active.get(id);
      if (!run || run.fence.epoch !== epoch) continue;
      if (!lease || lease.epoch !== epoch) run.controller.abort(new LeaseLostError(id));
      else if (lease.cancelRequested) run.controller.abort(new RunCancelRequestedError(id, "cancelled"));
      else run.validUntil = sentAt + leaseMs;
    }
    // Any process may return lapsed runs to the queue; the claim that follows bumps their epoch.
    const { requeued, paused } = await requeueExpiredLeases(db, input.maxAbnormalActivations);
    if (requeued.length > 0) {
      logger.info({ runs: requeued.length }, "requeued runs whose lease lapsed");
      input.onRequeued();
    }
    if (paused.length > 0) {
      logger.warn({ runs: paused, limit: input.maxAbnormalActivations }, "paused poison runs: their lease lapsed CAIRN_MAX_ABNORMAL_ACTIVATIONS activations in a row");
    }
  } catch (error) {
    logger.warn({ err: error }, "lease heartbeat failed");
    // Past the lease, others may own our runs: stop executing rather than run steps nobody can journal.
    if (Date.now() - (renewedAt ?? input.lastRenewal) > leaseMs) {
      for (const [id, run] of active) run.controller.abort(new LeaseLostError(id));
    }
  }
  return renewedAt !== undefined;
}
