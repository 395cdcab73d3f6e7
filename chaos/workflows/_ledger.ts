/**
 * The chaos side-effect ledger (skipped by the workflow loader: its name
 * starts with "_"). `ledgerStep` is `ctx.step` whose function first records
 * one execution in the table `chaos_ledger` of the chaos database, written
 * directly with `pg` from inside the step (not through Cairn), then does a
 * little "work" and returns `{ exec, value }`: the execution's unique id and a
 * value that depends only on the run's seed and the step's name.
 *
 * The checker compares the ledger with the journal: the execution id a
 * `step_completed` entry recorded must be in the ledger, and no execution of
 * that (run, step) may have started after the entry committed. Executions
 * that started before (a process killed mid-step, a lease lost mid-step) are
 * the legal at-least-once re-executions; they are counted.
 *
 * The step retries (with backoff) when the ledger write fails, which happens
 * whenever the chaos run cuts connections or restarts PostgreSQL.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { WorkflowContext } from "@cairnjs/sdk/workflow";
import { digest } from "../model.js";

export interface LedgerResult {
  exec: string;
  value: string;
}

let pool: pg.Pool | undefined;

function ledger(): pg.Pool {
  if (!pool) {
    const url = process.env.CHAOS_LEDGER_URL;
    if (!url) throw new Error("chaos workflows need CHAOS_LEDGER_URL (the chaos database) to record step executions");
    pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 3000 });
    pool.on("error", () => {});
  }
  return pool;
}

const retry = { maxAttempts: 40, initialInterval: "100ms", backoffCoefficient: 2, maxInterval: "2s" } as const;

/** A durable step whose every execution is recorded in the ledger; resolves the step's deterministic value. */
export async function ledgerStep(ctx: WorkflowContext, seed: string, name: string): Promise<string> {
  const result = await ctx.step<LedgerResult>(
    name,
    async ({ attempt }) => {
      const startedAt = new Date();
      const exec = randomUUID();
      await ledger().query(
        `insert into chaos_ledger (exec_id, run_id, step, attempt, started_at, pid, server)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [exec, ctx.runId, name, attempt, startedAt, process.pid, process.env.CHAOS_SERVER ?? "?"],
      );
      // Work: mostly short, sometimes long enough for a kill to land in the middle. The abort signal is
      // ignored on purpose, like careless real code: a stale execution finishes, and its result must be dropped.
      const r = Math.random();
      await new Promise((resolve) => setTimeout(resolve, r < 0.1 ? 300 + r * 3000 : 5 + r * 60));
      return { exec, value: digest(seed, name) };
    },
    { retry },
  );
  return result.value;
}
