/**
 * Run retention: ended runs older than their namespace's retention are deleted with their journals, waits and
 * agent turns (those rows go with the run by ON DELETE CASCADE). One bounded statement per call; two processes
 * sweeping at once lock disjoint runs (SKIP LOCKED) or find nothing. A crash mid-statement rolls it back whole.
 *
 * Never deleted: a run that has not ended; a parent while any child of it still runs (the child's outcome
 * must find its parent's waits); a child while its parent has not ended (the parent may still replay its
 * outcome from the child's row).
 */
import { sql } from "drizzle-orm";
import type { RunRetention } from "../../config.js";
import { type Db, queryRows } from "../database.js";

export async function deleteRunsPastRetention(db: Db, retention: RunRetention, limit: number): Promise<number> {
  const overrides = Object.entries(retention.byNamespace);
  const finite = [retention.defaultMs, ...overrides.map(([, ms]) => ms)].filter((ms): ms is number => ms !== "forever");
  if (finite.length === 0) return 0;
  // The shortest retention bounds the range scan on runs_ended_idx; the exact per-namespace cutoff is checked
  // on the rows it finds.
  const shortestMs = Math.min(...finite);
  const cutoffMs = (ms: number | "forever") => (ms === "forever" ? sql`null` : sql`${ms}::bigint`);
  const namespaceRetention =
    overrides.length === 0
      ? cutoffMs(retention.defaultMs)
      : sql`case r.namespace ${sql.join(
          overrides.map(([namespace, ms]) => sql`when ${namespace} then ${cutoffMs(ms)} `),
          sql``,
        )}else ${cutoffMs(retention.defaultMs)} end`;
  const rows = await queryRows<{ id: string }>(
    db,
    sql`
      with doomed as (
        select r.id from runs r
        where r.status in ('completed', 'failed', 'cancelled')
          and r.completed_at < now() - ${shortestMs}::bigint * interval '1 millisecond'
          and r.completed_at < now() - (${namespaceRetention}) * interval '1 millisecond'
          and not exists (
            select 1 from runs c
            where c.parent_run_id = r.id and c.status not in ('completed', 'failed', 'cancelled')
          )
          and (r.parent_run_id is null or not exists (
            select 1 from runs p
            where p.id = r.parent_run_id and p.status not in ('completed', 'failed', 'cancelled')
          ))
        order by r.completed_at
        limit ${limit}
        for update of r skip locked
      )
      delete from runs where id in (select id from doomed) returning id`,
  );
  return rows.length;
}
