/**
 * The poison-run breaker's one statement, shared by both ways an activation ends abnormally: its lease lapsed
 * (`requeueExpiredLeases`) or this process saw its code block, crash or run out of memory (`endAbnormally`). Each
 * selected run counts the activation (`abnormal_activations`; `abnormal_streak` in a row when the last abnormal one
 * was the previous activation). Below the limit the run goes back to the queue; at it (and no cancel pending) it is
 * paused, its epoch bumped, with a `run_paused` entry whose message is `reasonHead` + streak + `reasonTail`.
 */
import { type SQL, sql } from "drizzle-orm";

export const reasonHead = "paused after ";

export function abnormalEndStatement(candidates: { where: SQL; skipLocked: boolean }, maxAbnormal: number, reasonTail: string): SQL {
  // The streak limit as an integer parameter; "never" is a number no streak reaches.
  const limit = Number.isFinite(maxAbnormal) ? Math.max(1, Math.floor(maxAbnormal)) : 2_147_483_647;
  return sql`with ended as (
        select id, streak, streak >= ${limit} and cancel_requested_at is null as poisoned
        from (select id, cancel_requested_at,
                     case when last_abnormal_activation = activation_count - 1 then abnormal_streak + 1 else 1 end as streak
              from runs where ${candidates.where}
              for update${candidates.skipLocked ? sql` skip locked` : sql``}) s),
      changed as (
        update runs r set
          status = case when e.poisoned then 'paused' else 'queued' end,
          available_at = case when e.poisoned then null else now() end,
          -- Like PauseRun: the entry below is in no parked journal copy, so the next claim reads the store.
          lease_epoch = r.lease_epoch + case when e.poisoned then 1 else 0 end,
          -- A pending pause request is settled by this pause (a cancel request keeps the run queued instead).
          pause_requested_at = case when e.poisoned then null else r.pause_requested_at end,
          pause_reason = case when e.poisoned then null else r.pause_reason end,
          lease_owner = null, lease_expires_at = null,
          abnormal_activations = r.abnormal_activations + 1,
          abnormal_streak = e.streak, last_abnormal_activation = r.activation_count,
          updated_at = now()
        from ended e where r.id = e.id
        returning r.id, r.namespace, r.status, e.streak),
      noted as (
        insert into journal_entries (run_id, sequence, namespace, kind, name, error, attempt)
        select c.id, (select coalesce(max(j.sequence), 0) + 1 from journal_entries j where j.run_id = c.id), c.namespace,
               'run_paused', '',
               jsonb_build_object('name', 'Paused', 'message', ${reasonHead}::text || c.streak || ${reasonTail}::text),
               1
        from changed c where c.status = 'paused')
      select id, status, streak from changed`;
}
