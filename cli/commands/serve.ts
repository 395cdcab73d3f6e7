/**
 * `cairn serve`: the same server `npm start` runs. The flags only set the environment
 * variables server/config.ts reads (flags win over variables already set), then
 * server/main.ts is imported and takes over: it logs, handles SIGTERM/SIGINT and exits
 * on its own (configuration errors: exit code 2, start-up failures: 1).
 */
import { type Command, ExitCode, stringValue } from "../command.js";

const flagToEnv = {
  port: "PORT",
  host: "HOST",
  "database-url": "DATABASE_URL",
  "data-dir": "CAIRN_DATA_DIR",
  "workflow-dirs": "WORKFLOW_DIRS",
  "log-level": "LOG_LEVEL",
  "log-format": "LOG_FORMAT",
  auth: "CAIRN_AUTH",
  "tls-cert": "CAIRN_TLS_CERT",
  "tls-key": "CAIRN_TLS_KEY",
} as const;

export const serve: Command = {
  name: "serve",
  summary: "run a Cairn server (what `npm start` runs)",
  usage: "[--port N] [--host H] [--database-url URL] [--data-dir DIR] [--workflow-dirs A:B] [--log-level L] [--log-format F] [--auth keys|open] [--tls-cert FILE --tls-key FILE]",
  description:
    "Every flag mirrors an environment variable; other settings (CAIRN_* limits, CORS, ...)\n" +
    "are read from the environment as usual. Without --database-url / DATABASE_URL the\n" +
    "embedded PGlite store in --data-dir (default ./.cairn) is used.",
  optionHelp: [
    ["--port N", "PORT, default 8080 (0: any free port)"],
    ["--host H", "HOST, default 127.0.0.1"],
    ["--database-url URL", "DATABASE_URL, a PostgreSQL URL"],
    ["--data-dir DIR", "CAIRN_DATA_DIR, the embedded store's folder (default ./.cairn)"],
    ["--workflow-dirs A:B", "WORKFLOW_DIRS, folders of workflow files (default ./workflows)"],
    ["--log-level L", "LOG_LEVEL: trace, debug, info (default), warn, error, fatal, silent"],
    ["--log-format F", "LOG_FORMAT: json or pretty; default pretty on a terminal, json otherwise"],
    ["--auth MODE", "CAIRN_AUTH: keys (API keys required) or open; default open only for the embedded store on a loopback host"],
    ["--tls-cert FILE", "CAIRN_TLS_CERT, PEM certificate chain: serve TLS (with --tls-key)"],
    ["--tls-key FILE", "CAIRN_TLS_KEY, PEM private key"],
  ],
  options: Object.fromEntries(Object.keys(flagToEnv).map((name) => [name, { type: "string" as const }])),
  positionals: [],
  rejectsGlobals: ["url", "api-key", "ca", "json"],
  async run(_context, values) {
    for (const [name, variable] of Object.entries(flagToEnv)) {
      const value = stringValue(values, name);
      if (value !== undefined) process.env[variable] = value;
    }
    // Resolves once the server listens; the open server keeps the process running.
    await import("../../server/main.js");
    return ExitCode.ok;
  },
};
