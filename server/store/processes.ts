/**
 * The `processes` table: each server process says who it is and which workflows it loaded. Upserted at
 * worker start and at every lease heartbeat (so a row a sweep dropped during a long stall comes back),
 * deleted on a clean shutdown. A process that dies leaves a row that stops counting as live once
 * `last_seen_at` is older than its lease, and is deleted by the sweep an hour later.
 */
import { eq, getTableColumns, sql } from "drizzle-orm";
import { type Db, queryRows } from "./database.js";
import { type ProcessRow, processes } from "./schema.js";

export interface ProcessAnnouncement {
  id: string;
  host: string;
  pid: number;
  workflows: readonly string[];
  version: string;
  leaseMs: number;
}

/** Inserts or refreshes this process's row (last_seen_at = now()). */
export async function announceProcess(db: Db, process: ProcessAnnouncement): Promise<void> {
  await db
    .insert(processes)
    .values({ ...process, workflows: [...process.workflows] })
    .onConflictDoUpdate({
      target: processes.id,
      set: { lastSeenAt: sql`now()`, workflows: [...process.workflows], leaseMs: process.leaseMs, version: process.version },
    });
}

/** A clean shutdown: the process no longer claims anything. */
export async function removeProcess(db: Db, id: string): Promise<void> {
  await db.delete(processes).where(eq(processes.id, id));
}

/** Processes seen within their own lease (three heartbeats): they claim runs of the workflows they loaded. */
export async function liveProcesses(db: Db): Promise<ProcessRow[]> {
  return db
    .select()
    .from(processes)
    .where(sql`${processes.lastSeenAt} > now() - ${processes.leaseMs} * interval '1 millisecond'`)
    .orderBy(processes.startedAt);
}

/** One process's row, live or not (undefined: unknown, or swept long ago). */
export async function processById(db: Db, id: string): Promise<(ProcessRow & { live: boolean }) | undefined> {
  const [row] = await db
    .select({ ...getTableColumns(processes), live: sql<boolean>`${processes.lastSeenAt} > now() - ${processes.leaseMs} * interval '1 millisecond'` })
    .from(processes)
    .where(eq(processes.id, id));
  return row;
}

/** Rows of processes not seen for an hour (they died without a clean shutdown); returns how many. */
export async function deleteDeadProcesses(db: Db): Promise<number> {
  const rows = await queryRows<{ id: string }>(db, sql`delete from processes where last_seen_at < now() - interval '1 hour' returning id`);
  return rows.length;
}
