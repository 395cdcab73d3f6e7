/**
 * Run-level history entries written outside an activation (a cancel, a pause, a resume, a retry): appended at the
 * run's next sequence, inside the caller's transaction, which holds the run's row lock so no activation
 * writes in between.
 */
import { and, eq, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import { type Db, queryRows } from "../database.js";
import { type RunRow, runs } from "../schema.js";

export async function appendRunEntry(
  db: Db,
  run: { id: string; namespace: string },
  kind: string,
  error: string | null,
  result: JsonValue | null = null,
): Promise<void> {
  const resultJson = result === null ? null : JSON.stringify(result);
  await queryRows(
    db,
    sql`insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt)
        select ${run.id}::uuid, coalesce(max(sequence), 0) + 1, ${run.namespace}, ${kind}, '', ${resultJson}::jsonb, ${error}::jsonb, 1
        from journal_entries where run_id = ${run.id}::uuid`,
  );
}

/** The run's row, locked for the rest of the transaction (ordered against a concurrent claim). */
export async function lockRun(db: Db, namespace: string, runId: string): Promise<RunRow | undefined> {
  const [run] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.namespace, namespace), eq(runs.id, runId)))
    .for("update");
  return run;
}
