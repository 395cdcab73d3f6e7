/**
 * `cairn keys create | list | revoke`: API keys. With an admin API key (--api-key or
 * CAIRN_API_KEY) and no store named, they call the running server's KeyService, for the key's
 * own namespace. Otherwise they work on the database directly, like PostgreSQL's `createuser`,
 * so the first admin key can be made before any key exists: DATABASE_URL (or --database-url),
 * else the embedded PGlite store in CAIRN_DATA_DIR (or --data-dir, default ./.cairn), which
 * must not be in use by a running server. Creating and revoking notify every running server
 * process on PostgreSQL at commit, so a revoked key stops working at once.
 */
import { resolve } from "node:path";
import type { ApiKey } from "../../sdk/gen/cairn/v1/keys_pb.js";

/** A protobuf Timestamp as a Date (done here rather than with @bufbuild/protobuf/wkt, whose load `cairn --help` would pay). */
function timestampDate(ts: { seconds: bigint; nanos: number }): Date {
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
}
import type { ApiKeyRow, Database } from "../../server/runs/api-keys.js";
import { UnreachableError, UsageError } from "../args.js";
import { type Command, type CommandContext, ExitCode, jsonDocument, type OptionValues, stringValue } from "../command.js";
import { table, timestamp } from "../format.js";

const storeOptions = {
  "database-url": { type: "string" as const },
  "data-dir": { type: "string" as const },
};

const storeHelp: [string, string][] = [
  ["--database-url URL", "the PostgreSQL database (default: $DATABASE_URL)"],
  ["--data-dir DIR", "without a database URL: the embedded store's folder (default: $CAIRN_DATA_DIR, else ./.cairn); stop its server first"],
  ["", "with an admin --api-key / $CAIRN_API_KEY and neither of these: through the server at --url, for the key's namespace"],
];

/** Through the server's KeyService: an API key is given and no store is named. */
function throughApi(context: CommandContext, values: OptionValues): boolean {
  const api =
    context.apiKey !== undefined &&
    stringValue(values, "database-url") === undefined &&
    stringValue(values, "data-dir") === undefined &&
    !context.env.DATABASE_URL;
  // A server URL with the keys coming from a database would be ignored: say so instead.
  if (!api && (stringValue(values, "url") !== undefined || stringValue(values, "ca") !== undefined)) {
    throw new UsageError(
      "--url and --ca apply to `cairn keys` only through the API: with an admin key (--api-key or $CAIRN_API_KEY) and no database named (DATABASE_URL, --database-url, --data-dir)",
    );
  }
  return api;
}

/** A KeyService key as the store's row, so both paths print the same. */
function rowOf(key: ApiKey | undefined): ApiKeyRow {
  if (!key) throw new Error("the server answered without a key");
  return {
    id: key.id,
    namespace: key.namespace,
    role: key.role as ApiKeyRow["role"],
    name: key.name,
    secretHash: "",
    createdAt: key.createdAt ? timestampDate(key.createdAt) : new Date(0),
    lastUsedAt: key.lastUsedAt ? timestampDate(key.lastUsedAt) : null,
    revokedAt: key.revokedAt ? timestampDate(key.revokedAt) : null,
  };
}

async function withStore<T>(context: CommandContext, values: OptionValues, work: (database: Database) => Promise<T>): Promise<T> {
  const { openDatabase, redactUrl } = await import("../../server/runs/runtime.js");
  const url = stringValue(values, "database-url") ?? (context.env.DATABASE_URL || undefined);
  const dataDir = resolve(stringValue(values, "data-dir") ?? (context.env.CAIRN_DATA_DIR || "./.cairn"));
  let database: Database;
  try {
    database = await openDatabase({ ...(url ? { url } : {}), dataDir, poolSize: 2 });
  } catch (error) {
    const where = url ? redactUrl(url) : `the embedded store in ${dataDir}`;
    throw new UnreachableError(`cannot open ${where}: ${(error as Error).message}`);
  }
  try {
    return await work(database);
  } finally {
    await database.close();
  }
}

