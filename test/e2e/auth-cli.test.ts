// `cairn keys` as an operator runs it (a child process on the database), and API keys across
// real server processes: a key revoked with the CLI stops working at once on two servers sharing
// one PostgreSQL database, the default auth mode per store and host, open mode's warning and its
// refusal to listen on a public address, and bootstrapping keys for the embedded PGlite store.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, test } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { CairnError, createCairnClient } from "../../sdk/index.js";
import { createTestDatabase, type TestDatabase, withClient } from "../support/postgres.js";
import { repoRoot, type ServerProcess, startServerProcess, stopAllServerProcesses } from "../support/server-process.js";

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node cli/cairn.mjs ...args` with exactly the given store variables. */
function cairn(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  delete childEnv.CAIRN_API_KEY;
  if (!("DATABASE_URL" in env)) delete childEnv.DATABASE_URL;
  const child = spawn(process.execPath, ["cli/cairn.mjs", ...args], { cwd: repoRoot, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  return new Promise((resolve) => {
    child.once("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

const keyPattern = /^cairn_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

async function refusedWith(call: Promise<unknown>): Promise<Code | undefined> {
  try {
    await call;
    return undefined;
  } catch (error) {
    return error instanceof CairnError ? error.code : ConnectError.from(error).code;
  }
}

afterAll(async () => {
  await stopAllServerProcesses();
});

describe("cairn keys", () => {
  let database: TestDatabase;
  let env: Record<string, string>;

  beforeAll(async () => {
    database = await createTestDatabase("keys_cli");
    env = { DATABASE_URL: database.url };
  });
  afterAll(async () => {
    await database?.drop();
  });

  test("create prints the key once on stdout; only its SHA-256 is stored; list shows ids, roles and status, never secrets", async () => {
    const [created, json] = await Promise.all([
      cairn(["keys", "create", "--namespace", "default", "--role", "admin", "--name", "ops"], env),
      cairn(["keys", "create", "--namespace", "team-b", "--role", "worker", "--json"], env),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim();
    const match = keyPattern.exec(key);
    assert.ok(match, `stdout is the key alone: ${JSON.stringify(created.stdout)}`);
    const [, id = "", secret = ""] = match;
    assert.match(created.stderr, new RegExp(`created admin key ${id} \\("ops"\\) in namespace default .*the secret is not shown again`));

    assert.equal(json.code, 0, json.stderr);
    const worker = JSON.parse(json.stdout) as { id: string; namespace: string; role: string; key: string; revokedAt: null };
    assert.equal(worker.namespace, "team-b");
    assert.equal(worker.role, "worker");
    assert.equal(worker.revokedAt, null);
    assert.ok(worker.key.startsWith(`cairn_${worker.id}_`));

    const [row] = await withClient(database.url, async (c) => (await c.query("select * from api_keys where id = $1", [id])).rows as Record<string, unknown>[]);
    assert.equal(row?.secret_hash, createHash("sha256").update(secret).digest("hex"));
    assert.ok(!JSON.stringify(row).includes(secret), "the secret itself is not stored");

    const [listed, filtered] = await Promise.all([cairn(["keys", "list"], env), cairn(["keys", "list", "--namespace", "team-b", "--json"], env)]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^KEY ID\s+NAMESPACE\s+ROLE\s+NAME\s+CREATED\s+LAST USED\s+STATUS/);
    assert.match(listed.stdout, new RegExp(`${id}\\s+default\\s+admin\\s+ops\\s+.*active`));
    assert.match(listed.stdout, new RegExp(`${worker.id}\\s+team-b\\s+worker`));
    assert.ok(!listed.stdout.includes(secret) && !listed.stdout.includes("cairn_"), "no secret in the listing");

    const { keys } = JSON.parse(filtered.stdout) as { keys: { id: string; namespace: string }[] };
    assert.deepEqual(keys.map((k) => k.id), [worker.id]);
    assert.ok(!filtered.stdout.includes("secret"));
  });

  test("revoke marks the key revoked (by id or whole key); again is a no-op; an unknown id exits 4 not_found", async () => {
    const key = (await cairn(["keys", "create", "--namespace", "default", "--role", "client"], env)).stdout.trim();
    const id = keyPattern.exec(key)?.[1] ?? "";
    const revoked = await cairn(["keys", "revoke", id], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout.trim(), `revoked client key ${id} of namespace default`);
    const [again, listed, unknown] = await Promise.all([
      cairn(["keys", "revoke", key, "--json"], env),
      cairn(["keys", "list"], env),
      cairn(["keys", "revoke", "0123456789abcdef"], env),
    ]);
    assert.equal(again.code, 0, again.stderr);
    const body = JSON.parse(again.stdout) as { id: string; alreadyRevoked: boolean; revokedAt: string };
    assert.equal(body.id, id);
    assert.equal(body.alreadyRevoked, true);
    assert.ok(body.revokedAt);
    assert.match(listed.stdout, new RegExp(`${id}.*revoked \\d{4}-`));
    assert.equal(unknown.code, 4);
    assert.equal(unknown.stderr.trim(), "cairn: not_found: no API key has the id 0123456789abcdef");
  });

  test("usage errors exit 3 with the command's usage; an unreachable database exits 3", async () => {
    const cases: [string[], RegExp][] = [
      [["keys", "create", "--role", "admin"], /--namespace is required/],
      [["keys", "create", "--namespace", "default"], /--role is required: admin, client or worker/],
      [["keys", "create", "--namespace", "default", "--role", "root"], /--role "root" is not a role/],
      [["keys", "create", "--namespace", "no spaces", "--role", "admin"], /--namespace "no spaces" is not a namespace/],
      [["keys", "revoke", "xyz"], /"xyz" is not a key id/],
      [["keys", "list", "--url", "http://127.0.0.1:1"], /--url and --ca apply to `cairn keys` only through the API/],
    ];
    const [unreachable, ...results] = await Promise.all([
      cairn(["keys", "list", "--json"], { DATABASE_URL: "postgres://root@127.0.0.1:1/nowhere" }),
      ...cases.map(([args]) => cairn(args, env)),
    ]);
    for (const [index, [args, message]] of cases.entries()) {
      const result = results[index] as CliResult;
      assert.equal(result.code, 3, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    assert.ok(unreachable);
    assert.equal(unreachable.code, 3);
    const error = JSON.parse(unreachable.stderr) as { error: { code: string; message: string } };
    assert.equal(error.error.code, "unavailable");
    assert.match(error.error.message, /^cannot open postgres:\/\/root@127\.0\.0\.1:1\/nowhere/);
  });
});

describe("two server processes on one database", () => {
  let database: TestDatabase;
  let servers: ServerProcess[];

  beforeAll(async () => {
    database = await createTestDatabase("keys_procs");
    // CAIRN_AUTH unset: on PostgreSQL that means keys. A long cache TTL: only the notice can explain a prompt refusal.
    const env = { CAIRN_AUTH: "", CAIRN_KEY_CACHE_TTL: "10m" };
    servers = await Promise.all(
      ["first", "second"].map((name) => startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/auth-workflows", name, env })),
    );
  });
  afterAll(async () => {
    await stopAllServerProcesses();
    await database?.drop();
  });

  test("with no key yet, the servers say so at start-up and refuse requests", async () => {
    for (const server of servers) {
      const warning = server.logRecords().find((r) => r.level === 40 && /none exists yet/.test(String(r.msg)));
      assert.ok(warning, `${server.name} warned that no key exists`);
      const listening = server.logRecords().find((r) => r.msg === "cairn server listening");
      assert.equal(listening?.auth, "keys");
      assert.equal(await refusedWith(createCairnClient({ baseUrl: server.url, retry: false }).listWorkflows()), Code.Unauthenticated);
    }
  });

  test("a key revoked with `cairn keys revoke` is refused at once by both servers; last use is recorded at shutdown", async () => {
    const created = await cairn(["keys", "create", "--namespace", "default", "--role", "client", "--name", "ci"], { DATABASE_URL: database.url });
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim();
    const id = keyPattern.exec(key)?.[1] ?? "";
    const clients = servers.map((server) => createCairnClient({ baseUrl: server.url, apiKey: key, retry: false }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const client of clients) {
      await client.listWorkflows();
      const run = await client.createRun("quick", { n: 1 }, { eagerStart: true });
      assert.equal(run.run.namespace, "default");
    }

    const revoked = await cairn(["keys", "revoke", id], { DATABASE_URL: database.url });
    assert.equal(revoked.code, 0, revoked.stderr);
    const since = Date.now();
    const refusedAfter = await Promise.all(
      clients.map(async (client, index) => {
        for (;;) {
          const code = await refusedWith(client.listWorkflows());
          if (code !== undefined) {
            assert.equal(code, Code.Unauthenticated, servers[index]?.name);
            return Date.now() - since;
          }
          assert.ok(Date.now() - since < 3000, `${servers[index]?.name} still accepts the revoked key`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }),
    );
    for (const ms of refusedAfter) assert.ok(ms < 1000, `refused ${ms} ms after the revoke command returned (cache TTL: 10 min)`);
    const error = await clients[0]?.getRun("00000000-0000-4000-8000-000000000000").catch((e: unknown) => e);
    assert.match(String((error as Error).message), new RegExp(`API key ${id} has been revoked`));

    // Usage is written in batches; a graceful stop writes the last batch.
    const first = servers[0] as ServerProcess;
    first.kill("SIGTERM");
    assert.equal((await first.exited).code, 0);
    const listed = JSON.parse((await cairn(["keys", "list", "--json"], { DATABASE_URL: database.url })).stdout) as { keys: { id: string; lastUsedAt: string | null }[] };
    assert.ok(listed.keys.find((k) => k.id === id)?.lastUsedAt, "last_used_at was recorded");
  });
});

describe("open mode", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase("open_mode");
  });
  afterAll(async () => {
    await stopAllServerProcesses();
    await database?.drop();
  });

  test("CAIRN_AUTH=open warns at start-up and serves every request as admin of namespace default, ignoring keys", async () => {
    const server = await startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/auth-workflows", env: { CAIRN_AUTH: "open" } });
    const warning = server.logRecords().find((r) => r.level === 40 && /^OPEN MODE: no API key is checked/.test(String(r.msg)));
    assert.ok(warning, "a warn-level OPEN MODE line");
    const anonymous = createCairnClient({ baseUrl: server.url });
    const run = await anonymous.createRun("quick", { n: 1 });
    assert.equal(run.run.namespace, "default");
    const bogus = createCairnClient({ baseUrl: server.url, apiKey: "not-a-key" });
    assert.equal((await bogus.getRun(run.runId)).namespace, "default");
    server.kill("SIGTERM");
    await server.exited;
  });

  test("open mode on a non-loopback HOST refuses to start (exit 2) unless CAIRN_ALLOW_OPEN=true", async () => {
    await assert.rejects(
      startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/auth-workflows", env: { CAIRN_AUTH: "open", HOST: "0.0.0.0" } }),
      (error: Error) => /exit code 2/.test(error.message) && /CAIRN_AUTH=open with HOST="0\.0\.0\.0".*CAIRN_ALLOW_OPEN=true/.test(error.message),
    );
    const allowed = await startServerProcess({
      databaseUrl: database.url,
      workflowDirs: "test/fixtures/auth-workflows",
      env: { CAIRN_AUTH: "open", HOST: "0.0.0.0", CAIRN_ALLOW_OPEN: "true" },
    });
    assert.equal(allowed.logRecords().find((r) => r.msg === "cairn server listening")?.auth, "open");
    allowed.kill("SIGTERM");
    await allowed.exited;
  });
});

describe("the embedded store", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "cairn-keys-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  test("keys made with --data-dir work once the server runs with CAIRN_AUTH=keys; the CLI refuses the folder while the server uses it", async () => {
    const created = await cairn(["keys", "create", "--data-dir", dataDir, "--namespace", "default", "--role", "admin"], {});
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stderr, new RegExp(`PGlite in ${dataDir}`));
    const key = created.stdout.trim();
    const server = await startServerProcess({
      databaseUrl: "",
      workflowDirs: "test/fixtures/auth-workflows",
      env: { DATABASE_URL: "", CAIRN_DATA_DIR: dataDir, CAIRN_AUTH: "keys" },
      startTimeoutMs: 60_000,
    });
    assert.equal(await refusedWith(createCairnClient({ baseUrl: server.url, retry: false }).listWorkflows()), Code.Unauthenticated);
    const run = await createCairnClient({ baseUrl: server.url, apiKey: key }).createRun("quick", { n: 5 }, { eagerStart: true });
    assert.equal(await run.waitForResult({ timeoutMs: 10_000 }).then((o) => JSON.stringify(o)), JSON.stringify({ n: 5 }));

    const busy = await cairn(["keys", "list", "--data-dir", dataDir], {});
    assert.equal(busy.code, 3);
    assert.match(busy.stderr, new RegExp(`in use by process ${server.pid}`));

    server.kill("SIGTERM");
    await server.exited;
    const listed = await cairn(["keys", "list", "--data-dir", dataDir], {});
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /default\s+admin/);
  });
});
