/**
 * An activation this process still holds ended abnormally without its lease lapsing: its workflow code blocked its
 * thread past CAIRN_BLOCKED_CODE_MS, crashed it (an uncaught exception or unhandled rejection) or ran it out of
 * memory. It counts towards the poison-run breaker exactly like a lapse (`requeueExpiredLeases`): the streak grows
 * when the previous activation was abnormal too, and at the limit the run is paused with a `run_paused` entry naming
 * the cause; below it the run goes back to the queue at once (abnormal-streak.ts). One statement under the fence: if the process dies
 * before it commits, the lease lapses and the sweep counts the activation instead.
 */
import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../database.js";
import { abnormalEndStatement, reasonHead } from "./abnormal-streak.js";
import type { Fence } from "./lease.js";

/** The reason a run paused by the breaker after abnormal ends (`cause`: how the last one ended). */
export function abnormalPauseReason(streak: number, cause: string): string {
  return `${reasonHead}${streak} abnormal activations in a row: the last ${cause}; ResumeRun lets it try again`;
}

/** What became of the run: back in the queue, paused by the breaker, or nothing (the fence no longer holds). */
export type AbnormalEnd = { status: "queued" | "paused"; streak: number } | undefined;

export async function endAbnormally(db: Db, fence: Fence, cause: string, maxAbnormal = Number.POSITIVE_INFINITY): Promise<AbnormalEnd> {
  // (PostgreSQL text holds no NUL; a step name from workflow code could.)
  const tail = ` abnormal activations in a row: the last ${cause.replaceAll("\0", "")}; ResumeRun lets it try again`;
  const where = sql`id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch} and status = 'running'`;
  const rows = await queryRows<{ status: "queued" | "paused"; streak: number }>(db, abnormalEndStatement({ where, skipLocked: false }, maxAbnormal, tail));
  const row = rows[0];
  return row ? { status: row.status, streak: Number(row.streak) } : undefined;
}

/**
 * Hands back a run whose thread was stopped for another run's code: it is not counted, and it does not break a
 * streak either (a run whose last activation was abnormal keeps that streak going into the next one), so two poison
 * runs sharing a thread cannot shield each other from the breaker. If the process dies first, the lease lapses.
 */
export async function releaseInnocent(db: Db, fence: Fence): Promise<void> {
  await queryRows(
    db,
    sql`update runs set
          status = 'queued', lease_owner = null, lease_expires_at = null, available_at = now(), updated_at = now(),
          last_abnormal_activation = case when last_abnormal_activation = activation_count - 1 then activation_count else last_abnormal_activation end
        where id = ${fence.runId} and lease_owner = ${fence.owner} and lease_epoch = ${fence.epoch} and status = 'running'
        returning id`,
  );
}