function keyJson(row: ApiKeyRow) {
  return {
    id: row.id,
    namespace: row.namespace,
    role: row.role,
    name: row.name,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

export const keysCreate: Command = {
  name: "keys create",
  summary: "create an API key and print it (the secret is shown only this once)",
  usage: "--namespace NS --role admin|client|worker [--name LABEL] [--database-url URL | --data-dir DIR]",
  description:
    "Prints the new key (cairn_<id>_<secret>) on stdout, so it can be captured:\n" +
    "  export CAIRN_API_KEY=$(cairn keys create --namespace default --role admin --name ops)\n" +
    "Only a hash of the secret is stored; a lost key cannot be shown again: revoke it and\n" +
    "create another. Roles: admin (everything in its namespace), client (WorkflowService:\n" +
    "runs, events, watching), worker (AgentService: agent turns only).",
  optionHelp: [
    ["--namespace NS", "the tenant the key acts in (letters, digits, . _ -; e.g. default)"],
    ["--role ROLE", "admin, client or worker"],
    ["--name LABEL", "a label for people, shown by `cairn keys list`"],
    ...storeHelp,
  ],
  options: { namespace: { type: "string" }, role: { type: "string" }, name: { type: "string" }, ...storeOptions },
  positionals: [],
  async run(context, values) {
    const { generateApiKey, isRole, namespacePattern } = await import("../../server/auth/api-key.js");
    const api = throughApi(context, values);
    const namespace = stringValue(values, "namespace");
    const role = stringValue(values, "role");
    if (namespace === undefined && !api) throw new UsageError("--namespace is required (e.g. --namespace default)");
    if (namespace !== undefined && !namespacePattern.test(namespace)) {
      throw new UsageError(`--namespace ${JSON.stringify(namespace)} is not a namespace: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    if (role === undefined) throw new UsageError("--role is required: admin, client or worker");
    if (!isRole(role)) throw new UsageError(`--role ${JSON.stringify(role)} is not a role; use admin, client or worker`);
    const name = stringValue(values, "name") ?? "";
    let row: ApiKeyRow;
    let store: string;
    let secretKey: string;
    if (api) {
      const created = await (await context.keyService()).createKey({ role, name, namespace: namespace ?? "" });
      ({ secretKey } = created);
      row = rowOf(created.key);
      store = context.url;
    } else {
      const { insertApiKey } = await import("../../server/runs/api-keys.js");
      const generated = generateApiKey();
      secretKey = generated.key;
      ({ row, store } = await withStore(context, values, async (database) => ({
        row: await insertApiKey(database.db, { id: generated.id, namespace: namespace ?? "", role, secretHash: generated.secretHash, name }),
        store: database.description,
      })));
    }
    if (context.json) {
      context.io.out(jsonDocument({ ...keyJson(row), key: secretKey }));
      return ExitCode.ok;
    }
    context.io.out(secretKey);
    context.io.err(
      `cairn: created ${role} key ${row.id}${name ? ` (${JSON.stringify(name)})` : ""} in namespace ${row.namespace} (${store}); ` +
        "keep it now: the secret is not shown again",
    );
    return ExitCode.ok;
  },
};

export const keysList: Command = {
  name: "keys list",
  summary: "list API keys (ids and roles; never secrets)",
  usage: "[--namespace NS] [--database-url URL | --data-dir DIR]",
  optionHelp: [["--namespace NS", "only keys of this namespace"], ...storeHelp],
  options: { namespace: { type: "string" }, ...storeOptions },
  positionals: [],
  async run(context, values) {
    let rows: ApiKeyRow[];
    if (throughApi(context, values)) {
      const only = stringValue(values, "namespace");
      rows = (await (await context.keyService()).listKeys({})).keys.map(rowOf).filter((row) => only === undefined || row.namespace === only);
    } else {
      const { listApiKeys } = await import("../../server/runs/api-keys.js");
      rows = await withStore(context, values, (database) => listApiKeys(database.db, stringValue(values, "namespace")));
    }
    if (context.json) {
      context.io.out(jsonDocument({ keys: rows.map(keyJson) }));
      return ExitCode.ok;
    }
    if (rows.length === 0) {
      context.io.out("no API keys; create one with: cairn keys create --namespace default --role admin");
      return ExitCode.ok;
    }
    context.io.out(
      table(
        ["KEY ID", "NAMESPACE", "ROLE", "NAME", "CREATED", "LAST USED", "STATUS"],
        rows.map((row) => [
          row.id,
          row.namespace,
          row.role,
          row.name || "-",
          timestamp(row.createdAt),
          timestamp(row.lastUsedAt ?? undefined),
          row.revokedAt ? `revoked ${timestamp(row.revokedAt)}` : "active",
        ]),
      ),
    );
    return ExitCode.ok;
  },
};

export const keysRevoke: Command = {
  name: "keys revoke",
  summary: "revoke an API key; every server refuses it at once",
  usage: "<key-id> [--database-url URL | --data-dir DIR]",
  description:
    "Takes the key id shown by `cairn keys list` (or the whole key). Servers on the same\n" +
    "PostgreSQL database hear of it when it commits and refuse the key from the next request.\n" +
    "Revoking a revoked key changes nothing and succeeds.",
  optionHelp: storeHelp,
  options: { ...storeOptions },
  positionals: ["key-id"],
  async run(context, values, [idOrKey = ""]) {
    const { keyIdOf } = await import("../../server/auth/api-key.js");
    const id = keyIdOf(idOrKey);
    if (!id) throw new UsageError(`${JSON.stringify(idOrKey)} is not a key id (16 hex characters, as \`cairn keys list\` shows) or an API key`);
    let result: { row: ApiKeyRow; alreadyRevoked: boolean } | undefined;
    if (throughApi(context, values)) {
      const revoked = await (await context.keyService()).revokeKey({ keyId: id });
      result = { row: rowOf(revoked.key), alreadyRevoked: revoked.alreadyRevoked };
    } else {
      const { revokeApiKey } = await import("../../server/runs/api-keys.js");
      result = await withStore(context, values, (database) => revokeApiKey(database.db, id));
    }
    if (!result) {
      const { CairnError, Code } = await import("../../sdk/index.js");
      throw new CairnError(`no API key has the id ${id}`, Code.NotFound);
    }
    const { row, alreadyRevoked } = result;
    if (context.json) {
      context.io.out(jsonDocument({ ...keyJson(row), alreadyRevoked }));
      return ExitCode.ok;
    }
    context.io.out(
      alreadyRevoked
        ? `key ${row.id} was already revoked (${timestamp(row.revokedAt ?? undefined)})`
        : `revoked ${row.role} key ${row.id} of namespace ${row.namespace}`,
    );
    return ExitCode.ok;
  },
};
