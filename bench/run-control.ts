/**
 * Run control figures: ListRuns by metadata over a large table. The runs are seeded straight into the bench
 * database (one INSERT … SELECT generate_series: ended runs of the bench workflow, each with a unique `order`
 * and one of 100 `tenant`s), then read through the server: the SDK, and plain fetch with Connect JSON as an
 * independent client. The plan is EXPLAINed on the same database to show that the metadata filter walks
 * runs_metadata_idx (a rare key) rather than the whole table.
 */
import pg from "pg";
import type { CairnClient } from "../sdk/index.js";
import { type Summary, summarize } from "./format.js";

export interface ListRunsByMetadataResult {
  seededRuns: number;
  seedMs: number;
  calls: number;
  /** One run matches: `{"order": "o-N"}`, a page of up to 20. */
  rareSdkMs: Summary;
  rareFetchMs: Summary;
  /** 1 % of the runs match: `{"tenant": "t-N"}`, a page of 50. */
  commonSdkMs: Summary;
  /** The plan of the rare-key page: the index names it uses (runs_metadata_idx expected). */
  rarePlanIndexes: string[];
  rarePlanScansTable: boolean;
}

/** Seeds `runs` ended runs, then times `calls` ListRuns pages of each kind. */
export async function listRunsByMetadata(
  client: CairnClient,
  serverUrl: string,
  databaseUrl: string,
  options: { runs: number; calls: number; signal: AbortSignal },
): Promise<ListRunsByMetadataResult> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const seedStarted = performance.now();
    await db.query(
      `insert into runs (id, namespace, workflow_name, status, input, metadata, created_at, updated_at, completed_at, available_at)
       select gen_random_uuid(), 'default', 'bench_steps', 'completed', '{}'::jsonb,
              jsonb_build_object('tenant', 't-' || (i % 100), 'order', 'o-' || i),
              now() - i * interval '1 millisecond', now(), now() - i * interval '1 millisecond', null
       from generate_series(1, $1::int) as i`,
      [options.runs],
    );
    await db.query("analyze runs");
    const seedMs = performance.now() - seedStarted;

    const order = () => `o-${1 + Math.floor(Math.random() * options.runs)}`;
    const timed = async (call: () => Promise<number>, expect: (count: number) => boolean, label: string) => {
      const times: number[] = [];
      for (let i = 0; i < options.calls && !options.signal.aborted; i++) {
        const started = performance.now();
        const count = await call();
        times.push(performance.now() - started);
        if (!expect(count)) throw new Error(`${label}: a page of ${count} runs`);
      }
      return summarize(times.sort((a, b) => a - b));
    };
    const rareSdkMs = await timed(async () => (await client.listRunsPage({ metadata: { order: order() }, pageSize: 20 })).runs.length, (n) => n === 1, "rare key (SDK)");
    const rareFetchMs = await timed(
      async () => {
        const response = await fetch(`${serverUrl}/cairn.v1.WorkflowService/ListRuns`, {
          method: "POST",
          headers: { "content-type": "application/json", "connect-protocol-version": "1" },
          body: JSON.stringify({ metadata: { order: order() }, pageSize: 20 }),
        });
        if (!response.ok) throw new Error(`ListRuns over fetch: HTTP ${response.status} ${await response.text()}`);
        return ((await response.json()) as { runs?: unknown[] }).runs?.length ?? 0;
      },
      (n) => n === 1,
      "rare key (fetch)",
    );
    const commonSdkMs = await timed(
      async () => (await client.listRunsPage({ metadata: { tenant: `t-${Math.floor(Math.random() * 100)}` }, pageSize: 50 })).runs.length,
      (n) => n === 50,
      "common key (SDK)",
    );

    // The statement listRunsQuery (server/store/runs/read.ts) builds for a metadata filter and a page of 20.
    const plan = await db.query<{ "QUERY PLAN": unknown }>(
      `explain (format json) select * from runs where namespace = 'default' and metadata @> $1::jsonb
       order by created_at desc nulls last, id desc nulls last limit 21`,
      [JSON.stringify({ order: "o-1" })],
    );
    const planText = JSON.stringify(plan.rows[0]?.["QUERY PLAN"]);
    const rarePlanIndexes = [...new Set([...planText.matchAll(/"Index Name":"([^"]+)"/g)].map((match) => match[1] ?? ""))];
    return {
      seededRuns: options.runs,
      seedMs,
      calls: options.calls,
      rareSdkMs,
      rareFetchMs,
      commonSdkMs,
      rarePlanIndexes,
      rarePlanScansTable: planText.includes('"Node Type":"Seq Scan"'),
    };
  } finally {
    await db.end();
  }
}
