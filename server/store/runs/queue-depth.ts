/** Queue depth for the metrics scrape: runs queued and waiting (every process), and how long the oldest due one waited. */
import { type Db, rawQuery } from "../database.js";

// Both filters follow runs_due_idx (available_at where status in ('queued', 'waiting')), so a scrape reads the index.
const depthSql = `
  select count(*) filter (where status = 'queued')::int as queued,
         count(*) filter (where status = 'waiting')::int as waiting,
         coalesce(extract(epoch from now() - min(available_at) filter (where available_at <= now())), 0)::float8 as oldest
  from runs where status in ('queued', 'waiting')`;

export async function queueDepth(db: Db): Promise<{ queued: number; waiting: number; oldestDueSeconds: number }> {
  const [row] = await rawQuery<{ queued: number; waiting: number; oldest: number }>(db, depthSql, [], "cairn_queue_depth");
  return { queued: row?.queued ?? 0, waiting: row?.waiting ?? 0, oldestDueSeconds: Math.max(0, row?.oldest ?? 0) };
}
