// Losing database connections must cost a server process a failed statement,
// never the process itself or a pool slot. Found by the chaos run
// (`npm run test:chaos`): a PostgreSQL restart or pg_terminate_backend while a
// transaction held a pooled client crashed the server with an unhandled
// 'error' event, and a transaction whose BEGIN failed never gave its client
// back to the pool. And while the database was down, calls were answered
// INTERNAL, which clients do not retry, instead of UNAVAILABLE.
import assert from "node:assert/strict";
import { afterAll, beforeAll, test } from "vitest";
import { Code } from "@connectrpc/connect";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { createLogger } from "../../server/logger.js";
import { toConnectError } from "../../server/rpc/error-mapping.js";
import { type Database, openDatabase, queryRows } from "../../server/store/database.js";
import { createTestDatabase, withClient } from "../support/postgres.js";

let url: string;
let dropDatabase: () => Promise<void>;
const opened: Database[] = [];

beforeAll(async () => {
  const database = await createTestDatabase("connection_loss");
  url = database.url;
  dropDatabase = database.drop;
});

afterAll(async () => {
  for (const database of opened) await database.close().catch(() => undefined);
  await dropDatabase();
});

test("a connection cut inside a transaction fails that transaction only; the process and the pool carry on", async () => {
  const store = await openDatabase({ url, dataDir: "/unused", poolSize: 1 });
  opened.push(store);
  let uncaught: unknown;
  const onUncaught = (error: unknown) => (uncaught = error);
  process.on("uncaughtException", onUncaught);
  try {
    await assert.rejects(
      store.db.transaction(async (tx) => {
        const [own] = await queryRows<{ pid: number }>(tx, sql`select pg_backend_pid() as pid`);
        await withClient(url, (c) => c.query("select pg_terminate_backend($1)", [own?.pid]));
        await tx.execute(sql`select 1`);
      }),
    );
    // The socket's end arrives after the failed statement; give it a moment to be (mis)handled.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(uncaught, undefined, `the lost connection escaped as an uncaught exception: ${String(uncaught)}`);
    // One pool slot: it must be usable again.
    const [row] = await queryRows<{ one: number }>(store.db, sql`select 1 as one`);
    assert.equal(row?.one, 1);
    assert.equal(await store.db.transaction(async (tx) => (await queryRows<{ two: number }>(tx, sql`select 2 as two`))[0]?.two), 2);
  } finally {
    process.off("uncaughtException", onUncaught);
  }
});

test("a transaction whose BEGIN fails gives its pooled client back (destroyed)", async () => {
  // Importing the store installs the fix on drizzle's node-postgres session; a pool stand-in makes BEGIN fail.
  const released: unknown[] = [];
  const queries: string[] = [];
  const client = {
    query: async (text: string | { text: string }) => {
      queries.push(typeof text === "string" ? text : text.text);
      throw Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
    },
    release: (error?: unknown) => released.push(error),
  };
  class FailingPool {
    connect = async () => client;
  }
  const db = drizzle({ client: new FailingPool() as never });
  await assert.rejects(db.transaction(async () => assert.fail("the callback must not run")), (error: Error) =>
    /administrator command/.test(String((error.cause as Error | undefined)?.message ?? error.message)),
  );
  assert.deepEqual(queries, ["begin"], "no ROLLBACK for a transaction that never began");
  assert.equal(released.length, 1, "the client was released once");
  assert.ok(released[0] instanceof Error, "released with the error, so the pool destroys it");
});

test("a database that is down, restarting or cut off answers UNAVAILABLE (retryable), not INTERNAL", async () => {
  const logger = createLogger("silent");
  const wrapped = (cause: unknown) => Object.assign(new Error("Failed query: select 1"), { cause }); // as Drizzle wraps driver errors
  const refused = await new pg.Client({ connectionString: "postgres://nobody@127.0.0.1:1/none" }).connect().then(
    () => assert.fail("port 1 accepted a connection"),
    (error: unknown) => error,
  );
  const failures: [string, unknown][] = [
    ["connection refused (PostgreSQL down)", wrapped(refused)],
    ["57P03 the database system is starting up", Object.assign(new Error("the database system is starting up"), { code: "57P03" })],
    ["57P01 terminating connection due to administrator command", wrapped(Object.assign(new Error("terminating connection"), { code: "57P01" }))],
    ["Connection terminated unexpectedly", wrapped(new Error("Connection terminated unexpectedly"))],
    ["a statement on a client whose connection broke", wrapped(new Error("Client has encountered a connection error and is not queryable"))],
    ["pool connect timeout", new Error("timeout exceeded when trying to connect")],
    ["08006 connection failure", Object.assign(new Error("connection failure"), { code: "08006" })],
  ];
  for (const [what, error] of failures) assert.equal(toConnectError(error, logger, "test").code, Code.Unavailable, what);
  assert.equal(toConnectError(new Error("something else"), logger, "test").code, Code.Internal);
  assert.equal(toConnectError(Object.assign(new Error("deadlock"), { code: "40P01" }), logger, "test").code, Code.Aborted);
});
