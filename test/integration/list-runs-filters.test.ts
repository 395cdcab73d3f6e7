/**
 * ListRuns' metadata and time-range filters on PostgreSQL, through the SDK and through plain fetch against the
 * Connect JSON protocol; the metadata filter's plan uses runs_metadata_idx; unknown JSON fields in a request
 * are INVALID_ARGUMENT naming the field.
 */
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { createCairnClient, type CairnClient } from "../../sdk/client.js";
import type { CairnServer } from "../../server/app.js";
import { listRunsQuery } from "../../server/store/runs/read.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase, withClient } from "../support/postgres.js";
import { postConnectJson } from "../support/connect-json.js";

let server: CairnServer;
let sdk: CairnClient;
let databaseUrl: string;
let dropDatabase: () => Promise<void>;

// 20,000 ended runs, one second apart, ending 5 s after they were created; `tenant` is one of 100 values,
// `region` one of 2; plus three waiting runs (nothing wakes them) whose `campaign` nothing else has.
const base = Date.parse("2026-01-01T00:00:00Z");
const at = (i: number) => new Date(base + i * 1000);

beforeAll(async () => {
  const database = await createTestDatabase("list_runs_filters");
  dropDatabase = database.drop;
  databaseUrl = database.url;
  ({ server } = await startTestServer({ DATABASE_URL: database.url, WORKFLOW_DIRS: "test/fixtures/wait-workflows" }));
  sdk = createCairnClient({ baseUrl: server.url });
  await withClient(database.url, async (db) => {
    await db.query(
      `insert into runs (id, namespace, workflow_name, status, input, metadata, created_at, updated_at, completed_at)
       select gen_random_uuid(), 'default', 'sleeper', 'completed', '{}'::jsonb,
              jsonb_build_object('tenant', 't-' || (i % 100), 'region', (array['eu', 'us'])[1 + i % 2]),
              $1::timestamptz + make_interval(secs => i), $1::timestamptz + make_interval(secs => i),
              $1::timestamptz + make_interval(secs => i) + interval '5 s'
       from generate_series(0, 19999) as i`,
      [new Date(base)],
    );
    await db.query(
      `insert into runs (id, namespace, workflow_name, status, input, metadata, created_at, updated_at, available_at)
       select gen_random_uuid(), 'default', 'sleeper', 'waiting', '{}'::jsonb, '{"campaign": "spring", "tenant": "t-7"}'::jsonb, now(), now(), null
       from generate_series(1, 3)`,
    );
    await db.query("analyze runs");
  });
});

afterAll(async () => {
  await server?.close();
  await dropDatabase?.();
});

async function all(filter: Parameters<CairnClient["listRuns"]>[0]) {
  const runs = [];
  for await (const run of sdk.listRuns({ pageSize: 1000, ...filter })) runs.push(run);
  return runs;
}

const connectJson = (method: string, body: unknown) => postConnectJson(server.url, method, body);

test("the metadata filter returns exactly the runs holding every given pair, through the SDK and Connect JSON", async () => {
  const marked = await all({ metadata: { campaign: "spring" } });
  assert.equal(marked.length, 3);
  assert.ok(marked.every((run) => run.metadata.campaign === "spring" && run.status === "waiting"));

  // Every pair must match: t-7 has 200 ended runs (i % 100 == 7) plus the 3 marked ones; t-7 in region "us"
  // only the odd i, which is all of them (7 is odd, and i % 100 == 7 keeps i odd).
  assert.equal((await all({ metadata: { tenant: "t-7" } })).length, 203);
  assert.equal((await all({ metadata: { tenant: "t-7", region: "us" } })).length, 200);
  assert.equal((await all({ metadata: { tenant: "t-7", region: "eu" } })).length, 0);
  assert.equal((await all({ metadata: { tenant: "t-7", campaign: "spring" } })).length, 3);

  const { status, json } = await connectJson("ListRuns", { metadata: { campaign: "spring" }, pageSize: 10 });
  assert.equal(status, 200, JSON.stringify(json));
  const runs = json.runs as { metadata: Record<string, string> }[];
  assert.equal(runs.length, 3);
  assert.ok(runs.every((run) => run.metadata.campaign === "spring"));
});

test("created and ended time ranges select by created_at and completed_at, half-open", async () => {
  // Created in [100 s, 110 s): runs 100..109.
  const created = await all({ createdAfter: at(100), createdBefore: at(110) });
  assert.deepEqual(created.map((run) => run.createdAt.getTime()).sort((a, b) => a - b), Array.from({ length: 10 }, (_, k) => at(100 + k).getTime()));

  // Ended in [100 s, 110 s): runs 95..104, which end 5 s after they were created; waiting runs never match.
  const ended = await all({ endedAfter: at(100), endedBefore: at(110) });
  assert.deepEqual(ended.map((run) => run.createdAt.getTime()).sort((a, b) => a - b), Array.from({ length: 10 }, (_, k) => at(95 + k).getTime()));
  assert.equal((await all({ endedAfter: new Date(0), metadata: { campaign: "spring" } })).length, 0);

  const { status, json } = await connectJson("ListRuns", { endedAfter: at(100).toISOString(), endedBefore: at(110).toISOString(), pageSize: 100 });
  assert.equal(status, 200, JSON.stringify(json));
  assert.equal((json.runs as unknown[]).length, 10);
});

test("a selective metadata filter's plan reads runs_metadata_idx, not every run", async () => {
  // (For a common pair, say 1 run in 100, the planner rightly walks runs_list_idx newest first and filters: a
  // page fills after a few thousand rows. A rare pair would make that walk read every run; then the GIN index.)
  await withClient(databaseUrl, async (db) => {
    for (const metadata of [{ campaign: "spring" }, { campaign: "spring", tenant: "t-7" }] as Record<string, string>[]) {
      const query = listRunsQuery(server.database.db, "default", { metadata }, 50).toSQL();
      const plan = (await db.query(`explain ${query.sql}`, query.params)).rows.map((r: Record<string, string>) => Object.values(r)[0]).join("\n");
      assert.match(plan, /Bitmap Index Scan on runs_metadata_idx/, plan);
      assert.doesNotMatch(plan, /Seq Scan/, plan);
    }
  });
});

test("an unknown JSON field in any request is INVALID_ARGUMENT naming it, and nothing is done", async () => {
  // A misspelt filter used to be ignored, listing every run.
  const list = await connectJson("ListRuns", { metdata: { campaign: "spring" } });
  assert.equal(list.status, 400);
  assert.equal(list.json.code, "invalid_argument");
  assert.match(String(list.json.message), /ListRunsRequest.*"metdata" is unknown/);

  const before = await withClient(databaseUrl, async (db) => (await db.query("select count(*)::int as n from runs")).rows[0].n as number);
  const create = await connectJson("CreateRun", { workflowName: "sleeper", input: { ms: 1 }, eagerStrat: true });
  assert.equal(create.status, 400);
  assert.match(String(create.json.message), /"eagerStrat" is unknown/);
  const after = await withClient(databaseUrl, async (db) => (await db.query("select count(*)::int as n from runs")).rows[0].n as number);
  assert.equal(after, before);

  // Known fields in either spelling still parse.
  const ok = await connectJson("ListRuns", { workflow_name: "sleeper", page_size: 1 });
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
});
