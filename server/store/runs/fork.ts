/**
 * ForkRun in the store: a new queued run of the source's workflow whose journal starts with `run_forked` and
 * continues with a copy of the source's entries before the named operation (core/fork.ts chooses them). Rows
 * are copied in SQL, so each value stays exactly as stored (SQL NULL and JSON null stay distinct). One
 * transaction: a crash leaves either no fork or the whole fork. Copied child and agent entries keep pointing at
 * the source's children and turns; the fork does not start them again.
 */
import { and, eq, sql } from "drizzle-orm";
import type { JsonValue } from "../../../sdk/workflow.js";
import { forkPrefix } from "../../core/fork.js";
import type { ForkedNote } from "../../core/journal.js";
import { type Db, queryRows } from "../database.js";
import { loadJournal } from "../journal.js";
import { type RunRow, runs } from "../schema.js";

export type ForkResult = { outcome: "forked"; run: RunRow; copied: number } | { outcome: "unreached"; source: RunRow };

export async function forkRun(
  db: Db,
  request: { namespace: string; sourceRunId: string; fromOperation: string; newRunId: string; input: JsonValue | undefined },
): Promise<ForkResult | undefined> {
  return db.transaction(async (tx) => {
    const [source] = await tx
      .select()
      .from(runs)
      .where(and(eq(runs.namespace, request.namespace), eq(runs.id, request.sourceRunId)));
    if (!source) return undefined;
    // Entries before the operation are settled history: a source still running only appends after them.
    const prefix = forkPrefix(await loadJournal(tx, source.id), request.fromOperation);
    if (!prefix) return { outcome: "unreached", source };
    const [run] = await tx
      .insert(runs)
      .values({
        id: request.newRunId,
        namespace: source.namespace,
        workflowName: source.workflowName,
        status: "queued",
        input: request.input ?? source.input,
        metadata: source.metadata,
        forkedFromRunId: source.id,
      })
      .returning();
    const note: ForkedNote = { sourceRunId: source.id, fromOperation: request.fromOperation, fromSequence: prefix.fromSequence };
    await queryRows(
      tx,
      sql`insert into journal_entries (run_id, sequence, namespace, kind, name, result, target_run_id, attempt)
          values (${request.newRunId}::uuid, 1, ${source.namespace}, 'run_forked', '', ${JSON.stringify(note)}::jsonb, ${source.id}::uuid, 1)`,
    );
    const sequences = prefix.entries.map((entry) => entry.sequence);
    if (sequences.length > 0) {
      await queryRows(
        tx,
        sql`insert into journal_entries (run_id, sequence, namespace, kind, name, result, error, attempt, started_at, created_at,
                                         fire_at, timeout_at, event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id)
            select ${request.newRunId}::uuid, 1 + row_number() over (order by sequence), namespace, kind, name, result, error, attempt,
                   started_at, created_at, fire_at, timeout_at, event_type, correlation_id, lookback_from, event_id, target_run_id, target_turn_id
            from journal_entries
            where run_id = ${source.id}::uuid and sequence = any(${`{${sequences.join(",")}}`}::int[])`,
      );
    }
    // Claimable now: idle processes hear it when this commits.
    await queryRows(tx, sql`select pg_notify('cairn_wake', '')`);
    return { outcome: "forked", run: run as RunRow, copied: sequences.length };
  });
}
