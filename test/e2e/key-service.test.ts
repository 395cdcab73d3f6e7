// cairn.v1.KeyService: an admin key makes, lists and revokes its namespace's keys while the server
// runs; other roles are refused; another namespace's key is NOT_FOUND; a revoked key stops working.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll as after, beforeAll as before, test } from "vitest";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { KeyService } from "../../sdk/gen/cairn/v1/keys_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import type { CairnServer } from "../../server/app.js";
import { generateApiKey } from "../../server/auth/api-key.js";
import { insertApiKey } from "../../server/store/api-keys.js";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { startTestServer } from "../support/in-process-server.js";
import { repoRoot } from "../support/server-process.js";

/** `cairn ...` as an operator runs it, with no database in its environment: only the server's API. */
async function cairn(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CAIRN_API_URL: server.url, CAIRN_API_KEY: keys.admin };
  delete env.DATABASE_URL;
  delete env.NODE_TEST_CONTEXT;
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["cli/cairn.mjs", ...args], { cwd: repoRoot, env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

let database: TestDatabase;
let server: CairnServer;
const keys: Record<string, string> = {};

function transport(key: string) {
  return createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))] });
}
const keyClient = (key: string): Client<typeof KeyService> => createClient(KeyService, transport(key));

async function refused(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  throw new Error("the call was not refused");
}

before(async () => {
  database = await createTestDatabase("key-service");
  ({ server } = await startTestServer({ DATABASE_URL: database.url, CAIRN_AUTH: "keys", WORKFLOW_DIRS: "test/fixtures/service-workflows", CAIRN_KEY_CACHE_TTL: "1s" }));
  for (const [label, namespace, role] of [["admin", "acme", "admin"], ["client", "acme", "client"], ["other", "globex", "admin"]] as const) {
    const generated = generateApiKey();
    await insertApiKey(server.database.db, { id: generated.id, namespace, role, secretHash: generated.secretHash, name: label });
    keys[label] = generated.key;
  }
});

after(async () => {
  await server?.close();
  await database?.drop();
});

test("an admin creates a key in its own namespace, lists and revokes it; the revoked key is refused", async () => {
  const admin = keyClient(keys.admin!);
  const created = await admin.createKey({ role: "client", name: "web" });
  assert.equal(created.key?.namespace, "acme");
  assert.equal(created.key?.role, "client");
  assert.match(created.secretKey, new RegExp(`^cairn_${created.key?.id}_`));

  const workflows = createClient(WorkflowService, transport(created.secretKey));
  assert.ok((await workflows.listWorkflows({})).workflows.length > 0);

  const listed = await admin.listKeys({});
  assert.deepEqual(listed.keys.map((key) => key.name).sort(), ["admin", "client", "web"]);

  const revoked = await admin.revokeKey({ keyId: created.key!.id });
  assert.ok(revoked.key?.revokedAt);
  assert.equal(await refused(workflows.listWorkflows({})), Code.Unauthenticated);
});

test("other roles are refused, another namespace's key is NOT_FOUND, bad input is INVALID_ARGUMENT", async () => {
  assert.equal(await refused(keyClient(keys.client!).listKeys({})), Code.PermissionDenied);
  const foreign = (await keyClient(keys.other!).listKeys({})).keys[0]!;
  assert.equal(foreign.namespace, "globex");
  assert.equal(await refused(keyClient(keys.admin!).revokeKey({ keyId: foreign.id })), Code.NotFound);
  assert.equal(await refused(keyClient(keys.admin!).createKey({ role: "root" })), Code.InvalidArgument);
  assert.equal(await refused(keyClient(keys.admin!).createKey({ role: "client", namespace: "globex" })), Code.PermissionDenied);
  assert.equal(await refused(keyClient(keys.admin!).revokeKey({ keyId: "nope" })), Code.InvalidArgument);
});

test("cairn keys create, list and revoke go through the API with an admin key, while the server runs", async () => {
  const created = await cairn("keys", "create", "--role", "worker", "--name", "from-cli");
  assert.equal(created.code, 0, created.stderr);
  const key = created.stdout.trim();
  const id = /^cairn_([0-9a-f]{16})_/.exec(key)?.[1];
  assert.ok(id, created.stdout);
  assert.match(created.stderr, /created worker key .* in namespace acme/);

  const listed = await cairn("keys", "list", "--json");
  const rows = (JSON.parse(listed.stdout) as { keys: { id: string; namespace: string; name: string }[] }).keys;
  assert.ok(rows.some((row) => row.id === id && row.namespace === "acme" && row.name === "from-cli"));
  assert.ok(rows.every((row) => row.namespace === "acme"));

  const revoked = await cairn("keys", "revoke", id);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(revoked.stdout.trim(), `revoked worker key ${id} of namespace acme`);
  const again = await cairn("keys", "revoke", id);
  assert.match(again.stdout, /was already revoked/);

  const elsewhere = await cairn("keys", "create", "--role", "client", "--namespace", "globex");
  assert.equal(elsewhere.code, 4);
  assert.match(elsewhere.stderr, /permission_denied/);
});
